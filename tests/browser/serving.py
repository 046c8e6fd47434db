"""Run a web server in a subprocess until it answers, then stop it: for browser tests and benchmarks.

    with served(cmd, url, log) as proc:
        ...   # the server of ``url`` answered /healthz with HTTP 200
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit


#: Logs of the servers running now; a failing browser test's report shows their ends (conftest.py).
RUNNING_LOGS: list[Path] = []


class ServerError(RuntimeError):
    """The server exited, or did not answer in time (the message carries its log)."""


def _log_text(log: Path | None) -> str:
    return log.read_text() if log is not None and log.exists() else ""


@contextlib.contextmanager
def served(cmd: list[str], url: str, log: Path | None = None, timeout_s: float = 90.0):
    """Start ``cmd`` (output to ``log``, or discarded), wait until the server of ``url`` answers
    ``/healthz`` with 200 (it needs no key and starts no viewer session), yield the process; on exit
    terminate it (kill after 30 s). Raises :class:`ServerError` with the log if it dies or does not
    answer within ``timeout_s``."""
    parts = urlsplit(url)
    health = f"{parts.scheme}://{parts.netloc}/healthz"
    out = log.open("w") if log is not None else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    if log is not None:
        RUNNING_LOGS.append(log)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise ServerError(f"server exited with {proc.returncode}:\n{_log_text(log)}")
            try:
                with urllib.request.urlopen(health, timeout=5) as resp:
                    if resp.status == 200:
                        break
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise ServerError(f"server did not answer within {timeout_s:.0f} s:\n{_log_text(log)}")
            time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if log is not None:
            out.close()
            RUNNING_LOGS.remove(log)
