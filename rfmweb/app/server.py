"""``serve()``: build the trame app around a volume and run it (blocking).

Sessions: by default every browser tab gets its own viewer (camera, presets, classes, corrections,
renderers): :mod:`.launcher` answers on HOST:PORT and starts one trame process per tab on a free
loopback port, proxies the page and the websocket to it, and ends that process when the tab's
websocket has been closed for a few seconds (``--max-sessions`` bounds how many run at once).
trame keeps one state per server process, so a process per viewer is the isolation trame itself
guarantees; an ended session frees all its memory with its process. With ``shared=True``
(``--shared``) one process serves every tab as before: everyone sees the same view.

Security (:mod:`.security`): Host and Origin are checked on every request (no DNS rebinding, no
cross-site websocket, even on loopback without a key); a server reachable from other machines
must have an auth key, presented once as ``?secret=KEY`` (then a cookie) or as a Bearer header.
The key is never logged. The browser never names a server-side file: the volume is chosen here.
With a certificate (``certfile``/``keyfile``) the public side speaks HTTPS/WSS; session processes
stay on loopback plain HTTP behind the launcher (only it can reach them).
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import ssl
import sys
import time
import webbrowser
from dataclasses import dataclass
from typing import Callable

from ..backend import limit_threads
from ..extras import require
from ..errors import InputError, about
from ..render.registry import check_renderer
from ..session.sources import open_sources
from ..transfer import PRESETS
from ..volume import Volume
from .rpcs import limit_rpcs
from .security import KEY_ENV, allowed_names, check_allow_host, check_auth_key, is_loopback, protect, tls_context

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Access:
    """Who may connect (see :mod:`.security`).

    Attributes:
        names: Host names accepted (IP literals always are).
        proxies: ``--allow-host`` names: accepted as Host and as the Origin of a reverse proxy.
        auth_key: the secret to present, or ``None``.
    """

    names: frozenset[str]
    proxies: frozenset[str] = frozenset()
    auth_key: str | None = None

    def protect(self, app) -> None:
        """Add the checks to an aiohttp application."""
        protect(app, names=self.names | self.proxies, proxies=self.proxies, auth_key=self.auth_key)


@dataclass
class Content:
    """What a viewer shows (loaded once; a session process receives it pickled).

    Attributes:
        volume, splats: the loaded sources (either may be ``None``, not both).
        renderer, preset: initial choices; segment, model: the segmentation views and their INR
            (a loaded model, or ``None`` for the shipped weights).
        scene: a scene file's content (:mod:`rfmweb.session.scene_file`) every viewer starts from.
        reconnect_s: how long a session waits for its tab after the connection drops (the page says
            so and reconnects by itself within it); ``None`` with ``--shared`` (the app stays up).
    """

    volume: Volume | None
    splats: object = None
    renderer: str | None = None
    preset: str | None = None
    segment: bool = False
    model: object = None
    scene: dict | None = None
    reconnect_s: float | None = None

    def describe(self) -> str:
        """What is served, for the log: modality and size, never the name (a file's name may be a patient's)."""
        vol = self.volume
        return f"a {vol.modality} volume of {'x'.join(map(str, vol.shape))} voxels" if vol is not None \
            else f"{len(self.splats)} splats"


def quiet_trame_logs() -> None:
    """trame logs every template attribute it translates, aiohttp every request, at INFO: keep these
    loggers at WARNING unless someone configured them. wslink's errors about a client's messages
    go through :class:`ClientErrorFlood`."""
    for name in ("trame", "trame_client", "trame_server", "trame_rca", "wslink", "aiohttp"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)
    protocol = logging.getLogger("wslink.protocol")
    if not any(isinstance(f, ClientErrorFlood) for f in protocol.filters):
        protocol.addFilter(ClientErrorFlood())


class ClientErrorFlood(logging.Filter):
    """wslink logs each bad message a client sends as three error records, one a whole traceback (25
    lines for a message over :data:`MAX_CLIENT_MESSAGES`): a client sending junk in a loop flooded the
    log. Each record keeps its last line only, and at most :attr:`PER_MINUTE` pass a minute (the next
    one to pass says how many were dropped)."""

    PER_MINUTE = 30

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        super().__init__()
        self._clock = clock or time.monotonic
        self._window, self._passed, self._dropped = -1.0, 0, 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = self._clock()
        if now - self._window >= 60.0:
            self._window, self._passed = now, 0
        if self._passed >= self.PER_MINUTE:
            self._dropped += 1
            return False
        self._passed += 1
        lines = record.getMessage().strip().splitlines() or [""]
        record.msg, record.args, record.exc_info, record.exc_text = lines[-1][:300], (), None, None
        if self._dropped:
            record.msg = f"{record.msg} ({self._dropped} similar lines dropped)"
            self._dropped = 0
        return True


def quiet_closed_websockets(wslink_server) -> None:
    """A client that leaves while its answers are being sent (a closed tab, a dropped connection)
    is how a connection normally ends: wslink would log each answer it could not send with a
    traceback (and then fail sending the error too). Drop those answers with one debug line."""
    for handler in getattr(wslink_server, "_ws_handlers", []):
        for name in ("sendWrappedMessage", "sendWrappedError"):
            send = getattr(handler, name)

            @functools.wraps(send)
            async def quiet(*args, _send=send, **kwargs):
                try:
                    return await _send(*args, **kwargs)
                except ConnectionResetError as exc:  # aiohttp's ClientConnectionResetError is one
                    log.debug("a client left before its answer was sent: %s", exc)
                    return None

            setattr(handler, name, quiet)


#: The most a connected client's messages may hold in memory while their chunks arrive, bytes. wslink
#: allows 4 GB per message after its hello and reserves a message's whole size on its first chunk,
#: so one 12-byte header could make a session reserve gigabytes. The app's largest message, a scene
#: file (:data:`rfmweb.session.scene_file.MAX_SCENE_BYTES`), is far below it.
MAX_CLIENT_MESSAGES = 16 * 1024 * 1024


def bound_client_messages() -> None:
    """Make wslink reassemble each client's chunked messages within :data:`MAX_CLIENT_MESSAGES` in all:
    a message declared larger, or one that would take the client's pending messages over it, is
    refused (wslink logs the error and drops the message; the session goes on)."""
    from wslink import chunking, protocol

    class BoundedUnChunker(chunking.UnChunker):
        def set_max_message_size(self, size: int) -> None:
            super().set_max_message_size(min(int(size), MAX_CLIENT_MESSAGES))

        def process_chunk(self, chunk: bytes):
            message = super().process_chunk(chunk)
            if sum(len(m["content"]) for m in self.pending_messages.values()) > MAX_CLIENT_MESSAGES:
                self.release_pending_messages()
                raise ValueError(f"a client's pending messages exceed {MAX_CLIENT_MESSAGES} bytes; dropped")
            return message

    protocol.UnChunker = BoundedUnChunker


def build_app(volume: Volume | None, *, splats=None, renderer: str | None = None, preset: str | None = None,
              server=None, segmentation=None, reconnect_s: float | None = None):
    """Create the trame server with the layout and controllers (not started); returns ``(server, controller)``.

    ``segmentation``: a :class:`~rfmweb.session.SegmentationViews` to show instead of ``volume``;
    ``reconnect_s``: see :class:`Content`.
    """
    from trame.app import get_server

    from .logic import AppController
    from .ui import build_ui

    server = server or get_server("rfmweb", client_type="vue3")
    controller = AppController(server, volume, splats=splats, renderer=renderer, preset=preset,
                               segmentation=segmentation)
    build_ui(server, controller.names, reconnect_s=reconnect_s)
    return server, controller


def _log_renderfm(volume: Volume) -> None:
    """Say whether Render-FM is offered, and where: the main view keeps the fastest ray-marcher (a
    network pass per TF or class change is not free on a CPU); a CT's compare view starts on it."""
    from ..render.registry import renderer_status
    from ..render.renderfm_renderer import renderfm_checkpoint

    why = renderer_status(volume)["renderfm"]
    if why is not None:
        log.info("Render-FM not offered: %s", why)
    else:
        log.info("Render-FM available (%s): the compare view starts on it (\"Ray-marcher | Render-FM\"); "
                 "choose it as the main renderer from the menu or with --renderer renderfm", renderfm_checkpoint())


def run_app(content: Content, *, host: str, port: int, access: Access,
            on_ready: Callable[[int], None] | None = None, shared: bool = False,
            ssl_context: ssl.SSLContext | None = None) -> None:
    """Build the trame app of ``content`` and serve it on ``host:port`` until stopped (blocking).

    ``on_ready`` is called with the port once the server listens (``port=0`` picks a free one).
    ``shared``: many tabs share this app; the first connected drives (:class:`~.shared.DriverGate`).
    ``ssl_context``: listen with TLS (see :func:`~.security.tls_context`).
    """
    segmentation = None
    if content.segment:
        from ..session import SegmentationViews

        segmentation = SegmentationViews(content.volume, content.model, renderer=content.renderer)
        segmentation.start()  # INR inference on a worker thread; the views fill in when it is done

    # trame would otherwise parse this process's command line (ours, or pytest's) as its own
    os.environ["TRAME_ARGS"] = ""
    bound_client_messages()
    server, controller = build_app(content.volume, splats=content.splats, renderer=content.renderer,
                                   preset=content.preset, segmentation=segmentation,
                                   reconnect_s=content.reconnect_s)
    if content.scene is not None:
        controller.start_from_scene(content.scene)
    # no wslink authKey: the page URL loses ?secret= (see .security); the websocket handshake is
    # an HTTP request the middlewares check like any other
    server.controller.on_server_bind.add(lambda wslink_server: access.protect(wslink_server.app))
    server.controller.on_server_bind.add(quiet_closed_websockets)
    server.controller.on_server_bind.add(limit_rpcs)     # no page may stop the server or its frames
    if ssl_context is not None:  # wslink's aiohttp site reads its config's "ssl" when it starts
        server.controller.on_server_bind.add(lambda wslink_server: wslink_server.config.update(ssl=ssl_context))
    if shared:
        from .shared import DriverGate

        controller.typed.data.shared = True
        server.controller.on_server_bind.add(DriverGate().install)
    if on_ready is not None:
        server.controller.on_server_ready.add(lambda **_: on_ready(int(server.port)))
    try:
        server.start(port=port, host=host, open_browser=False, show_connection_info=False, timeout=0,
                     disable_logging=True)
    finally:
        controller.close()


def _machine_name() -> str:
    """This machine's name as other machines know it: the fully qualified name when it has one."""
    fqdn = socket.getfqdn()
    return fqdn if "." in fqdn and not fqdn.startswith("localhost") else socket.gethostname()


def _machine_address() -> str | None:
    """The IP address of the interface this machine reaches other networks by (no packet is sent;
    ``None`` without a route): a link that works where the name does not resolve."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))                  # TEST-NET-1: never routed anywhere real
            return probe.getsockname()[0]
    except OSError:
        return None


def announcer(content: Content, host: str, auth_key: str | None, open_browser: bool,
              scheme: str = "http") -> Callable[[int], None]:
    """What to do once the server listens: log the URL (``scheme``: ``http`` or ``https``; never the
    key); with a key, print the URL that carries it on the terminal (stderr, only when it is one),
    and open the browser if asked."""

    def announce(port: int) -> None:
        public = host in ("0.0.0.0", "::")
        shown = _machine_name() if public else f"[{host}]" if ":" in host else host
        url = f"{scheme}://{shown}:{port}/"
        with_key = url + (f"?secret={auth_key}" if auth_key is not None else "")
        needs = " (with the auth key: typed into its form, ?secret=KEY once, or Authorization: Bearer KEY)" \
            if auth_key else ""
        address = _machine_address() if public else None
        also = f" or {scheme}://{address}:{port}/" if address and address != shown else ""
        log.info("serving %s — open %s%s%s", content.describe(), url, also, needs)
        if auth_key is not None and sys.stderr.isatty():
            print(f"rfmweb: open {with_key}", file=sys.stderr, flush=True)  # the terminal, not the logs
        if open_browser:
            webbrowser.open(with_key)

    return announce


def serve(volume: Volume | str | os.PathLike | None = None, *, labels: str | os.PathLike | None = None,
          splats=None, host: str = "127.0.0.1", port: int = 8080, auth_key: str | None = None, open_browser: bool = False,
          renderer: str | None = None, preset: str | None = None, segment: bool = False,
          model: str | os.PathLike | None = None, allow_hosts: tuple[str, ...] = (), shared: bool = False,
          max_sessions: int = 4, series: str | None = None, certfile: str | os.PathLike | None = None,
          keyfile: str | os.PathLike | None = None, scene: str | os.PathLike | None = None,
          reconnect_s: float = 60.0) -> None:
    """Serve the viewer of ``volume`` until interrupted (blocking).

    Args:
        volume: a :class:`Volume`, a volume file (NIfTI, NRRD, MHA), a DICOM series folder or
            ``.zip``, a BraTS case folder, ``"sample:NAME"``, a splat ``.npz`` or 6D ``.ply`` (splats alone), or
            ``None`` for the bundled CT phantom.
        labels: label map for a volume file or DICOM series.
        splats: splats of the same anatomy (``.npz`` / 6D ``.ply`` path or :class:`~rfmweb.splats.Splats6D`), for
            the ``splats`` renderer and side-by-side comparisons with the ray-marcher.
        host: interface to listen on; anything but loopback requires ``auth_key``.
        port: TCP port (0 picks a free one).
        auth_key: secret the browser must present (``?secret=...`` once, then a cookie) or a script
            (``Authorization: Bearer ...``).
        open_browser: open the system browser on the URL.
        renderer, preset: initial choices (see :func:`rfmweb.render.registry.renderer_names`, ``PRESETS``).
            On a CT the compare view starts on ``renderfm`` when a Render-FM checkpoint is there (the
            shipped one or ``$RFMWEB_RENDERFM_CHECKPOINT``); the main view keeps ``renderer``.
        segment: ``volume`` is a BraTS case: show ground truth | raw INR | denoised INR side by side
            (cameras and slices linked, Dice under the INR views, correction tools).
        model: INR checkpoint for ``segment`` (default: the shipped weights).
        allow_hosts: extra Host names (a reverse proxy's), also accepted as its Origin.
        shared: one state for every browser tab (teaching: all see one view) instead of a session
            process per tab.
        series: the SeriesInstanceUID to show from a DICOM folder holding several (default: the largest).
        max_sessions: most session processes at once (not with ``shared``); the next tab gets a
            "busy" page.
        certfile, keyfile: PEM certificate chain and its unencrypted private key: serve HTTPS (TLS
            1.2+) instead of HTTP; give both or neither.
        scene: a scene file (``Save scene`` in the viewer, :func:`rfmweb.session.scene_file.save_scene`)
            every viewer starts from; checked against the volume before serving.
        reconnect_s: seconds a session waits for its tab after the connection drops (Wi-Fi, a
            sleeping tablet, a reload): the page reconnects by itself within them, keeping the view,
            cursor and annotations; a closed tab's place frees after them (not with ``shared``).

    Raises:
        InputError: bad arguments (checked before anything is loaded) or an unreadable volume.
    """
    require("viewer")  # trame: say what to install before anything starts
    if auth_key is not None:
        check_auth_key(auth_key)
    elif not is_loopback(host):
        raise InputError(f"refusing to listen on {host!r} without an auth key: other machines could connect; "
                         f"give one (--auth-key-file FILE, ${KEY_ENV} or --auth-key KEY; Python: auth_key=) "
                         "or listen on 127.0.0.1")
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise InputError(f"port must be an integer in 0..65535, got {port!r}")
    if not isinstance(max_sessions, int) or max_sessions < 1:
        raise InputError(f"--max-sessions must be a positive integer, got {max_sessions!r}")
    if not (isinstance(reconnect_s, (int, float)) and 1 <= reconnect_s <= 3600):
        raise InputError(f"--reconnect-s must be a number of seconds in 1..3600, got {reconnect_s!r}")
    if (certfile is None) != (keyfile is None):
        raise InputError("give --certfile and --keyfile together (the certificate and its private key), or neither")
    ssl_context = tls_context(certfile, keyfile) if certfile is not None else None
    proxies = frozenset(check_allow_host(name) for name in allow_hosts)
    if renderer is not None:
        check_renderer(renderer)
    if preset is not None and preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if segment and splats is not None:
        raise InputError("--segment shows a BraTS case; it does not take --splats")
    if model is not None and not segment:
        raise InputError("--model is the INR of --segment; add --segment")
    vol, splats = open_sources(volume, labels, splats, series=series)
    limit_threads()
    quiet_trame_logs()
    inr = None
    if segment:  # checked here: a session process's errors only reach the log
        if vol is None or vol.modality != "MR" or vol.data.shape[0] != 4:
            raise InputError("--segment needs a 4-channel MR case (T1n, T1c, T2w, FLAIR), got "
                             + ("splats" if vol is None else f"{vol.modality} with {vol.data.shape[0]} channel(s)"))
        if model is not None:
            from ..inr import load_model

            inr = load_model(model)
    elif vol is not None:
        _log_renderfm(vol)
    scene_data = None
    if scene is not None:  # checked now, on a throwaway view: a session process's errors only reach the log
        from ..session import RenderSession
        from ..session.scene_file import apply_scene, read_scene

        scene_data = read_scene(scene)
        if vol is not None:
            apply_scene(RenderSession(vol, splats=splats, width=16, height=16), scene_data, scene)
        if "layout" in scene_data:
            from .layout import check_layout

            with about(scene):
                check_layout(scene_data["layout"])
    content = Content(vol, splats, renderer, preset, segment, inr, scene_data, None if shared else float(reconnect_s))
    access = Access(allowed_names(host), proxies, auth_key)
    announce = announcer(content, host, auth_key, open_browser, "http" if ssl_context is None else "https")
    if shared:
        run_app(content, host=host, port=port, access=access, on_ready=announce, shared=True, ssl_context=ssl_context)
    else:
        from .launcher import run_launcher

        run_launcher(content, host=host, port=port, access=access, max_sessions=max_sessions, on_ready=announce,
                     ssl_context=ssl_context, grace_s=float(reconnect_s))
