"""HTTP-level protection of the web app: Host/Origin checks and the auth key (aiohttp middlewares).

Every request the app answers (the page, its scripts, the websocket handshake) goes through
:func:`origin_middleware` then, with an auth key, :func:`auth_middleware`:

- **Host**: must name this server: an IP literal, a loopback name, this machine's hostname, or a
  name given with ``--allow-host`` (a reverse proxy's). A web page that resolves its own domain to
  127.0.0.1 (DNS rebinding) sends its domain as Host and is refused.
- **Origin** (websocket handshakes and anything but GET/HEAD): when present it must be the page's
  own origin (its host:port equals the Host header) or an ``--allow-host`` name. A foreign page
  opening ``ws://127.0.0.1:8080/ws`` sends its own Origin and is refused, key or no key.
- **Fetch Metadata**: a request a browser marks ``Sec-Fetch-Site: cross-site`` must be a link
  followed to the page (``Sec-Fetch-Mode: navigate``, ``Sec-Fetch-Dest: document``). Another site's
  ``<img src=http://127.0.0.1:8080/>``, iframe, script or ``fetch`` would otherwise start a viewer
  session (a process) on every load, until none is left for the user; GET requests carry no Origin
  to check. Same-origin requests, typed URLs and clients without the header (scripts) are unaffected.
- **Auth key**: ``?secret=KEY`` on a page load (answered with HTTP 303 to the same URL without it,
  setting an HttpOnly, SameSite=Strict cookie, Secure over HTTPS), or the key typed into the form a
  browser without it is shown (:data:`KEY_FORM`, a POST: unlike a link's, the key stays out of the
  browser's history), then the cookie; scripts may send ``Authorization: Bearer KEY``. The cookie
  holds an HMAC under the key of a nonce drawn at each start, not the key: it lasts
  :data:`COOKIE_MAX_AGE_S`, and a restart ends every sign-in. A client (:func:`client_address`;
  behind an ``--allow-host`` reverse proxy, the address it forwards) that presents a wrong key
  :data:`MAX_KEY_FAILURES` times within :data:`KEY_FAILURE_WINDOW_S` seconds is answered 429 until
  the window has passed, right key or not (guessing the key is throttled; requests that carry no key
  at all do not count, nor do old cookies; a browser already signed in is let through).

- **TLS** (``--certfile``/``--keyfile``, :func:`tls_context`): the public side listens with TLS 1.2 or
  later; the cookie is then Secure and the page's origin is ``https://`` (its host and port are
  what the Origin check compares, so nothing else changes).

Refusals are logged on one line that names the method, the path (never the query, which may hold
the key) and the reason. :func:`service_middleware` answers ``/healthz`` and the trame client's
session-manager POST (``.../paraview/``), which otherwise ends in a 405 on every page load.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import re
import secrets
import socket
import ssl
import time
from pathlib import Path
from typing import Callable, Iterable

from ..errors import InputError

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")
#: Environment variable read by ``rfmweb serve`` for the auth key (keeps it out of ``ps``).
KEY_ENV = "RFMWEB_AUTH_KEY"
_KEY_CHARS = re.compile(r"[A-Za-z0-9_\-]{16,256}")
# a key that looks like a JS literal (a number, true, null) is converted by the trame client's URL
# parser before it is sent: refuse such keys up front
_JS_LITERAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|0[xX][0-9a-fA-F]+|0[bB][01]+|0[oO][0-7]+|"
                         r"[+-]?Infinity|true|false|null|undefined")
_DEFAULT_PORT = {"http": 80, "https": 443, "ws": 80, "wss": 443}
#: Wrong keys one peer (IP address) may present within :data:`KEY_FAILURE_WINDOW_S` before it is refused.
MAX_KEY_FAILURES = 10
#: Seconds over which wrong keys are counted, and a refused peer waits.
KEY_FAILURE_WINDOW_S = 60.0


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_auth_key(key: str, source: str = "--auth-key") -> str:
    """Validate an auth key (16+ characters of ``A-Z a-z 0-9 _ -``, not a number); errors name ``source``
    (the option, file or variable it came from)."""
    if not isinstance(key, str) or not _KEY_CHARS.fullmatch(key) or _JS_LITERAL.fullmatch(key):
        raise InputError(f"{source}: the auth key must be 16 to 256 characters of A-Z a-z 0-9 _ - and not a number "
                         "(e.g. the output of `python -c \"import secrets; print(secrets.token_urlsafe())\"`)")
    return key


def resolve_auth_key(key: str | None, key_file: str | os.PathLike | None, environ=os.environ) -> str | None:
    """The auth key from ``--auth-key``, else ``--auth-key-file`` (first line), else ``$RFMWEB_AUTH_KEY``."""
    if key is not None and key_file is not None:
        raise InputError("give --auth-key or --auth-key-file, not both")
    if key_file is not None:
        try:
            lines = Path(key_file).read_text().splitlines()
        except OSError as exc:
            raise InputError(f"{key_file}: cannot read the auth key file: {exc.strerror or exc}") from None
        key = lines[0].strip() if lines else ""
        if not key:
            raise InputError(f"{key_file}: the auth key file is empty")
        mode = Path(key_file).stat().st_mode
        if mode & 0o077:
            log.warning("the auth key file can be read by other users (mode %o): chmod 600 it", mode & 0o777)
        return check_auth_key(key, f"--auth-key-file {key_file} (its first line)")
    if key is None:
        key = environ.get(KEY_ENV) or None
        return None if key is None else check_auth_key(key, f"${KEY_ENV}")
    return check_auth_key(key)


def tls_context(certfile: str | os.PathLike, keyfile: str | os.PathLike) -> ssl.SSLContext:
    """A server-side TLS context (TLS 1.2 or later) from a PEM certificate chain and its private key.

    Raises:
        InputError: a file is unreadable, ``certfile`` holds no PEM certificate, or ``keyfile`` is not
            an unencrypted PEM key matching it (the message names the file).
    """
    for path, what in ((certfile, "certificate"), (keyfile, "private key")):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise InputError(f"{path}: cannot read the TLS {what} file: {exc.strerror or exc}") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:  # certificates only: tells a bad certificate file from a bad key
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=os.fspath(certfile))
    except (ssl.SSLError, ValueError) as exc:
        raise InputError(f"{certfile}: not a PEM certificate (--certfile): {exc}") from None
    asked = []

    def no_passphrase() -> bytes:  # never prompt on the terminal for an encrypted key
        asked.append(True)
        return b""

    try:
        context.load_cert_chain(os.fspath(certfile), os.fspath(keyfile), password=no_passphrase)
    except (ssl.SSLError, ValueError) as exc:
        why = "the key is encrypted: give an unencrypted one" if asked else \
            f"not a PEM private key of the certificate {certfile}: {exc}"
        raise InputError(f"{keyfile}: {why} (--keyfile)") from None
    return context


def check_allow_host(name: str) -> str:
    """Validate an ``--allow-host`` name (a DNS name or an IP address, no port)."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9.\-]{1,253}|\[?[0-9A-Fa-f:.]+\]?", name):
        raise InputError(f"--allow-host takes a host name such as viewer.example.org, got {name!r}")
    return name.lower().strip("[]")


def allowed_names(bound_host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """Host names this server answers to: loopback names, the bound name, this machine's hostname,
    and ``extra`` (``--allow-host``). IP literals are always accepted (see :func:`host_allowed`)."""
    names = set(LOOPBACK_NAMES) | {check_allow_host(n) for n in extra}
    names.add(bound_host.lower().strip("[]"))
    hostname = socket.gethostname().lower()
    names |= {hostname, hostname.split(".")[0]}
    return frozenset(n for n in names if n)


def split_host(value: str, scheme: str) -> tuple[str, int] | None:
    """``"Name:port"`` (a Host header or an origin's netloc) -> ``("name", port)``; None if malformed."""
    value = value.strip().lower()
    match = re.fullmatch(r"(\[[0-9a-f:.]+\]|[^:\[\]/@\s]+)(?::(\d{1,5}))?", value)
    if match is None:
        return None
    port = int(match.group(2)) if match.group(2) else _DEFAULT_PORT.get(scheme)
    return match.group(1).strip("[]"), port


def host_allowed(name: str, names: frozenset[str]) -> bool:
    """DNS rebinding needs the attacker's domain in Host: IP literals and known names are safe."""
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return name in names


def request_scheme(request, trust_forwarded: bool) -> str:
    """``https`` or ``http`` as the browser sees it: ``X-Forwarded-Proto`` counts only from a
    reverse proxy on this machine (the TCP peer is loopback) and when ``trust_forwarded``."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    if trust_forwarded and forwarded in ("http", "https") and is_loopback(request.remote or ""):
        return forwarded
    return "https" if request.secure else "http"


def client_address(request, behind_proxy: bool) -> str:
    """The browser's address: the TCP peer, or with ``behind_proxy`` (a reverse proxy was named with
    ``--allow-host``) and a loopback peer, the address the proxy appended to ``X-Forwarded-For`` (the
    last one: those before it are whatever the client sent). Wrong keys are counted per client, so
    one client guessing keys through the proxy does not lock out every other user of it; without a
    proxy the header is ignored (a local process could change it to dodge the count)."""
    peer = request.remote or ""
    forwarded = request.headers.get("X-Forwarded-For", "")
    if behind_proxy and forwarded and is_loopback(peer):
        return forwarded.split(",")[-1].strip()[:64] or peer
    return peer


#: A session's path (``/s/<id>/...``): its id is a capability, logged by its first characters only.
_SESSION_PATH = re.compile(r"(/s/[0-9A-Za-z]{6})[0-9A-Za-z]*")


def shown_path(path: str) -> str:
    """``path`` as logged: a session id cut to its first 6 characters, at most 200 characters."""
    return _SESSION_PATH.sub(r"\1…", path)[:200]


def _refuse(request, status: int, reason: str, text: str, client: str | None = None):
    """A refusal, logged with ``client`` (behind a named proxy, the address it forwards), else the peer."""
    from aiohttp import web

    # the path only (the query may carry the key), without a session's whole id
    log.warning("refused %s %s from %s: %s", request.method, shown_path(request.path), client or request.remote,
                reason)
    return web.Response(status=status, text=f"rfmweb: {text}\n")


def origin_middleware(names: frozenset[str], proxies: frozenset[str] = frozenset(), *, trust_forwarded: bool = True):
    """aiohttp middleware: 403 unless Host names this server (:func:`host_allowed` over ``names``),
    Origin, when a websocket handshake or a non-GET request has one, is the page's own origin
    (host and port equal Host's) or the origin of a reverse proxy named in ``proxies``, and a
    request the browser marks cross-site is a link followed (see the module docstring)."""
    from aiohttp import web

    @web.middleware
    async def check_origin(request, handler):
        scheme = request_scheme(request, trust_forwarded)
        host = split_host(request.headers.get("Host", ""), scheme)
        if host is None or not host_allowed(host[0], names):
            return _refuse(request, 403, "the Host header is not this server (DNS rebinding?)",
                           "forbidden: unknown Host (behind a reverse proxy? start with --allow-host NAME)")
        websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        origin = request.headers.get("Origin")
        if origin is not None and (websocket or request.method not in ("GET", "HEAD")):
            origin_scheme, sep, netloc = origin.partition("://")
            origin_scheme = origin_scheme.lower()
            parsed = split_host(netloc, origin_scheme) if sep and origin_scheme in ("http", "https") else None
            if parsed is None or not (parsed == host or parsed[0] in proxies):
                return _refuse(request, 403, "cross-site request (its Origin is another site)",
                               "forbidden: cross-site request")
        headers = request.headers
        if headers.get("Sec-Fetch-Site") == "cross-site" and not (
                headers.get("Sec-Fetch-Mode") == "navigate" and headers.get("Sec-Fetch-Dest") == "document"):
            return _refuse(request, 403, "cross-site request that is not a link followed (Fetch Metadata: "
                           f"{headers.get('Sec-Fetch-Mode')}, {headers.get('Sec-Fetch-Dest')})",
                           "forbidden: cross-site request")
        return await handler(request)

    return check_origin


def cookie_token(key: str, nonce: bytes, issued: int) -> str:
    """What the cookie holds: ``"ISSUED.MAC"``, ``issued`` the Unix second it was set and ``MAC`` an
    HMAC under the key of it and ``nonce`` (random per server start): the key itself never goes in a
    cookie, a restart revokes every cookie, and one is honoured :data:`COOKIE_MAX_AGE_S` at most."""
    mac = hmac.new(key.encode(), b"rfmweb session cookie v2" + nonce + str(issued).encode(), hashlib.sha256)
    return f"{issued}.{mac.hexdigest()}"


#: How long the cookie a key sets lasts, seconds (a working day; a restart ends it sooner).
COOKIE_MAX_AGE_S = 12 * 3600
#: What a browser without a key is shown: a form for the key (a POST: the key stays out of the history).
KEY_FORM = """<!doctype html><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>rfmweb: auth key</title>
<form method="post" style="font:16px sans-serif;margin:15vh auto;max-width:24em;line-height:1.6">
<label>This viewer needs its auth key:<br><input name="secret" type="password" autocomplete="current-password"
 autofocus required style="width:100%;font:inherit"></label><br>
<button style="font:inherit;margin-top:6px">Open</button> <span style="color:#b00">{why}</span></form>
"""


def auth_middleware(key: str, cookie_prefix: str = "rfmweb_key_", *, trust_forwarded: bool = True,
                    behind_proxy: bool = False, clock: Callable[[], float] = time.monotonic,
                    wall: Callable[[], float] = time.time):
    """aiohttp middleware: 401 unless the request carries the key (``?secret=``, the form of
    :data:`KEY_FORM`, the cookie either sets, or ``Authorization: Bearer``). A page load with
    ``?secret=KEY`` is answered with 303 to the same URL without it, so the key leaves the address bar
    (the browser's history keeps the link: the form does not leave it there); a browser without a key
    gets the form. Wrong keys are throttled per client (:func:`client_address`; module docstring;
    ``clock``: seconds, for tests). ``wall``: Unix seconds, which the cookie's age is counted in.

    The cookie is named after the port, so servers on one host with different keys do not clash.
    """
    from aiohttp import web

    expected, nonce = key.encode(), secrets.token_bytes(16)
    failures: dict[str, list[float]] = {}      # peer -> times of its recent wrong keys

    def _same(value: str | None, want: bytes) -> bool:
        return value is not None and hmac.compare_digest(value.encode(), want)

    def _signed_in(value: str | None) -> bool:
        issued = (value or "").partition(".")[0]
        if not (issued.isdigit() and len(issued) <= 12 and -60 <= wall() - int(issued) <= COOKIE_MAX_AGE_S):
            return False
        return _same(value, cookie_token(key, nonce, int(issued)).encode())

    def _recent(peer: str) -> list[float]:
        now = clock()
        if len(failures) > 4096:          # many peers: forget those whose window has passed
            for stale in [p for p, times in failures.items() if now - times[-1] >= KEY_FAILURE_WINDOW_S]:
                del failures[stale]
        kept = [t for t in failures.get(peer, ()) if now - t < KEY_FAILURE_WINDOW_S]
        if kept:
            failures[peer] = kept
        else:
            failures.pop(peer, None)
        return kept

    @web.middleware
    async def require_key(request, handler):
        cookie = f"{cookie_prefix}{request.url.port or ''}"
        if _signed_in(request.cookies.get(cookie)):       # no guess: the token is random per start
            return await handler(request)
        peer = client_address(request, trust_forwarded and behind_proxy)
        if len(_recent(peer)) >= MAX_KEY_FAILURES:
            return _refuse(request, 429, f"{MAX_KEY_FAILURES} wrong keys within {KEY_FAILURE_WINDOW_S:.0f} s",
                           "too many wrong keys; try again in a minute", peer)
        bearer = request.headers.get("Authorization", "")
        by_query = _same(request.query.get("secret"), expected)
        form = request.method == "POST" and request.content_type == "application/x-www-form-urlencoded"
        by_form = form and _same((await request.post()).get("secret"), expected)
        page = request.method == "GET" and request.headers.get("Upgrade", "").lower() != "websocket"
        if by_form or (by_query and page):
            query = request.query.copy()
            query.popall("secret", None)
            response = web.Response(status=303, headers={"Location": str(request.rel_url.with_query(query))})
            response.set_cookie(cookie, cookie_token(key, nonce, int(wall())), httponly=True, samesite="Strict",
                                path="/", max_age=int(COOKIE_MAX_AGE_S),
                                secure=request_scheme(request, trust_forwarded) == "https")
            response.headers["Referrer-Policy"] = "no-referrer"
            log.info("signed in from %s (the key by %s)", peer, "the form" if by_form else "a link")
            return response
        by_bearer = bearer[:7].lower() == "bearer " and _same(bearer[7:].strip(), expected)
        if not (by_query or by_bearer):
            # a wrong key counts; an old cookie (the server restarted, a day passed) does not: it is no guess
            wrong = "secret" in request.query or form or bool(bearer)
            if wrong:
                failures.setdefault(peer, []).append(clock())
            refused = _refuse(request, 401, "no valid auth key", "unauthorised; open the link with ?secret=KEY "
                                                                 "(see `rfmweb serve --help`)", peer)
            if (page or form) and "text/html" in request.headers.get("Accept", ""):
                why = "That is not this viewer's key." if wrong else \
                    "Your sign-in has ended: enter the key again." if cookie in request.cookies else ""
                return web.Response(status=401, text=KEY_FORM.format(why=why), content_type="text/html",
                                    # same-origin: with no-referrer a browser sends "Origin: null" with the form
                                    headers={"Referrer-Policy": "same-origin", "Cache-Control": "no-store"})
            return refused
        return await handler(request)

    return require_key


def service_middleware():
    """aiohttp middleware for two small answers: ``GET`` or ``HEAD /healthz`` (``ok``: for scripts and
    load balancers that wait for the server, without a key and without starting a session) and the
    trame client's session-manager POST (``<page dir>/paraview/``), answered with the websocket URL next to the
    page instead of the 405 the client would otherwise log and fall back from."""
    from aiohttp import web

    @web.middleware
    async def service(request, handler):
        if request.method in ("GET", "HEAD") and request.path == "/healthz":
            return web.Response(text="ok\n")
        if request.method == "POST" and request.path.endswith("/paraview/"):
            prefix = request.path[:-len("paraview/")]
            # the client lower-cases this URL, swaps USE_HOST for its location's host and the
            # scheme for ws:/wss: as its page's
            return web.json_response({"sessionURL": f"ws://USE_HOST{prefix}ws"})
        return await handler(request)

    return service


class RedactKey(logging.Filter):
    """Logging filter: blank ``secret=...`` in records (aiohttp's access log writes request lines
    with their query, in the message and in ``extra`` fields)."""

    _SECRET = re.compile(r"(secret=)[^&\s\"']*", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self._SECRET.sub(r"\1***", record.getMessage()), ()
        for name, value in list(vars(record).items()):
            if isinstance(value, str) and name != "msg" and "secret=" in value.lower():
                setattr(record, name, self._SECRET.sub(r"\1***", value))
        return True


def redact_access_log() -> None:
    """Add :class:`RedactKey` to aiohttp's access logger (once)."""
    logger = logging.getLogger("aiohttp.access")
    if not any(isinstance(f, RedactKey) for f in logger.filters):
        logger.addFilter(RedactKey())


def protect(app, *, names: frozenset[str], proxies: frozenset[str] = frozenset(), auth_key: str | None,
            trust_forwarded: bool = True) -> None:
    """Add the Host/Origin check, :func:`service_middleware` and the auth key check (if any) to
    the aiohttp ``app`` (in that order, before its own middlewares)."""
    redact_access_log()
    chain = [origin_middleware(names, proxies, trust_forwarded=trust_forwarded), service_middleware()]
    if auth_key is not None:
        chain.append(auth_middleware(auth_key, trust_forwarded=trust_forwarded, behind_proxy=bool(proxies)))
    for i, middleware in enumerate(chain):
        app.middlewares.insert(i, middleware)
