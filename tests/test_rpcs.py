"""Which wslink RPCs a page may call (``rfmweb.app.rpcs``); the browser test calls them for real."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

from rfmweb.app.rpcs import ERROR_CHARS, ERRORS_PER_MINUTE, limit_rpcs


def test_a_page_cannot_stop_the_server_or_its_frames():
    ran = []
    uris = ["application.exit", "application.exit.later", "trame.rca.drop", "trame.rca.push", "trame.rca.reset",
            "trame.lifecycle.update", "trame.state.update", "trame.rca.event", "no.such.rpc"]
    handler = SimpleNamespace(functionMap={u: (None, lambda obj, *args, u=u: ran.append((u, args)) or "ran")
                                           for u in uris})
    limit_rpcs(SimpleNamespace(_ws_handlers=[handler]))

    def call(uri, *args):
        obj, func = handler.functionMap[uri]
        return func(obj, *args)

    for uri in ("application.exit", "trame.rca.reset", "no.such.rpc"):
        assert call(uri, "view_a") is None
    assert call("application.exit.later", 10) is None and call("trame.rca.drop", "view_a", -1) is None
    assert call("trame.rca.push", "view_a", {}, b"") is None
    assert call("trame.lifecycle.update", "server_exited") is None and call("trame.lifecycle.update") is None
    assert ran == []
    assert call("trame.lifecycle.update", "client_exited") == "ran"
    assert call("trame.state.update", [{"key": "preset", "value": "CT-Bone"}]) == "ran"
    assert call("trame.rca.event", "view_a", "x", {"type": "FrameAck"}) == "ran"
    assert [u for u, _ in ran] == ["trame.lifecycle.update", "trame.state.update", "trame.rca.event"]


def _limited(functions: dict, obj=None, clock=lambda: 0.0):
    handler = SimpleNamespace(functionMap={u: (obj, f) for u, f in functions.items()})
    limit_rpcs(SimpleNamespace(_ws_handlers=[handler]), clock=clock)
    return lambda uri, *args: handler.functionMap[uri][1](obj, *args)


def test_a_page_sets_only_the_app_state_the_server_declared(caplog):
    """With --shared, a page that set trame__template_main ran its script in every tab: a page may set
    only keys the server declared, never trame's own; a malformed update is dropped."""
    applied = []
    state = SimpleNamespace(has=lambda key: key in {"AppState__preset", "trame__template_main", "trame__title"})
    call = _limited({"trame.state.update": lambda obj, changes: applied.append(changes) or "ran"},
                    obj=SimpleNamespace(server=SimpleNamespace(state=state)))
    evil = {"key": "trame__template_main", "value": "<img src=x onerror=alert(1)>"}
    with caplog.at_level(logging.INFO, logger="rfmweb.app.rpcs"):
        assert call("trame.state.update", [evil, {"key": "AppState__preset", "value": "CT-Bone"},
                                           {"key": "x" * 10_000, "value": 1}]) == "ran"
    assert applied == [[{"key": "AppState__preset", "value": "CT-Bone"}]]
    assert "'trame__template_main'" in caplog.text and "x" * 41 not in caplog.text
    for bad in (["notalist"], [[{"nokey": 1}]], [], [[{"key": 5, "value": 1}]], [[evil]]):
        assert call("trame.state.update", *bad) is None
    assert len(applied) == 1


def test_a_failing_rpc_answers_without_a_traceback(caplog):
    """wslink answers an exception with its traceback (this machine's paths and versions): the page
    gets None, the log gets the traceback."""
    def boom(obj, *args):
        raise ValueError("/secret/path/in/the/message")

    async def later(obj, *args):
        raise ValueError("later")

    call = _limited({"trame.trigger": boom, "trame.rca.event": later})
    with caplog.at_level(logging.WARNING, logger="rfmweb.app.rpcs"):
        assert call("trame.trigger", "rfm_scene") is None
        # on a thread of its own: the test process may already run an event loop (Playwright's) on this one
        with ThreadPoolExecutor(max_workers=1) as pool:
            assert pool.submit(asyncio.run, call("trame.rca.event", "view_a", "rfm", {})).result() is None
    assert caplog.text.count("failed") == 2 and "ValueError" in caplog.text


def test_a_page_cannot_flood_or_forge_the_log(caplog):
    """A page's script error is one escaped line of at most ERROR_CHARS characters, at most
    ERRORS_PER_MINUTE a minute (one 5 MB report, or a forged 'INFO ... started' line, were logged as sent)."""
    now = [120.0]
    call = _limited({"trame.error.client": lambda obj, message: None}, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="rfmweb.app.rpcs"):
        call("trame.error.client", "boom\nINFO rfmweb.app.launcher: session a1b2c3 started" + "x" * 5_000_000)
        for _ in range(3 * ERRORS_PER_MINUTE):
            call("trame.error.client", "again")
            now[0] += 0.1                                 # all within the minute
    messages = [r.getMessage() for r in caplog.records]
    assert "\n" not in messages[0] and len(messages[0]) < ERROR_CHARS + 60
    assert len(messages) == ERRORS_PER_MINUTE + 1 and "not logged" in messages[-1]
    now[0] = 180.0                                        # the next minute: logged again
    with caplog.at_level(logging.WARNING, logger="rfmweb.app.rpcs"):
        call("trame.error.client", "later")
    assert "later" in caplog.records[-1].getMessage()


def test_a_client_sending_junk_cannot_flood_the_log():
    """Each junk message logged a 25-line traceback through wslink.protocol."""
    from rfmweb.app.server import ClientErrorFlood, quiet_trame_logs

    quiet_trame_logs()                 # what every viewer session does
    assert [type(f) for f in logging.getLogger("wslink.protocol").filters].count(ClientErrorFlood) == 1
    now = [0.0]
    flood = ClientErrorFlood(clock=lambda: now[0])
    trace = "Traceback (most recent call last):\n  File ...\nValueError: Total size for message exceeds the limit"

    def passed(k: int) -> list[str]:
        records = [logging.LogRecord("wslink.protocol", logging.ERROR, __file__, 1, trace, (), None) for _ in range(k)]
        return [r.getMessage() for r in records if flood.filter(r)]

    first = passed(100)
    assert first == ["ValueError: Total size for message exceeds the limit"] * ClientErrorFlood.PER_MINUTE
    now[0] = 61.0
    assert passed(1) == [f"ValueError: Total size for message exceeds the limit ({100 - 30} similar lines dropped)"]
