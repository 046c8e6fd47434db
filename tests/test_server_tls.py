"""``rfmweb serve --certfile F --keyfile F``: HTTPS on the public side, through the launcher.

A self-signed certificate for 127.0.0.1 and localhost is made with the ``openssl`` command (the
tests that need one are skipped without it). The end-to-end test runs the CLI on port 0 and checks
the https:// URL it announces, the Secure HttpOnly key cookie, a session page and its websocket
(wss, https Origin) through the launcher, and that plain HTTP on the TLS port gets nothing.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import ssl
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from rfmweb.errors import InputError

KEY = "tls-test-key_for-rfmweb"


def _in_thread(coro):
    """``asyncio.run(coro)`` on a thread of its own (the test process may run a loop already)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    """``(certfile, keyfile)``: a self-signed certificate for 127.0.0.1 and localhost, valid 2 days."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed (needed to make a test certificate)")
    folder = tmp_path_factory.mktemp("tls")
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    done = subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(keyfile),
                           "-out", str(certfile), "-days", "2", "-subj", "/CN=localhost",
                           "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"openssl could not make a test certificate: {done.stderr.strip()[-200:]}")
    return certfile, keyfile


def _trusting(certfile) -> ssl.SSLContext:
    """A client context that trusts only the test certificate."""
    return ssl.create_default_context(cafile=str(certfile))


def test_tls_context_names_the_bad_file(tmp_path, cert):
    from rfmweb.app.security import tls_context

    certfile, keyfile = cert
    context = tls_context(certfile, keyfile)
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(InputError, match=rf"^{re.escape(str(garbage))}: not a PEM certificate"):
        tls_context(garbage, keyfile)
    with pytest.raises(InputError, match=rf"^{re.escape(str(garbage))}: not a PEM private key"):
        tls_context(certfile, garbage)
    with pytest.raises(InputError, match=rf"^{re.escape(str(tmp_path / 'missing.pem'))}: cannot read"):
        tls_context(tmp_path / "missing.pem", keyfile)


def test_cli_wants_both_files_and_a_readable_certificate(tmp_path, capsys):
    from rfmweb.cli import main

    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    cases = [(["--certfile", str(bad)], "--certfile and --keyfile together"),
             (["--keyfile", str(bad)], "--certfile and --keyfile together"),
             (["--certfile", str(bad), "--keyfile", str(bad)], f"{bad}: not a PEM certificate"),
             (["--certfile", str(tmp_path / "none.pem"), "--keyfile", str(bad)], f"{tmp_path / 'none.pem'}: cannot read")]
    for extra, message in cases:
        with pytest.raises(SystemExit) as exit_:
            main(["serve", "--port", "0", *extra])
        assert exit_.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("rfmweb: error: ") and message in err and "\n" not in err, err


@pytest.fixture(scope="module")
def tls_served(small_ct, cert, tmp_path_factory):
    """``(base URL, certfile, log)`` of ``rfmweb serve --certfile --keyfile --port 0`` (auth key in a file)."""
    from rfmweb.io import save_volume

    certfile, keyfile = cert
    folder = tmp_path_factory.mktemp("tls_serve")
    save_volume(small_ct, folder / "ct.nii.gz")
    (folder / "key").write_text(KEY)
    log = folder / "server.log"
    proc = subprocess.Popen([sys.executable, "-m", "rfmweb", "serve", str(folder / "ct.nii.gz"), "--port", "0",
                             "--auth-key-file", str(folder / "key"), "--renderer", "vtk", "--max-sessions", "1",
                             "--certfile", str(certfile), "--keyfile", str(keyfile)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while (match := re.search(r"open (\S+://127\.0\.0\.1:\d+)/", log.read_text())) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"server did not start:\n{log.read_text()}")
        time.sleep(0.2)
    yield match.group(1), certfile, log
    proc.terminate()
    proc.wait(timeout=30)


def test_https_server_sets_a_secure_cookie_and_proxies_wss(tls_served):
    import aiohttp
    import msgpack
    from wslink.chunking import UnChunker, generate_chunks

    base, certfile, log = tls_served
    assert base.startswith("https://"), base   # the announced URL
    trust = _trusting(certfile)

    async def main():
        out = {}
        jar = aiohttp.CookieJar(unsafe=True)  # unsafe: keep cookies of IP hosts
        async with aiohttp.ClientSession(cookie_jar=jar, connector=aiohttp.TCPConnector(ssl=trust)) as http:
            first = await http.get(f"{base}/?secret={KEY}", allow_redirects=False)
            out["first"] = first.status
            out["cookie"] = first.headers.get("Set-Cookie", "")
            starter = await http.get(f"{base}/", allow_redirects=False)   # the page that starts a session
            start = await http.post(f"{base}/start", headers={"Origin": base})   # its script: the cookie starts one
            out["start"], sid_path = (starter.status, start.status), (await start.json())["location"]
            page = await http.get(f"{base}{sid_path}")
            out["page"] = (page.status, "<html" in await page.text())
            wss = base.replace("https://", "wss://")
            try:
                async with http.ws_connect(f"{wss}{sid_path}ws", headers={"Origin": "https://evil.example"}):
                    out["foreign_ws"] = 101
            except aiohttp.WSServerHandshakeError as err:
                out["foreign_ws"] = err.status
            async with http.ws_connect(f"{wss}{sid_path}ws", headers={"Origin": base}) as sock:
                hello = {"wslink": "1.0", "id": "system:c0:0", "method": "wslink.hello",
                         "args": [{"secret": "wslink-secret"}], "kwargs": {}}
                await sock.send_bytes(next(generate_chunks(msgpack.packb(hello), 0)))
                reply = UnChunker().process_chunk((await asyncio.wait_for(sock.receive(), 30)).data)
                out["hello"] = "clientID" in (reply.get("result") or {})
        try:   # plain HTTP on the TLS port: no answer
            async with aiohttp.ClientSession() as plain:
                out["plain"] = (await plain.get(base.replace("https://", "http://") + "/healthz")).status
        except aiohttp.ClientError as err:
            out["plain"] = type(err).__name__
        return out

    out = _in_thread(main())
    cookie = out.pop("cookie")
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie, cookie
    assert isinstance(out.pop("plain"), str), "plain HTTP was answered on the TLS port"
    assert out == {"first": 303, "start": (200, 200), "page": (200, True), "foreign_ws": 403, "hello": True}, out
    text = log.read_text()
    assert KEY not in text and "Traceback" not in text, text
