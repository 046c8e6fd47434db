"""Load and faults of ``rfmweb serve``: N tabs at once, one flooding input, one killed mid-frame.

Usage::

    .venv/bin/python benchmarks/bench_server_load.py [--clients 10] [--seconds 300] [--renderer vtk]

Starts ``rfmweb serve`` (the bundled CT phantom, loopback, a free port, ``--max-sessions`` = clients,
an auth key) and opens ``--clients`` tabs. Each tab is a client of the trame page's own protocol, as
the page's scripts speak it (no browser, so 10 tabs fit on 2 cores and the numbers are the
server's): it loads ``/?secret=KEY`` (cookie; the page's script asks ``POST /start`` for its session
``/s/<id>/``, as this client does), opens the websocket
through the launcher, says ``wslink.hello``, fetches the state (``trame.state.get``), reports its
view size (``trame.rca.size``) and asks for a frame (``Refresh``); it acknowledges every frame it
receives (``FrameAck``), as ``rfmweb.app.ui.CLIENT_SCRIPT`` does once a frame is displayed.

- every tab but one drags (orbits) its view at ``--drag-hz`` pointer moves per second (the page's
  trame-rca area sends at most ~60/s); its frames per second are what the table reports;
- one tab, in a process of its own (its sending must not slow the others' clients), holds the
  button down and sends pointer moves as fast as it can up to ``--flood-rate`` per second, from the
  second row of the table on (the first row is the baseline without it);
- half way through, one dragging tab is killed mid-frame: its TCP connection is aborted (no
  websocket close, the frame unacknowledged) as soon as a frame arrives. Its session
  process must be gone within the launcher's grace period, and the total memory must drop.

Memory is the resident set (RSS, psutil) of the launcher plus every session process, sampled every
``--interval`` seconds. Prints a Markdown table and the kill result; ``run()`` returns them for
tests/test_server_load.py. Loopback only; the run is bounded by ``--seconds`` and ``--clients``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import platform
import re
import socket
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "browser"))

from serving import served  # noqa: E402  (tests/browser/serving.py)

log = logging.getLogger("bench_server_load")

KEY = "load-bench-key-rfmweb"
VIEW = "view_a"
#: The wslink secret of a trame server started without one (the page sends it in its hello).
WSLINK_SECRET = "wslink-secret"
_FRAME_TOPIC = "publish:trame.rca.topic.stream:"
#: Messages larger than this are frames (RPC answers are tens of bytes; a JPEG frame is kilobytes).
_FRAME_BYTES = 1024
#: The launcher ends a session this many seconds after its last websocket closed (``--reconnect-s``).
GRACE_S = 5.0


def _pack(message: dict) -> bytes:
    """One wslink message: a 12-byte chunk header (id, offset, total size) and its msgpack body."""
    import msgpack
    from wslink.chunking import generate_chunks

    return next(generate_chunks(msgpack.packb(message), 0))


class TabClient:
    """One browser tab's traffic on one session (see the module docstring).

    Args:
        name: for reports.
        width, height: the view's size the tab reports, CSS pixels (devicePixelRatio 1).
    """

    def __init__(self, name: str, width: int = 320, height: int = 240) -> None:
        self.name, self.width, self.height = name, width, height
        self.sid = ""
        self.frame_times: list[float] = []   # time.monotonic() of each frame received
        self.events_sent = 0
        self.answered = 0   # RPC answers received: the events the session has handled
        self.aborted = False
        self.kill_on_next_frame = False
        self._http = self._ws = self._reader = None
        self._calls = 0
        self._pending: dict[str, asyncio.Future] = {}
        self._killed = asyncio.Event()

    async def open(self, base: str, key: str, timeout_s: float = 120.0) -> None:
        """Load the page (key -> cookie -> session), connect its websocket, ask for the first frame."""
        import aiohttp
        from wslink.chunking import UnChunker

        # unsafe: the jar keeps cookies of IP-literal hosts (127.0.0.1), as a browser does
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s),
                                           cookie_jar=aiohttp.CookieJar(unsafe=True))
        async with self._http.get(f"{base}/?secret={key}") as page:          # the cookie and the starter page
            await page.read()
        async with self._http.post(f"{base}/start", headers={"Origin": base}) as start:
            where = (await start.json())["location"] if start.status == 200 else ""
            match = re.fullmatch(r"/s/([0-9a-f]{32})/", where)
            if page.status != 200 or match is None:
                raise RuntimeError(f"{self.name}: the page answered {page.status}, /start {start.status}")
        self.sid = match.group(1)
        self._ws = await self._http.ws_connect(f"{base.replace('http', 'ws', 1)}/s/{self.sid}/ws",
                                               headers={"Origin": base}, max_msg_size=0)
        self._unchunker = UnChunker()
        self._unchunker.set_max_message_size(1 << 30)
        self._reader = asyncio.ensure_future(self._read())
        await asyncio.wait_for(self.call("wslink.hello", [{"secret": WSLINK_SECRET}], system=True), timeout_s)
        await asyncio.wait_for(self.call("trame.state.get", []), timeout_s)
        await self.call("trame.lifecycle.update", ["client_connected"], wait=False)
        await self.call("trame.rca.size", [VIEW, VIEW, {"w": self.width, "h": self.height, "p": 1}], wait=False)
        await self.event({"type": "Refresh"})

    async def call(self, method: str, args: list, *, wait: bool = True, system: bool = False):
        """A wslink RPC; with ``wait``, its result."""
        self._calls += 1
        rpc_id = f"{'system' if system else 'rpc'}:c0:{self._calls}"
        future = None
        if wait:
            future = self._pending[rpc_id] = asyncio.get_running_loop().create_future()
        await self._ws.send_bytes(_pack({"wslink": "1.0", "id": rpc_id, "method": method, "args": args,
                                         "kwargs": {}}))
        return await future if future is not None else None

    async def event(self, event: dict) -> None:
        """A trame-rca pointer or frame-protocol event on the view (not awaited, as the page does)."""
        await self.call("trame.rca.event", [VIEW, "rfm", event], wait=False)
        self.events_sent += 1

    async def _read(self) -> None:
        import aiohttp

        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.BINARY:
                break
            if self.kill_on_next_frame and len(msg.data) > _FRAME_BYTES:
                self.abort()   # a frame has arrived (not an RPC answer): it is never acknowledged
                break
            message = self._unchunker.process_chunk(msg.data)
            if message is None:
                continue
            rpc_id = str(message.get("id", ""))
            if rpc_id.startswith(_FRAME_TOPIC):
                frame = message.get("result") or {}
                meta = frame.get("meta") or {}
                if meta.get("rfm") == 1:
                    self.frame_times.append(time.monotonic())
                    await self.call("trame.rca.event", [frame["name"], "rfm",
                                                        {"type": "FrameAck", "id": meta["id"], "gen": meta["gen"]}],
                                    wait=False)
            elif rpc_id.startswith("rpc:"):
                self.answered += 1
            if rpc_id in self._pending:
                future = self._pending.pop(rpc_id)
                if "error" in message:
                    future.set_exception(RuntimeError(f"{self.name}: {message['error']}"))
                else:
                    future.set_result(message.get("result"))
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError(f"{self.name}: the websocket closed"))

    def _centre(self) -> tuple[float, float]:
        return self.width / 2, self.height / 2

    async def drag(self, hz: float, until: float) -> None:
        """Orbit: left button down, a pointer move every ``1/hz`` s (alternating 12 px right/left)."""
        x, y = self._centre()
        await self.event({"type": "LeftButtonPress", "x": x, "y": y})
        k = 0
        while time.monotonic() < until and not self.aborted:
            k += 1
            await self.event({"type": "MouseMove", "x": x + (12 if k % 2 else 0), "y": y})
            await asyncio.sleep(1.0 / hz)
        if not self.aborted:
            await self.event({"type": "LeftButtonRelease", "x": x, "y": y})

    async def flood(self, rate: float, until: float, on_second=None) -> None:
        """Pointer moves as fast as the socket takes them, at most ``rate`` per second, in 10 ms
        batches; ``on_second(counts)`` is called about once a second with the counts since the
        previous call (``events`` sent, ``answered`` by the session, ``frames`` received, ``dt`` s)."""
        x, y = self._centre()
        await self.event({"type": "LeftButtonPress", "x": x, "y": y})
        start = time.monotonic()
        counts = lambda: {"events": self.events_sent, "answered": self.answered, "frames": len(self.frame_times)}
        mark, marked = start, counts()
        k = 0
        while (now := time.monotonic()) < until and not self.aborted:
            due = int((now - start) * rate) - k
            for _ in range(max(0, min(due, int(rate * 0.05) + 1))):
                k += 1
                await self.event({"type": "MouseMove", "x": x + (k % 40), "y": y})
            if now - mark >= 1.0 and on_second is not None:
                current = counts()
                on_second({**{k_: current[k_] - marked[k_] for k_ in current}, "dt": now - mark})
                mark, marked = now, current
            await asyncio.sleep(0.01 if due <= 0 else 0)
        await self.event({"type": "LeftButtonRelease", "x": x, "y": y})

    def abort(self) -> None:
        """Drop the TCP connection at once, as a killed tab's browser process does (no close frame)."""
        self.aborted = True
        transport = self._ws._conn.transport if self._ws._conn is not None else None  # aiohttp keeps it private
        if transport is not None:
            transport.abort()
        self._killed.set()

    async def kill_mid_frame(self, timeout_s: float = 30.0) -> None:
        """Abort the connection when the next frame begins to arrive (:meth:`abort` if none comes)."""
        self.kill_on_next_frame = True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._killed.wait(), timeout_s)
        if not self.aborted:
            self.abort()

    async def close(self) -> None:
        if self._ws is not None and not self.aborted:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)
        if self._http is not None:
            await self._http.close()

    def fps(self, t0: float, t1: float) -> float:
        """Frames received per second in ``[t0, t1)`` (monotonic seconds)."""
        return sum(t0 <= t < t1 for t in self.frame_times) / max(t1 - t0, 1e-9)


# -- the flooding tab, in a process of its own ----------------------------------------------------
async def _flood_main(base: str, seconds: float, rate: float) -> None:
    """Print ``READY``, wait for a line on stdin, flood for ``seconds`` printing one JSON line a
    second (:meth:`TabClient.flood`'s counts), then ``DONE`` with totals."""
    tab = TabClient("flood")
    await tab.open(base, KEY)
    print("READY", tab.sid, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    until = time.monotonic() + seconds
    try:
        await tab.flood(rate, until, lambda counts: print(json.dumps(counts), flush=True))
    finally:
        print("DONE", json.dumps({"events": tab.events_sent, "answered": tab.answered,
                                  "frames": len(tab.frame_times)}), flush=True)
        await tab.close()


class FloodProcess:
    """The flooding tab's process: its per-second reports, read as they come."""

    def __init__(self, base: str, seconds: float, rate: float) -> None:
        self.args = [sys.executable, str(Path(__file__).resolve()), "--flood-only", base, "--seconds", str(seconds),
                     "--flood-rate", str(rate)]
        self.proc = None
        self.sid = ""
        self.seconds: list[tuple[float, dict]] = []   # (monotonic time, TabClient.flood's counts)
        self.total: dict = {}

    async def start(self, timeout_s: float = 180.0) -> None:
        self.proc = await asyncio.create_subprocess_exec(*self.args, stdin=asyncio.subprocess.PIPE,
                                                         stdout=asyncio.subprocess.PIPE)
        line = (await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)).decode()
        if not line.startswith("READY "):
            raise RuntimeError(f"the flooding tab did not connect (exit {await self.proc.wait()})")
        self.sid = line.split()[1]
        self._pump = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while line := (await self.proc.stdout.readline()).decode():
            if line.startswith("DONE "):
                self.total = json.loads(line[5:])
            elif line.startswith("{"):
                self.seconds.append((time.monotonic(), json.loads(line)))

    def go(self) -> None:
        """Start flooding."""
        self.proc.stdin.write(b"GO\n")

    def rates(self, t0: float, t1: float) -> dict[str, float]:
        """Per second in ``[t0, t1)``: ``events`` sent, ``answered``, ``frames`` (0 before it floods)."""
        rows = [counts for t, counts in self.seconds if t0 <= t < t1]
        dt = max(sum(r["dt"] for r in rows), 1e-9)
        return {k: sum(r[k] for r in rows) / dt for k in ("events", "answered", "frames")}

    async def wait(self, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self.proc.wait(), timeout_s)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        await self._pump


# -- memory ---------------------------------------------------------------------------------------
def memory(launcher_pid: int) -> tuple[float, int, dict[int, float]]:
    """``(total RSS MB of the launcher and its sessions, session processes, {pid: RSS MB})``."""
    import psutil

    launcher = psutil.Process(launcher_pid)
    rss: dict[int, float] = {launcher_pid: launcher.memory_info().rss / 2**20}
    sessions = 0
    for child in launcher.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            rss[child.pid] = child.memory_info().rss / 2**20
            sessions += any("session_main" in part for part in child.cmdline())
    return sum(rss.values()), sessions, rss


class _CpuMeter:
    """CPU use of named processes since the previous call, in % of one core."""

    def __init__(self, pids: dict[str, int]) -> None:
        import psutil

        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.percent()

    def percent(self) -> dict[str, float]:
        """``{name: %}``, and ``machine``: all cores together (100 % per core)."""
        import psutil

        out = {"machine": psutil.cpu_percent(None) * (os.cpu_count() or 1)}
        for name, proc in self.procs.items():
            try:
                out[name] = proc.cpu_percent(None)
            except psutil.NoSuchProcess:
                out[name] = 0.0
        return out


def gone(pid: int) -> bool:
    """The process has exited and been reaped (a zombie is not gone)."""
    import psutil

    try:
        psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return True
    return False


def _session_pid(log_file: Path, sid: str, timeout_s: float = 10.0) -> int:
    """The pid of session ``sid`` from the launcher's log line ``session <sid[:6]> started (pid N``."""
    deadline = time.monotonic() + timeout_s
    while True:
        match = re.search(rf"session {sid[:6]} started \(pid (\d+)", log_file.read_text())
        if match or time.monotonic() > deadline:
            if match is None:
                raise RuntimeError(f"session {sid[:6]} is not in the launcher log")
            return int(match.group(1))
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the run --------------------------------------------------------------------------------------
async def _load(base: str, launcher_pid: int, log_file: Path, *, clients: int, seconds: float, interval: float,
                drag_hz: float, flood_rate: float, kill_at: float, size: tuple[int, int]) -> dict:
    tabs = [TabClient(f"tab{i}", *size) for i in range(clients - 1)]
    for tab in tabs:   # one after the other, as people open tabs (a session start is CPU-heavy)
        await tab.open(base, KEY)
    victim = tabs[-1]
    victim_pid = _session_pid(log_file, victim.sid)
    flood = FloodProcess(base, seconds - interval, flood_rate)
    await flood.start()
    cpu = _CpuMeter({"launcher": launcher_pid, "flooded": _session_pid(log_file, flood.sid),
                     "flooder": flood.proc.pid})
    start = time.monotonic()
    until = start + seconds
    drags = [asyncio.ensure_future(tab.drag(drag_hz, until)) for tab in tabs]
    rows, kill = [], {}
    mark = start
    kill_task = None
    while (now := time.monotonic()) < until:
        await asyncio.sleep(min(interval, until - now))
        now = time.monotonic()
        if not rows:
            flood.go()   # the first row is the baseline, without the flood
        rss, sessions, _ = memory(launcher_pid)
        live = [tab for tab in tabs if not tab.aborted]
        fps = [tab.fps(mark, now) for tab in live]
        flooding = flood.rates(mark, now)
        busy = cpu.percent()
        rows.append({"t": round(now - start, 1), "clients": len(live) + (flood.proc.returncode is None),
                     "sessions": sessions, "rss_mb": round(rss), "fps_min": round(min(fps), 1),
                     "fps_median": round(statistics.median(fps), 1), "flood_eps": round(flooding["events"]),
                     "flood_answered": round(flooding["answered"]), "flood_fps": round(flooding["frames"], 1), "launcher_cpu": round(busy["launcher"]),
                     "flooded_cpu": round(busy["flooded"]), "flooder_cpu": round(busy["flooder"]),
                     "machine_cpu": round(busy["machine"])})
        log.info("%s", rows[-1])
        mark = now
        if kill_task is None and now - start >= kill_at:
            kill_task = asyncio.ensure_future(_kill(victim, victim_pid, launcher_pid))
        if kill_task is not None and kill_task.done() and not kill:
            kill = kill_task.result()
    if kill_task is not None and not kill:
        kill = await kill_task
    await asyncio.gather(*drags)
    await flood.wait(30)
    frames = {tab.name: len(tab.frame_times) for tab in tabs}
    frames["flood"] = flood.total.get("frames", 0)
    answered = flood.total.get("answered", 0)
    for tab in tabs:
        await tab.close()
    flood_total = flood.total.get("events", 0)
    return {"rows": rows, "kill": kill, "frames": frames, "flood_events": flood_total,
            "flood_eps": flood_total / (seconds - interval), "flood_answered": answered, "drag_fps": {t.name: len(t.frame_times) / seconds for t in tabs[:-1]}}


async def _kill(victim: TabClient, pid: int, launcher_pid: int, limit_s: float = GRACE_S + 30.0) -> dict:
    """Kill ``victim`` mid-frame; time until its session process is reaped; memory before and after."""
    before, sessions_before, per_pid = memory(launcher_pid)
    victim_rss = per_pid.get(pid, 0.0)
    await victim.kill_mid_frame()
    t0 = time.monotonic()
    while not gone(pid) and time.monotonic() - t0 < limit_s:
        await asyncio.sleep(0.1)
    reaped_s = time.monotonic() - t0 if gone(pid) else None
    await asyncio.sleep(0.5)
    after, sessions_after, _ = memory(launcher_pid)
    return {"pid": pid, "reaped_s": reaped_s, "victim_rss_mb": victim_rss, "rss_before_mb": before,
            "rss_after_mb": after, "sessions_before": sessions_before, "sessions_after": sessions_after}


def run(*, clients: int = 10, seconds: float = 300.0, interval: float = 10.0, drag_hz: float = 30.0,
        flood_rate: float = 10_000.0, renderer: str = "vtk", size: tuple[int, int] = (320, 240),
        kill_at: float | None = None, log_file: Path) -> dict:
    """Serve the bundled CT to ``clients`` tabs for ``seconds`` (see the module docstring).

    Args:
        clients: tabs, >= 3 (one floods, one is killed at ``kill_at`` s, default half way).
        interval: seconds between table rows (memory and frame-rate samples).
        drag_hz: pointer moves per second of a dragging tab.
        flood_rate: most pointer moves per second of the flooding tab.
        renderer: the main view's renderer (``--renderer``).
        size: view size (CSS px) every tab reports.
        log_file: where the server's output goes.

    Returns:
        ``{"rows": [...], "kill": {...}, "frames": {tab: frames}, "flood_events", "flood_eps",
        "drag_fps"}`` (see :func:`_load`; memory in MB, times in s).
    """
    if clients < 3:
        raise ValueError("--clients must be >= 3 (a flooding tab, a killed tab and one to measure)")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "rfmweb", "serve", "--port", str(port), "--max-sessions", str(clients),
           "--renderer", renderer, "--auth-key", KEY, "--reconnect-s", str(GRACE_S)]
    with served(cmd, base + "/", log_file, timeout_s=180) as proc:
        # on a thread of its own: the caller's thread may already run an event loop (pytest with Playwright)
        load = _load(base, proc.pid, log_file, clients=clients, seconds=seconds, interval=interval,
                     drag_hz=drag_hz, flood_rate=flood_rate, size=size,
                     kill_at=seconds / 2 if kill_at is None else kill_at)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            result = pool.submit(asyncio.run, load).result()
    result["log"] = log_file.read_text()
    return result


def table(result: dict) -> str:
    """The Markdown table of :func:`run`'s rows, and the kill's outcome."""
    lines = ["| t (s) | clients | sessions | total RSS (MB) | dragging tabs frames/s: min | median "
             "| flooding tab: events/s sent | answered | its frames/s | CPU % (100 = a core): launcher "
             "| flooded session | flooding client | machine |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['t']:.0f} | {r['clients']} | {r['sessions']} | {r['rss_mb']} | {r['fps_min']:.1f} "
                     f"| {r['fps_median']:.1f} | {r['flood_eps']} | {r['flood_answered']} | {r['flood_fps']:.1f} | {r['launcher_cpu']} "
                     f"| {r['flooded_cpu']} | {r['flooder_cpu']} | {r['machine_cpu']} |")
    k = result["kill"]
    reaped = "not within the limit" if k.get("reaped_s") is None else f"{k['reaped_s']:.1f} s"
    lines.append(f"\nkilled tab: session process reaped after {reaped} (launcher grace {GRACE_S:.0f} s); "
                 f"total RSS {k['rss_before_mb']:.0f} -> {k['rss_after_mb']:.0f} MB (that session: "
                 f"{k['victim_rss_mb']:.0f} MB); sessions {k['sessions_before']} -> {k['sessions_after']}")
    lines.append(f"flooding tab: {result['flood_events']} events sent ({result['flood_eps']:.0f}/s on average), "
                 f"{result['flood_answered']} answered; "
                 f"frames per tab over the run: {result['frames']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10, help="tabs (and --max-sessions); default 10")
    parser.add_argument("--seconds", type=float, default=300.0, help="how long the tabs stay (default 300)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds per table row (default 10)")
    parser.add_argument("--drag-hz", type=float, default=30.0, help="pointer moves/s of a dragging tab")
    parser.add_argument("--flood-rate", type=float, default=10_000.0, help="target events/s of the flooding tab")
    parser.add_argument("--renderer", default="vtk", help="main view renderer (default vtk)")
    parser.add_argument("--size", default="320x240", help="view size in CSS px (default 320x240)")
    parser.add_argument("--log", default=None, metavar="F",
                        help="the server's log (default $TMPDIR/bench_server_load.log)")
    parser.add_argument("--flood-only", metavar="BASE_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flood_only:
        asyncio.run(_flood_main(args.flood_only, args.seconds, args.flood_rate))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not 0 < args.seconds <= 3600 or not 3 <= args.clients <= 32:
        parser.error("--seconds must be in (0, 3600] and --clients in 3..32")
    w, h = (int(v) for v in args.size.split("x"))
    log_file = Path(args.log) if args.log else Path(os.environ.get("TMPDIR", "/tmp")) / "bench_server_load.log"
    result = run(clients=args.clients, seconds=args.seconds, interval=args.interval, drag_hz=args.drag_hz,
                 flood_rate=args.flood_rate, renderer=args.renderer, size=(w, h), log_file=log_file)
    print(f"\nrfmweb serve (bundled CT phantom, --renderer {args.renderer}, views {args.size}), {args.clients} tabs "
          f"for {args.seconds:.0f} s; {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}\n")
    print(table(result))
    print(f"\nserver log: {log_file}")


if __name__ == "__main__":
    main()
