"""One viewer session per browser tab: a launcher that runs one trame process per session.

Why processes: trame keeps one state per server process and pushes every change to every client of
that process, so two tabs of one process cannot hold two cameras or two presets. trame's own answer
for per-user state is its launcher pattern (a front server that starts one app process per session
and hands out its websocket); this module is that pattern, small and in-process:

- ``GET /`` answers a small page whose script asks ``POST /start`` for a session, then goes there.
  A request that runs no script (a link preview, a health check, ``curl``) starts nothing: each
  session is a process of ~1 GB, and four such requests used to hold every slot for a minute.
- ``POST /start`` starts a session: a ``python`` child that unpickles the loaded
  :class:`~.server.Content` from its stdin, serves it on a free loopback port with a random
  internal key, and reports the port on its stdout; the answer is ``{"location": "/s/<id>/"}``.
  With ``max_sessions`` running, it is a 503 page that says so (the starter page shows it).
- ``/s/<id>/...`` is proxied to that child (HTTP and the websocket); the child only answers
  loopback Host names and its internal key, which only the launcher holds.
- One tab per session: a second page on the same ``/s/<id>/`` (a duplicated tab, a pasted link)
  takes the viewer over, and the older page is closed with :data:`TAKEN_OVER`, which it explains
  (two pages would otherwise drive one state, each seeing the other's changes). A reload is the
  same, seamlessly.
- A session ends when its tab's websocket has been closed for ``grace_s`` (``--reconnect-s``; a
  reload, or the page reconnecting by itself after a network drop, comes back within it), or
  ``connect_s`` after it started if no websocket ever came. Ending closes the child's
  stdin: it exits at once (and if the launcher dies, its children see EOF and exit too); its memory
  goes back to the system with the process.

The Host/Origin and auth-key checks of :mod:`.security` run here, on the public side, and so does
TLS when a certificate is given: the session processes are plain HTTP on loopback, reachable only
with their internal key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import secrets
import signal
import ssl
import sys
import threading
from dataclasses import dataclass, field
from typing import Callable

from .server import MAX_CLIENT_MESSAGES, Access, Content, run_app

log = logging.getLogger(__name__)

#: WebSocket close code of a page whose session another tab took over (4000-4999: the application's).
TAKEN_OVER = 4001
_PORT_LINE = "RFMWEB_SESSION_PORT "
_CHILD = "from rfmweb.app.launcher import session_main; session_main()"
# response headers of a proxied page worth keeping (aiohttp recomputes length and encoding)
_KEEP_HEADERS = ("Content-Type", "Cache-Control", "Last-Modified", "ETag", "Expires", "Pragma")
_BUSY = """<!doctype html><html><head><meta charset="utf-8"><title>rfmweb: busy</title></head>
<body style="font-family:sans-serif;margin:3em"><h1>All viewer sessions are in use</h1>
<p class="rfm-busy">This server runs at most {n} viewer session(s) at once ({n} open now).
Close another rfmweb tab, then reload: a closed tab frees its place {grace:g} s after it closed (its
viewer waits that long for the tab to come back).</p></body></html>"""
_STARTER = """<!doctype html><html><head><meta charset="utf-8"><title>rfmweb</title></head>
<body style="font-family:sans-serif;margin:3em"><p class="rfm-starting">Starting a viewer session&hellip;</p>
<noscript><p>The viewer needs JavaScript.</p></noscript>
<script>
fetch("/start", {method: "POST", credentials: "same-origin", cache: "no-store"}).then(async (r) => {
  if (r.ok) { location.replace((await r.json()).location); return; }
  document.open(); document.write(await r.text()); document.close();
}).catch(() => { document.body.textContent = "The server did not answer: reload to try again."; });
</script></body></html>"""
_FAILED = """<!doctype html><html><head><meta charset="utf-8"><title>rfmweb: error</title></head>
<body style="font-family:sans-serif;margin:3em"><h1>The viewer session could not start</h1>
<p>The server log says why. Reload to try again.</p></body></html>"""


@dataclass
class _SessionSpec:
    """What a session process receives on its stdin (pickled)."""

    sid: str
    content: Content
    key: str
    level: int


@dataclass
class Session:
    """A running session process and the websockets that use it."""

    sid: str
    proc: asyncio.subprocess.Process
    port: int
    key: str
    browsers: list = field(default_factory=list)   # the open page websockets, oldest first
    reaper: asyncio.TimerHandle | None = None
    tasks: list = field(default_factory=list)

    @property
    def tag(self) -> str:
        """A short name for logs (the id itself is a capability: never logged whole)."""
        return self.sid[:6]


class Launcher:
    """The public aiohttp app: starts, proxies to and ends session processes.

    Args:
        content: what every session shows.
        access: Host/Origin names and the auth key (checked here).
        max_sessions: session processes at most at once.
        grace_s: a session whose websockets are all closed ends after this many seconds.
        connect_s: a session ends if no websocket connects within this many seconds of its start.
        start_s: longest wait for a session process to listen.
    """

    def __init__(self, content: Content, access: Access, *, max_sessions: int = 4, grace_s: float = 60.0,
                 connect_s: float = 60.0, start_s: float = 180.0) -> None:
        self.content = content
        self.access = access
        self.max_sessions = max_sessions
        self.grace_s, self.connect_s, self.start_s = grace_s, connect_s, start_s
        self.sessions: dict[str, Session] = {}
        self._starting = 0
        self._http = None  # aiohttp.ClientSession, made on the loop

    def app(self):
        """The aiohttp application (middlewares: :meth:`Access.protect`)."""
        from aiohttp import web

        app = web.Application()
        self.access.protect(app)
        app.router.add_get("/", self.starter)
        app.router.add_get("/index.html", self.starter)
        app.router.add_post("/start", self.new_session)
        app.router.add_get("/s/{sid}", self.with_slash)
        app.router.add_route("*", "/s/{sid}/{tail:.*}", self.proxy)
        # browsers ask for it on every page: an empty answer, not a 404 in every console
        app.router.add_get("/favicon.ico", lambda _request: web.Response(status=204))
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_startup(self, _app) -> None:
        import aiohttp

        self._http = aiohttp.ClientSession(auto_decompress=True)

    async def _on_shutdown(self, _app) -> None:
        await asyncio.gather(*(self.end(sid, "server stopping") for sid in list(self.sessions)))
        await self._http.close()

    # -- sessions ---------------------------------------------------------------------------------
    async def starter(self, _request):
        """The page that starts a session from the browser (see the module docstring)."""
        from aiohttp import web

        return web.Response(text=_STARTER, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def new_session(self, _request):
        """Start a session: ``{"location": "/s/<id>/"}`` (503 page when all are in use)."""
        from aiohttp import web

        if len(self.sessions) + self._starting >= self.max_sessions:
            log.warning("refused a new session: %d of %d in use", len(self.sessions) + self._starting,
                        self.max_sessions)
            return web.Response(status=503, text=_BUSY.format(n=self.max_sessions, grace=round(self.grace_s)),
                                content_type="text/html", headers={"Retry-After": "30"})
        self._starting += 1
        try:
            session = await self.start()
        except (OSError, RuntimeError, asyncio.TimeoutError) as exc:
            log.error("a session process failed to start: %s", exc)
            return web.Response(status=500, text=_FAILED, content_type="text/html")
        finally:
            self._starting -= 1
        self.sessions[session.sid] = session
        self._schedule_end(session, self.connect_s, "no websocket connected")
        log.info("session %s started (pid %d, port %d); %d open", session.tag, session.proc.pid, session.port,
                 len(self.sessions))
        return web.json_response({"location": f"/s/{session.sid}/"}, headers={"Cache-Control": "no-store"})

    async def start(self) -> Session:
        """Run a session process and wait until it listens."""
        sid, key = secrets.token_hex(16), secrets.token_urlsafe(32)
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", _CHILD, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE)
        spec = _SessionSpec(sid, self.content, key, logging.getLogger("rfmweb").getEffectiveLevel())
        try:
            proc.stdin.write(pickle.dumps(spec, protocol=pickle.HIGHEST_PROTOCOL))
            await proc.stdin.drain()
            port = await asyncio.wait_for(self._read_port(proc), self.start_s)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        session = Session(sid, proc, port, key)
        session.tasks.append(asyncio.ensure_future(self._drain(session)))
        return session

    @staticmethod
    async def _read_port(proc) -> int:
        while True:
            line = (await proc.stdout.readline()).decode(errors="replace")
            if not line:
                raise RuntimeError(f"the session process exited with status {await proc.wait()}")
            if line.startswith(_PORT_LINE):
                return int(line[len(_PORT_LINE):])

    async def _drain(self, session: Session) -> None:
        """Read what the session process writes on stdout; end the session if the process exits."""
        while await session.proc.stdout.readline():
            pass
        if self.sessions.get(session.sid) is session:
            await self.end(session.sid, f"its process exited with status {await session.proc.wait()}")

    def _schedule_end(self, session: Session, delay: float, why: str) -> None:
        if session.reaper is not None:
            session.reaper.cancel()
        loop = asyncio.get_running_loop()
        session.reaper = loop.call_later(delay, lambda: asyncio.ensure_future(self.end(session.sid, why)))

    async def end(self, sid: str, why: str) -> None:
        """End a session: close the process's stdin (it exits), terminate it if it lingers."""
        session = self.sessions.pop(sid, None)
        if session is None:
            return
        if session.reaper is not None:
            session.reaper.cancel()
        proc = session.proc
        with contextlib.suppress(OSError, RuntimeError):
            proc.stdin.close()
        for signal_, wait_s in ((None, 5.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, None)):
            if signal_ is not None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal_)
            try:
                await asyncio.wait_for(proc.wait(), wait_s)
                break
            except asyncio.TimeoutError:
                continue
        log.info("session %s ended (%s); %d open", session.tag, why, len(self.sessions))

    # -- proxy ------------------------------------------------------------------------------------
    async def with_slash(self, request):
        from aiohttp import web

        return web.Response(status=308, headers={"Location": f"/s/{request.match_info['sid']}/"})

    async def proxy(self, request):
        """Forward a request of ``/s/<id>/...`` to its session (the websocket too)."""
        from aiohttp import web

        session = self.sessions.get(request.match_info["sid"])
        tail = request.match_info["tail"]
        if session is None:
            if request.method == "GET" and tail in ("", "index.html") and "Upgrade" not in request.headers:
                return web.Response(status=303, headers={"Location": "/"})  # ended (e.g. a late reload): a new one
            return web.Response(status=404, text="rfmweb: this viewer session has ended; open / for a new one\n")
        headers = {"Authorization": f"Bearer {session.key}"}
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._proxy_ws(request, session, headers)
        for name in ("Content-Type", "Accept", "If-None-Match", "If-Modified-Since"):
            if name in request.headers:
                headers[name] = request.headers[name]
        url = f"http://127.0.0.1:{session.port}/{tail}"
        body = await request.read() if request.can_read_body else None
        async with self._http.request(request.method, url, params=request.rel_url.query, headers=headers,
                                      data=body, allow_redirects=False) as upstream:
            payload = await upstream.read()
            kept = {k: upstream.headers[k] for k in _KEEP_HEADERS if k in upstream.headers}
            location = upstream.headers.get("Location")
            if location is not None:  # relative ones stay; the app's root is /s/<id>/ here
                kept["Location"] = f"/s/{session.sid}{location}" if location.startswith("/") else location
            return web.Response(status=upstream.status, body=payload, headers=kept)

    async def _proxy_ws(self, request, session: Session, headers: dict):
        from aiohttp import WSMsgType, web

        # no permessage-deflate on either leg: frames are JPEG already, and aiohttp sends a large
        # compressed message from a task of its own whose error nobody collects if the tab closes
        # a frame from the browser is held whole before it is passed on: no larger than a session takes
        browser = web.WebSocketResponse(max_msg_size=MAX_CLIENT_MESSAGES, compress=False)
        await browser.prepare(request)
        # one tab per session: the same /s/<id>/ opened again (a duplicated tab, a pasted link) takes
        # the viewer over; the older tab is let go with a close code its page explains
        for older in list(session.browsers):
            log.info("session %s: opened in another tab; the older tab is let go", session.tag)
            asyncio.ensure_future(older.close(code=TAKEN_OVER, message=b"opened in another tab"))
        session.browsers.append(browser)
        if session.reaper is not None:
            session.reaper.cancel()
        try:
            async with self._http.ws_connect(f"http://127.0.0.1:{session.port}/ws", headers=headers,
                                             max_msg_size=0, compress=0) as app_ws:
                async def pump(source, sink) -> None:
                    async for msg in source:
                        if msg.type == WSMsgType.BINARY:
                            await sink.send_bytes(msg.data)
                        elif msg.type == WSMsgType.TEXT:
                            await sink.send_str(msg.data)
                        else:
                            break

                pumps = [asyncio.ensure_future(pump(browser, app_ws)), asyncio.ensure_future(pump(app_ws, browser))]
                _, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    task.cancel()
                # collect both ends: a side closing while a frame is in flight (a tab closed, the
                # server stopping) is how a session normally ends, not an error to report
                for result in await asyncio.gather(*pumps, return_exceptions=True):
                    if isinstance(result, Exception) and not isinstance(result, OSError):
                        log.warning("session %s: websocket proxy: %s", session.tag, result)
        except (OSError, asyncio.TimeoutError, RuntimeError) as exc:
            log.warning("session %s: websocket proxy failed: %s", session.tag, exc)
        finally:
            await browser.close()
            session.browsers.remove(browser)
            if not session.browsers and self.sessions.get(session.sid) is session:
                self._schedule_end(session, self.grace_s, "its tab closed")
        return browser


def run_launcher(content: Content, *, host: str, port: int, access: Access, max_sessions: int,
                 on_ready: Callable[[int], None] | None = None, ssl_context: ssl.SSLContext | None = None,
                 grace_s: float = 60.0) -> None:
    """Serve the launcher on ``host:port`` until SIGINT/SIGTERM (blocking); ends every session on exit.

    ``ssl_context``: listen with TLS (see :func:`~.security.tls_context`); ``grace_s``: see :class:`Launcher`.
    """
    from aiohttp import web

    async def main() -> None:
        launcher = Launcher(content, access, max_sessions=max_sessions, grace_s=grace_s)
        runner = web.AppRunner(launcher.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if on_ready is not None:
            on_ready(runner.addresses[0][1])
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())


def session_main() -> None:
    """Entry point of a session process (see the module docstring): never run by hand."""
    spec: _SessionSpec = pickle.load(sys.stdin.buffer)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"[session {spec.sid[:6]}] %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("rfmweb").addHandler(handler)
    logging.getLogger("rfmweb").setLevel(spec.level)

    def exit_with_launcher() -> None:  # EOF on stdin: the launcher ended this session, or died
        sys.stdin.buffer.read()
        os._exit(0)

    threading.Thread(target=exit_with_launcher, name="rfmweb-session-stdin", daemon=True).start()
    from ..backend import limit_threads
    from .security import allowed_names
    from .server import quiet_trame_logs

    limit_threads()
    quiet_trame_logs()
    access = Access(allowed_names("127.0.0.1"), auth_key=spec.key)
    run_app(spec.content, host="127.0.0.1", port=0, access=access,
            on_ready=lambda port: print(f"{_PORT_LINE}{port}", flush=True))
