"""``serve()``: build the trame app around a volume and run it (blocking).

Security: a server reachable from other machines must have an auth key. With a key, every HTTP
request (the page, its scripts, the websocket handshake) needs ``?secret=KEY`` once (the first page
load), after which a cookie carries it; wslink also checks the key when the websocket says hello.
The browser never names a server-side file: the volume is chosen here, on the command line.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import re
import socket
import webbrowser

from ..backend import limit_threads
from ..errors import InputError
from ..render.registry import check_renderer
from ..session.sources import open_sources
from ..transfer import PRESETS
from ..volume import Volume

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")
_KEY_CHARS = re.compile(r"[A-Za-z0-9_\-]{8,256}")
# the trame client converts URL parameters that look like JS literals (numbers, true, null) before
# sending them as the secret, and the comparison then fails: refuse such keys up front
_JS_LITERAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|0[xX][0-9a-fA-F]+|0[bB][01]+|0[oO][0-7]+|"
                         r"[+-]?Infinity|true|false|null|undefined")


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_auth_key(key: str) -> str:
    """Validate an auth key (8+ characters of ``A-Z a-z 0-9 _ -``, not a number)."""
    if not isinstance(key, str) or not _KEY_CHARS.fullmatch(key) or _JS_LITERAL.fullmatch(key):
        raise InputError("--auth-key must be 8 to 256 characters of A-Z a-z 0-9 _ - and not a number "
                         "(e.g. the output of `python -c \"import secrets; print(secrets.token_urlsafe())\"`)")
    return key


def auth_middleware(key: str, cookie_prefix: str = "rfmweb_key_"):
    """aiohttp middleware: 401 unless the request carries ``?secret=key`` or the cookie set by it.

    The cookie is named after the port, so servers on one host with different keys do not clash.
    """
    from aiohttp import web

    expected = key.encode()

    def _ok(value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode(), expected)

    @web.middleware
    async def require_key(request, handler):
        cookie = f"{cookie_prefix}{request.url.port or ''}"
        by_query = _ok(request.query.get("secret"))
        if not (by_query or _ok(request.cookies.get(cookie))):
            return web.Response(status=401, text="rfmweb: unauthorised; open the link printed by `rfmweb serve` "
                                                 "(it ends with ?secret=...)\n")
        response = await handler(request)
        if by_query and not response.prepared:
            response.set_cookie(cookie, key, httponly=True, samesite="Strict", path="/")
        return response

    return require_key


def quiet_trame_logs() -> None:
    """trame logs every template attribute it translates, aiohttp every request, at INFO: keep these
    loggers at WARNING unless someone configured them."""
    for name in ("trame", "trame_client", "trame_server", "trame_rca", "wslink", "aiohttp"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


def build_app(volume: Volume | None, *, splats=None, renderer: str | None = None, preset: str | None = None,
              server=None, segmentation=None):
    """Create the trame server with the layout and controllers (not started); returns ``(server, controller)``.

    ``segmentation``: a :class:`~rfmweb.session.SegmentationViews` to show instead of ``volume``.
    """
    from trame.app import get_server

    from .logic import AppController
    from .ui import build_ui

    server = server or get_server("rfmweb", client_type="vue3")
    controller = AppController(server, volume, splats=splats, renderer=renderer, preset=preset,
                               segmentation=segmentation)
    build_ui(server, controller.names)
    return server, controller


def _log_renderfm(volume: Volume) -> None:
    """Say whether Render-FM is offered, and where: the main view keeps the fastest ray-marcher (a
    network pass per TF or class change is not free on a CPU); a CT's compare view starts on it."""
    from ..render.renderfm_renderer import checkpoint_missing, renderfm_checkpoint

    why = checkpoint_missing()
    if why is not None:
        log.info("Render-FM not offered: %s", why)
    elif volume.modality == "CT":
        log.info("Render-FM available (%s): the compare view starts on it (\"Ray-marcher | Render-FM\"); "
                 "choose it as the main renderer from the menu or with --renderer renderfm", renderfm_checkpoint())
    else:
        log.info("Render-FM available (%s) in the renderer menu (trained on CT; this is %s)",
                 renderfm_checkpoint(), volume.modality)


def serve(volume: Volume | str | os.PathLike | None = None, *, labels: str | os.PathLike | None = None,
          splats=None, host: str = "127.0.0.1", port: int = 8080, auth_key: str | None = None, open_browser: bool = False,
          renderer: str | None = None, preset: str | None = None, segment: bool = False,
          model: str | os.PathLike | None = None) -> None:
    """Serve the viewer of ``volume`` until interrupted (blocking).

    Args:
        volume: a :class:`Volume`, a NIfTI path, a BraTS case folder, ``"sample:NAME"``, a splat
            ``.npz`` (splats alone), or ``None`` for the bundled CT phantom.
        labels: label-map NIfTI for a volume path.
        splats: splats of the same anatomy (``.npz`` path or :class:`~rfmweb.splats.Splats6D`), for
            the ``splats`` renderer and side-by-side comparisons with the ray-marcher.
        host: interface to listen on; anything but loopback requires ``auth_key``.
        port: TCP port (0 picks a free one).
        auth_key: secret the browser must present (``?secret=...`` in the URL).
        open_browser: open the system browser on the URL.
        renderer, preset: initial choices (see :func:`rfmweb.render.registry.renderer_names`, ``PRESETS``).
            On a CT the compare view starts on ``renderfm`` when a Render-FM checkpoint is there (the
            shipped one or ``$RFMWEB_RENDERFM_CHECKPOINT``); the main view keeps ``renderer``.
        segment: ``volume`` is a BraTS case: show ground truth | raw INR | denoised INR side by side
            (cameras and slices linked, Dice under the INR views, correction tools).
        model: INR checkpoint for ``segment`` (default: the shipped weights).

    Raises:
        InputError: bad arguments (checked before anything is loaded) or an unreadable volume.
    """
    if auth_key is not None:
        check_auth_key(auth_key)
    elif not is_loopback(host):
        raise InputError(f"refusing to listen on {host!r} without an auth key: other machines could connect; "
                         "pass auth_key= (CLI: --auth-key KEY) or use host='127.0.0.1'")
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise InputError(f"port must be an integer in 0..65535, got {port!r}")
    if renderer is not None:
        check_renderer(renderer)
    if preset is not None and preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if segment and splats is not None:
        raise InputError("--segment shows a BraTS case; it does not take --splats")
    if model is not None and not segment:
        raise InputError("--model is the INR of --segment; add --segment")
    vol, splats = open_sources(volume, labels, splats)
    limit_threads()
    quiet_trame_logs()
    segmentation = None
    if segment:
        from ..inr import load_model
        from ..session import SegmentationViews

        segmentation = SegmentationViews(vol, load_model(model) if model is not None else None,
                                         renderer=renderer)
        segmentation.start()  # INR inference on a worker thread; the views fill in when it is done
    elif vol is not None:
        _log_renderfm(vol)

    # trame would otherwise parse this process's command line (ours, or pytest's) as its own
    os.environ["TRAME_ARGS"] = ""
    server, controller = build_app(vol, splats=splats, renderer=renderer, preset=preset, segmentation=segmentation)
    if auth_key is not None:
        server.cli.set_defaults(authKey=auth_key)

        @server.controller.on_server_bind.add
        def _protect(wslink_server):
            wslink_server.app.middlewares.append(auth_middleware(auth_key))

    @server.controller.on_server_ready.add
    def _announce(**_):
        shown = socket.gethostname() if host in ("0.0.0.0", "::") else f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{server.port}/" + (f"?secret={auth_key}" if auth_key is not None else "")
        what = f"{vol.name} ({'x'.join(map(str, vol.shape))})" if vol is not None else f"{len(splats)} splats"
        log.info("serving %s — open %s", what, url)
        if open_browser:  # not trame's: it would drop the ?secret=
            webbrowser.open(url)

    try:
        server.start(port=port, host=host, open_browser=False, show_connection_info=False, timeout=0,
                     disable_logging=True)
    finally:
        controller.close()
