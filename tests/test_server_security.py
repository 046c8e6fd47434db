"""HTTP security of ``rfmweb serve``: Host/Origin checks, the auth key, the small service answers.

Middleware tests run an aiohttp app in-process (no trame); the end-to-end test runs the CLI in a
subprocess with the key in a file and checks the same rules on the real launcher and a session.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import msgpack
import pytest

from rfmweb.app.server import MAX_CLIENT_MESSAGES
from rfmweb.errors import InputError

KEY = "test-key_for-rfmweb"
PATIENT = "DOE^JOHN_1955"


def _app(key: str | None = KEY, proxies=()):
    from aiohttp import web

    from rfmweb.app.server import Access
    from rfmweb.app.security import allowed_names

    async def page(request):
        return web.Response(text="page")

    async def ws(request):
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        await sock.send_str("hello")
        await sock.close()
        return sock

    app = web.Application()
    Access(allowed_names("127.0.0.1", proxies) | frozenset(proxies), frozenset(proxies), key).protect(app)
    app.router.add_get("/", page)
    app.router.add_get("/index.html", page)
    app.router.add_get("/ws", ws)
    app.router.add_post("/upload", page)
    return app


def _in_thread(coro):
    """``asyncio.run(coro)`` on a thread of its own: the test process may already run an event loop
    on the main thread (Playwright's, trame's), and asyncio.run refuses to nest."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _run(check, **app_kw):
    """Run ``await check(client)`` against :func:`_app` on a real loopback socket."""
    from aiohttp.test_utils import TestClient, TestServer

    async def main():
        async with TestClient(TestServer(_app(**app_kw), host="127.0.0.1")) as client:
            return await check(client)

    return _in_thread(main())


def _host(client) -> str:
    return f"127.0.0.1:{client.port}"


def test_host_must_name_this_server(caplog):
    async def check(client):
        bearer = {"Authorization": f"Bearer {KEY}"}
        ok = await client.get("/", headers=bearer)
        rebound = await client.get("/", headers={**bearer, "Host": f"evil.example:{client.port}"})
        local = await client.get("/", headers={**bearer, "Host": f"localhost:{client.port}"})
        ip = await client.get("/", headers={**bearer, "Host": f"10.1.2.3:{client.port}"})
        return ok.status, rebound.status, local.status, ip.status

    with caplog.at_level(logging.WARNING, logger="rfmweb.app.security"):
        assert _run(check) == (200, 403, 200, 200)
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1 and "Host" in refused[0] and "\n" not in refused[0]


def test_allow_host_admits_a_reverse_proxy():
    async def check(client):
        bearer = {"Authorization": f"Bearer {KEY}"}
        page = await client.get("/", headers={**bearer, "Host": "viewer.example.org"})
        async with client.ws_connect("/ws", headers={**bearer, "Host": "viewer.example.org",
                                                     "Origin": "https://viewer.example.org"}) as sock:
            hello = (await sock.receive()).data
        return page.status, hello

    assert _run(check, proxies=("viewer.example.org",)) == (200, "hello")


def test_foreign_origin_websocket_and_post_are_refused_even_without_a_key():
    from aiohttp import WSServerHandshakeError

    async def check(client):
        statuses = []
        for origin in ("http://evil.example", f"http://localhost:{client.port}", "null", "http://127.0.0.1:1"):
            try:
                async with client.ws_connect("/ws", headers={"Origin": origin}):
                    statuses.append(101)
            except WSServerHandshakeError as err:
                statuses.append(err.status)
        post = await client.post("/upload", headers={"Origin": "http://evil.example"})
        async with client.ws_connect("/ws", headers={"Origin": f"http://{_host(client)}"}) as sock:
            same = (await sock.receive()).data
        no_origin = await client.post("/upload")  # scripts send none
        return statuses, post.status, same, no_origin.status

    assert _run(check, key=None) == ([403, 403, 403, 403], 403, "hello", 200)


def test_cross_site_subresources_are_refused_and_links_followed_are_not(caplog):
    """Another site's <img src=http://127.0.0.1:8080/> (or iframe, script, fetch) must not reach the page
    handler, which starts a viewer session per load; a link followed from another site does."""
    def fetch(site, mode, dest):
        return {"Sec-Fetch-Site": site, "Sec-Fetch-Mode": mode, "Sec-Fetch-Dest": dest}

    async def check(client):
        cases = [fetch("cross-site", "no-cors", "image"), fetch("cross-site", "navigate", "iframe"),
                 fetch("cross-site", "cors", "empty"), fetch("cross-site", "navigate", "document"),
                 fetch("same-origin", "no-cors", "image"), fetch("none", "navigate", "document"), {}]
        return [(await client.get("/", headers=h)).status for h in cases]

    with caplog.at_level(logging.WARNING, logger="rfmweb.app.security"):
        assert _run(check, key=None) == [403, 403, 403, 200, 200, 200, 200]
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 3 and all("Fetch Metadata" in r for r in refused)


def test_key_in_query_sets_a_cookie_and_redirects_without_it(caplog):
    async def check(client):
        none = await client.get("/index.html", allow_redirects=False)
        wrong = await client.get("/index.html?secret=wrong-key-123", allow_redirects=False)
        first = await client.get(f"/index.html?secret={KEY}&x=1", allow_redirects=False)
        set_cookie = first.headers["Set-Cookie"]
        client.session.cookie_jar.clear()
        name_value = set_cookie.split(";")[0]
        later = await client.get("/index.html", headers={"Cookie": name_value})
        forged = await client.get("/index.html", headers={"Cookie": name_value[:-4] + "abcd"})
        raw_key = await client.get("/index.html", headers={"Cookie": f"{name_value.split('=')[0]}={KEY}"})
        bearer = await client.get("/index.html", headers={"Authorization": f"Bearer {KEY}"})
        bad_bearer = await client.get("/index.html", headers={"Authorization": "Bearer wrong-key-123"})
        return (none.status, wrong.status, first.status, first.headers["Location"], set_cookie, later.status,
                forged.status, raw_key.status, bearer.status, bad_bearer.status)

    with caplog.at_level(logging.DEBUG):
        (none, wrong, first, location, set_cookie, later, forged, raw_key, bearer, bad_bearer) = _run(check)
    assert (none, wrong, first, later, forged, raw_key, bearer, bad_bearer) == (401, 401, 303, 200, 401, 401, 200, 401)
    assert location == "/index.html?x=1"  # the key leaves the address bar and the history
    flags = [f.strip().lower() for f in set_cookie.split(";")[1:]]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    assert "secure" not in flags  # plain HTTP (see the next test for HTTPS)
    assert KEY not in set_cookie  # the cookie holds an HMAC of the key
    assert KEY not in caplog.text


def test_a_browser_without_the_key_gets_a_form_that_keeps_it_out_of_the_history():
    """A link with ?secret= stays in the browser's history (the 303 does not remove it there): a browser
    without a key is shown a form instead, whose POST signs it in. A restart ends every sign-in."""
    html = {"Accept": "text/html,application/xhtml+xml"}

    async def check(client):
        page = await client.get("/index.html", headers=html)
        form = await page.text()
        wrong = await client.post("/index.html", data={"secret": "not-the-key-at-all"}, headers=html,
                                  allow_redirects=False)
        right = await client.post("/index.html", data={"secret": KEY}, headers=html, allow_redirects=False)
        cookie = right.headers["Set-Cookie"].split(";")[0]
        client.session.cookie_jar.clear()
        signed_in = await client.get("/index.html", headers={"Cookie": cookie})
        script = await client.get("/index.html")                    # not a browser: plain text
        return (page.status, form, wrong.status, await wrong.text(), right.status, right.headers["Location"],
                right.headers["Set-Cookie"], signed_in.status, await signed_in.text(), await script.text(), cookie)

    page, form, wrong, wrong_text, right, location, set_cookie, signed_in, body, script, cookie = _run(check)
    assert page == 401 and '<form method="post"' in form and 'name="secret"' in form and KEY not in form
    assert wrong == 401 and "not this viewer's key" in wrong_text
    assert (right, location, signed_in, body) == (303, "/index.html", 200, "page")
    assert "max-age=43200" in set_cookie.lower() and script.startswith("rfmweb: unauthorised")

    async def after_restart(client):                                # a new server (port): a new nonce
        again = await client.get("/index.html", headers={**html, "Cookie": f"rfmweb_key_{client.port}="
                                                                            + cookie.split("=", 1)[1]})
        return again.status, await again.text()

    status, text = _run(after_restart)
    assert status == 401 and "sign-in has ended" in text


def test_cookie_is_secure_behind_an_https_proxy():
    async def check(client):
        r = await client.get(f"/?secret={KEY}", allow_redirects=False, headers={"X-Forwarded-Proto": "https"})
        return r.headers["Set-Cookie"]

    assert "secure" in [f.strip().lower() for f in _run(check).split(";")]


def test_service_answers_healthz_and_the_session_manager_post():
    async def check(client):
        health = await client.get("/healthz")
        probe = await client.head("/healthz")          # load balancers' probes (it answered 401)
        manager = await client.post("/s/abc/paraview/", headers={"Authorization": f"Bearer {KEY}"})
        return health.status, await health.text(), probe.status, manager.status, await manager.json()

    assert _run(check) == (200, "ok\n", 200, 200, {"sessionURL": "ws://USE_HOST/s/abc/ws"})


def _with_key_check(check, **middleware_kw):
    """``await check(client)`` against a page behind ``auth_middleware(KEY, **middleware_kw)`` alone."""
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from rfmweb.app.security import auth_middleware

    async def page(request):
        return web.Response(text="page")

    async def main():
        app = web.Application(middlewares=[auth_middleware(KEY, **middleware_kw)])
        app.router.add_get("/", page)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            return await check(client)

    return _in_thread(main())


def test_wrong_keys_are_throttled_per_peer():
    from rfmweb.app.security import KEY_FAILURE_WINDOW_S, MAX_KEY_FAILURES

    now = [0.0]

    async def check(client):
        async def status(path, **kw):
            return (await client.get(path, allow_redirects=False, **kw)).status
        signed_in = await client.get(f"/?secret={KEY}", allow_redirects=False)
        client.session.cookie_jar.clear()
        plain = {await status("/") for _ in range(MAX_KEY_FAILURES + 2)}      # no key: not counted
        wrong = [await status("/?secret=not-the-key") for _ in range(MAX_KEY_FAILURES - 1)]
        wrong.append(await status("/", headers={"Authorization": "Bearer not-the-key"}))
        locked = await status(f"/?secret={KEY}")
        # a tab signed in before (its cookie) is no guess: let through (a neighbour's wrong keys behind
        # one NAT address locked every clinician out); a forged cookie is refused as ever
        cookie = signed_in.headers["Set-Cookie"].split(";")[0]
        still = await status("/", headers={"Cookie": cookie})
        forged = await status("/", headers={"Cookie": cookie[:-4] + "abcd"})
        now[0] += KEY_FAILURE_WINDOW_S
        return plain, set(wrong), locked, still, forged, await status(f"/?secret={KEY}")

    plain, wrong, locked, still, forged, after = _with_key_check(check, clock=lambda: now[0])
    assert plain == {401} and wrong == {401}
    assert locked == 429, "the right key is refused while the peer is throttled"
    assert (still, forged) == (200, 429)
    assert after == 303, "the window passed: the key works again"


def test_a_sign_in_lasts_twelve_hours_whatever_the_browser_keeps():
    """The cookie was one fixed value, good for ever: a copied cookie now works 12 hours at most."""
    from rfmweb.app.security import COOKIE_MAX_AGE_S

    now = [1_800_000_000.0]

    async def check(client):
        first = await client.get(f"/?secret={KEY}", allow_redirects=False)
        cookie = first.headers["Set-Cookie"].split(";")[0]
        client.session.cookie_jar.clear()
        statuses = []
        for dt in (COOKIE_MAX_AGE_S - 60, 120):
            now[0] += dt
            statuses.append((await client.get("/", headers={"Cookie": cookie})).status)
        return statuses

    assert _with_key_check(check, wall=lambda: now[0]) == [200, 401]


def test_behind_a_named_proxy_the_log_names_the_client_and_sign_ins(caplog):
    """Refusals behind nginx were all logged "from 127.0.0.1" and sign-ins not at all (an audit needs both)."""
    async def check(client):
        headers = {"X-Forwarded-For": "203.0.113.66"}
        await client.get("/?secret=not-the-key", allow_redirects=False, headers=headers)
        await client.get(f"/?secret={KEY}", allow_redirects=False, headers=headers)

    with caplog.at_level(logging.INFO, logger="rfmweb.app.security"):
        _with_key_check(check, behind_proxy=True)
    lines = [r.getMessage() for r in caplog.records]
    assert "refused GET / from 203.0.113.66: no valid auth key" in lines
    assert "signed in from 203.0.113.66 (the key by a link)" in lines and KEY not in caplog.text


def test_behind_a_named_proxy_wrong_keys_lock_out_only_the_client_that_sent_them():
    """Behind the reverse proxy the README recommends every request came from 127.0.0.1: ten wrong
    keys from one user locked everyone out. Without a named proxy the header counts for nothing (a
    local process could change it to dodge the count)."""
    from rfmweb.app.security import MAX_KEY_FAILURES

    async def check(client):
        async def status(path, client_ip):
            headers = {"X-Forwarded-For": f"10.9.9.9, {client_ip}"}     # the first part is the client's own
            return (await client.get(path, allow_redirects=False, headers=headers)).status
        for _ in range(MAX_KEY_FAILURES):
            await status("/?secret=not-the-key", "203.0.113.66")
        return await status(f"/?secret={KEY}", "203.0.113.66"), await status(f"/?secret={KEY}", "198.51.100.7")

    assert _with_key_check(check, behind_proxy=True) == (429, 303)
    assert _with_key_check(check, behind_proxy=False) == (429, 429)


def test_a_refusal_logs_a_session_id_by_its_first_characters_only():
    from rfmweb.app.security import shown_path
    assert shown_path("/s/b61637db125bba74c4fa6cda623c8395/ws") == "/s/b61637…/ws"
    assert shown_path("/index.html") == "/index.html" and len(shown_path("/x" * 500)) == 200


def test_auth_key_sources(tmp_path, caplog):
    from rfmweb.app.security import resolve_auth_key
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="rfmweb.app.security"):
        assert resolve_auth_key(None, key_file, environ={}) == KEY
        assert not caplog.records
        key_file.chmod(0o644)                        # others may read it: said, never the key
        assert resolve_auth_key(None, key_file, environ={}) == KEY
    assert "can be read by other users (mode 644): chmod 600 it" in caplog.text and KEY not in caplog.text
    assert resolve_auth_key(None, None, environ={"RFMWEB_AUTH_KEY": KEY}) == KEY
    assert resolve_auth_key(KEY, None, environ={"RFMWEB_AUTH_KEY": "other-key-123"}) == KEY
    assert resolve_auth_key(None, None, environ={}) is None
    with pytest.raises(InputError, match="not both"):
        resolve_auth_key(KEY, key_file, environ={})
    with pytest.raises(InputError, match="cannot read"):
        resolve_auth_key(None, tmp_path / "missing", environ={})
    with pytest.raises(InputError, match="RFMWEB_AUTH_KEY: the auth key must be"):
        resolve_auth_key(None, None, environ={"RFMWEB_AUTH_KEY": "short"})
    key_file.write_text("# the viewer's key\n" + KEY)
    with pytest.raises(InputError, match="--auth-key-file .*key \\(its first line\\): the auth key must be"):
        resolve_auth_key(None, key_file, environ={})
    with pytest.raises(InputError, match="^--auth-key: the auth key must be"):
        resolve_auth_key("short", None, environ={})


# -- the real server (CLI, launcher, one session) ----------------------------------------------------------
@pytest.fixture(scope="module")
def served(small_ct, tmp_path_factory):
    """``rfmweb serve`` with the key in a file, on a free port."""
    from rfmweb.io import save_volume
    folder = tmp_path_factory.mktemp("security")
    save_volume(small_ct, folder / f"{PATIENT}.nii.gz", folder / "labels.nii.gz")   # named as exports often are
    (folder / "key").write_text(KEY)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = folder / "server.log"
    proc = subprocess.Popen([sys.executable, "-m", "rfmweb", "serve", str(folder / f"{PATIENT}.nii.gz"),
                             "--port", str(port), "--auth-key-file", str(folder / "key"), "--renderer", "vtk",
                             "--max-sessions", "2"],
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while _in_thread(_status(f"{base}/healthz")) != 200:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"server did not start:\n{log.read_text()}")
        time.sleep(0.2)
    yield base, log, proc.pid
    proc.terminate()
    proc.wait(timeout=30)


def _peak_bytes(pid: int) -> int:
    """The most memory process ``pid`` has held (VmHWM), bytes."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


async def _status(url: str, **kw) -> int | None:
    import aiohttp
    try:
        async with aiohttp.ClientSession() as http, http.get(url, allow_redirects=False, **kw) as r:
            return r.status
    except aiohttp.ClientError:
        return None


def test_running_server_checks_host_origin_and_key(served):
    import aiohttp
    base, log, pid = served

    async def main():
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:  # unsafe: IP hosts
            out = {"no_key": (await http.get(f"{base}/", allow_redirects=False)).status,
                   "rebound": (await http.get(f"{base}/?secret={KEY}", allow_redirects=False,
                                              headers={"Host": "attacker.example"})).status}
            first = await http.get(f"{base}/?secret={KEY}", allow_redirects=False)
            out["first"], out["location"] = first.status, first.headers["Location"]
            # the cookie jar now holds the session cookie: / is the page whose script starts a session, and
            # starts none itself (a link preview or a health check must not take a session slot)
            started = log.read_text().count(" started (pid")
            for _ in range(3):
                starter = await http.get(f"{base}/", allow_redirects=False)
            out["starter"] = (starter.status, "/start" in await starter.text())
            # every page's favicon request: an empty answer, no 404 in the console, no session started
            out["favicon"] = (await http.get(f"{base}/favicon.ico", allow_redirects=False)).status
            evil = await http.post(f"{base}/start", headers={"Origin": "http://evil.example"})
            out["cross_site_start"] = evil.status
            start = await http.post(f"{base}/start", headers={"Origin": base})
            out["start"], sid_path = start.status, (await start.json())["location"]
            await asyncio.sleep(0.5)                                  # the log line of the one session started
            out["processes"] = log.read_text().count(" started (pid") - started
            page = await http.get(f"{base}{sid_path}")
            out["page"] = page.status
            try:
                async with http.ws_connect(f"{base}{sid_path}ws", headers={"Origin": "http://evil.example"}):
                    out["foreign_ws"] = 101
            except aiohttp.WSServerHandshakeError as err:
                out["foreign_ws"] = err.status
            async with http.ws_connect(f"{base}{sid_path}ws", headers={"Origin": base}) as sock:
                out["same_ws"] = not sock.closed
                # the launcher (every session's parent) held a frame whole, 4x its size in memory: one frame of
                # a few GB would end every session; now it refuses frames larger than a session takes
                peak = _peak_bytes(pid)
                try:
                    await sock.send_bytes(b"x" * (8 * MAX_CLIENT_MESSAGES))
                    await sock.receive(timeout=20)
                except ConnectionError:   # closed while the frame was still going out
                    pass
                out["huge_frame_held"] = _peak_bytes(pid) - peak > 4 * MAX_CLIENT_MESSAGES
            async with http.ws_connect(f"{base}{sid_path}ws", headers={"Origin": base}) as sock:
                out["ws_again"] = not sock.closed
        async with aiohttp.ClientSession() as script:  # a script: Bearer header, no cookie
            out["bearer"] = (await script.get(f"{base}/healthz", headers={"Authorization": f"Bearer {KEY}"})).status
            manager = await script.post(f"{base}{sid_path}paraview/", headers={"Authorization": f"Bearer {KEY}",
                                                                             "Origin": base})
            out["manager"] = manager.status
        return out

    out = _in_thread(main())
    assert out == {"no_key": 401, "rebound": 403, "first": 303, "location": "/", "starter": (200, True), "favicon": 204,
                   "cross_site_start": 403, "start": 200, "processes": 1, "page": 200,
                   "foreign_ws": 403, "same_ws": True, "huge_frame_held": False, "ws_again": True,
                   "bearer": 200, "manager": 200}, out
    text = log.read_text()
    assert KEY not in text  # never logged, not even in the "open" line
    assert PATIENT.split("^")[0] not in text, "a file's name may be a patient's: never logged"
    assert "set_tool" not in text and "Traceback" not in text
    assert "refused GET / from" in text  # one line: method, path (no query), peer, reason


def test_announced_url_follows_the_scheme(caplog):
    from rfmweb.app.server import Content, announcer

    content = Content(volume=None, splats=[0, 0, 0])
    with caplog.at_level(logging.INFO, logger="rfmweb.app.server"):
        announcer(content, "127.0.0.1", None, False)(8080)
        announcer(content, "127.0.0.1", None, False, "https")(8443)
    assert "open http://127.0.0.1:8080/" in caplog.text and "open https://127.0.0.1:8443/" in caplog.text


def test_a_public_bind_announces_a_name_and_an_address_other_machines_reach(caplog, monkeypatch):
    """The short host name ("vm") does not resolve on a clinician's machine: the fully qualified name,
    and the address of the interface that leads out, are what to open."""
    import socket

    from rfmweb.app import server
    from rfmweb.app.server import Content, announcer

    monkeypatch.setattr(socket, "getfqdn", lambda *a: "vm.radiology.example.org")
    monkeypatch.setattr(server, "_machine_address", lambda: "10.1.2.3")
    with caplog.at_level(logging.INFO, logger="rfmweb.app.server"):
        announcer(Content(volume=None, splats=[0, 0, 0]), "0.0.0.0", KEY, False)(8713)
    assert "open http://vm.radiology.example.org:8713/ or http://10.1.2.3:8713/ (with the auth key" in caplog.text
    assert KEY not in caplog.text


def test_a_client_cannot_make_the_session_reserve_gigabytes():
    """wslink reserves a message's declared size on its first chunk (4 GB allowed after hello): bounded."""
    from wslink import chunking, protocol

    from rfmweb.app.server import MAX_CLIENT_MESSAGES, bound_client_messages

    bound_client_messages()
    unchunker = protocol.UnChunker()
    unchunker.set_max_message_size(4 * 1024 ** 3)         # what wslink does once a client said hello
    with pytest.raises(ValueError, match="exceeds the allocation limit"):
        unchunker.process_chunk(chunking._encode_header(1, 0, 10 ** 9) + b"x")   # one 12-byte header, 1 GB
    half = MAX_CLIENT_MESSAGES // 2 + 1
    unchunker.process_chunk(chunking._encode_header(2, 0, half) + b"x")
    with pytest.raises(ValueError, match="pending messages exceed"):
        unchunker.process_chunk(chunking._encode_header(3, 0, half) + b"x")
    assert unchunker.pending_messages == {}
    # ordinary messages still arrive whole, in chunks
    payload = msgpack.packb({"method": "trame.state.update", "args": [[{"key": "x", "value": 1}]]})
    *chunks, last = chunking.generate_chunks(payload, 16)
    assert all(unchunker.process_chunk(c) is None for c in chunks)
    assert unchunker.process_chunk(last)["args"][0][0]["value"] == 1


def test_a_huge_value_from_a_page_makes_a_short_log_line(caplog):
    """A 100,000-character preset name set from a page was logged whole, on every message."""
    from rfmweb.app.frames import guarded
    from rfmweb.errors import BRIEF_CHARS

    class Handler:
        synced = 0

        def sync_state(self):
            self.synced += 1

        @guarded
        def set_preset(self, name):
            raise InputError(f"unknown preset {name!r}")

    handler = Handler()
    with caplog.at_level(logging.WARNING):
        assert handler.set_preset("x" * 100_000) is None
    assert handler.synced == 1 and "ignored a bad request (set_preset)" in caplog.text
    assert len(caplog.records[-1].getMessage()) < BRIEF_CHARS + 100 and "(100,017 characters)" in caplog.text


def test_a_taken_port_is_said_before_the_volume_loads(tmp_path, capsys):
    """The volume was read first (seconds for a large study) and the error came after, with an asyncio
    complaint; now the port is tried first: the missing volume below is never reached."""
    import socket

    from rfmweb.cli import main

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as done:
            main(["serve", str(tmp_path / "not-read.nii.gz"), "--port", str(port)])
    assert done.value.code == 1
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "not-read" not in err, err
