"""``rfmweb serve`` under load and faults: the short version of benchmarks/bench_server_load.py.

Three tabs (clients of the page's wslink/trame-rca protocol, no browser) on one launcher with
``--max-sessions 3`` for 20 s: one drags, one floods pointer events (up to 10,000/s) from the
second 5-s row on, one is killed mid-frame (its connection aborted) at 10 s. Behaviour, not speed,
is asserted: every tab receives frames, the dragging tab keeps receiving them while the other
floods, the killed tab's session process is reaped after the launcher's grace period and the memory
it held is given back, and the session count never exceeds the limit.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_server_load.py"


@pytest.fixture(scope="module")
def bench():
    pytest.importorskip("psutil", reason="psutil measures the session processes")
    spec = importlib.util.spec_from_file_location("bench_server_load", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tabs_get_frames_under_a_flood_and_a_killed_tab_is_reaped(bench, tmp_path):
    result = bench.run(clients=3, seconds=20.0, interval=5.0, kill_at=10.0, drag_hz=30.0, flood_rate=10_000.0,
                       size=(240, 180), log_file=tmp_path / "server.log")
    report = bench.table(result)
    rows, kill = result["rows"], result["kill"]
    assert len(rows) == 4, report

    # every tab received frames, the flooding one included, and the flood reached its session
    assert all(n > 0 for n in result["frames"].values()), report
    assert result["flood_events"] > 1000 and result["flood_answered"] > 0, report

    # no starvation: while the flood runs (rows 2..4), the dragging tab keeps getting frames
    flooded_rows = rows[1:]
    assert all(r["flood_eps"] > 0 for r in flooded_rows), report
    assert all(r["fps_min"] > 0 for r in flooded_rows), report

    # the killed tab: its session process is reaped (the bench waits the grace period plus 30 s), memory drops
    assert kill["reaped_s"] is not None, report
    assert kill["sessions_after"] == kill["sessions_before"] - 1, report
    assert kill["rss_after_mb"] < kill["rss_before_mb"] - 0.5 * kill["victim_rss_mb"], report
    assert "ended (its tab closed)" in result["log"], result["log"]

    # bounded: never more session processes than --max-sessions, and no errors on the way
    assert max(r["sessions"] for r in rows) <= 3, report
    assert "Traceback" not in result["log"], result["log"]
