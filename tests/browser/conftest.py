"""Browser fixtures: Debian's chromium driven by Playwright (no browser download)."""

from __future__ import annotations

import io
import shutil
import socket

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright
    if not shutil.which("chromium") and not __import__("os").path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is not installed (apt-get install chromium); .ci/setup installs it")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing browser test's report ends with the last lines of each running server's log."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        from serving import RUNNING_LOGS
        for log in RUNNING_LOGS:
            if log.exists():
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-60:])
                report.sections.append((f"server log {log.parent.name}/{log.name} (last 60 lines)", tail))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def screenshot_array(locator) -> np.ndarray:
    """``[H, W, 3]`` uint8 pixels of an element's screenshot."""
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(locator.screenshot())).convert("RGB"))


def is_blank(img: np.ndarray) -> bool:
    """A frame with (almost) no structure: tiny spread of grey levels."""
    return float(img.std()) < 3.0
