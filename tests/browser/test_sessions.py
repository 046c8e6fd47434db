"""One viewer session per tab (the launcher), ``--max-sessions``, and ``--shared``, in Debian's chromium.

Two servers for the module, the CLI in subprocesses on the 4x-downsampled head CT with an auth key
(the browser opens ``/?secret=KEY`` once: 303 to ``/`` with a cookie, then 303 to ``/s/<id>/``):

- the default (a session process per tab, ``--max-sessions 2``, ``--reconnect-s 12``): a preset
  changed in tab A stays out of tab B; a third tab gets the "all sessions in use" page; a closed
  tab's process exits; a page whose connection dropped reconnects by itself, or says its session ended;
- ``--shared``: tabs follow the first one (the driver); a follower's change is put back.

Each tab is its own browser context (its own cookies), as two people would be.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

import numpy as np
import pytest
from PIL import Image

from conftest import free_port, screenshot_array  # tests/browser/conftest.py (not a package)
from roundtrip import frame_info, wait_frame, wait_idle, wait_quiet
from serving import ServerError, served

KEY = "browser-sessions-key"
RECONNECT_S = 12
VIEWPORT = {"width": 900, "height": 600}
TIMEOUT_MS = 60_000
PRESET = "AppState__view_a__ViewState__preset"


def _server(small_ct, tmp_path_factory, *extra: str):
    from rfmweb.io import save_volume
    folder = tmp_path_factory.mktemp("sessions")
    save_volume(small_ct, folder / "ct.nii.gz", folder / "labels.nii.gz")
    port = free_port()
    log = folder / "server.log"
    cmd = [sys.executable, "-m", "rfmweb", "serve", str(folder / "ct.nii.gz"), "--labels", str(folder / "labels.nii.gz"),
           "--port", str(port), "--auth-key", KEY, "--renderer", "vtk", "--preset", "CT-Bone", *extra]
    return cmd, f"http://127.0.0.1:{port}/?secret={KEY}", log


def _serving(small_ct, tmp_path_factory, *args):
    """Yield ``(url, log)`` of a running server with ``args``; after it stops, its log must hold no
    traceback and never the key."""
    cmd, url, log = _server(small_ct, tmp_path_factory, *args)
    try:
        with served(cmd, url, log, timeout_s=90):
            yield url, log
    except ServerError as exc:
        pytest.fail(str(exc))
    text = log.read_text()
    assert "Traceback" not in text and KEY not in text, text


@pytest.fixture(scope="module")
def per_tab(small_ct, tmp_path_factory):
    yield from _serving(small_ct, tmp_path_factory, "--max-sessions", "2", "--reconnect-s", str(RECONNECT_S))


@pytest.fixture(scope="module")
def shared(small_ct, tmp_path_factory):
    yield from _serving(small_ct, tmp_path_factory, "--shared")


def _tab(browser, url: str, **device):
    """A new browser context (``device``: more of its options, e.g. a touch screen) and page showing
    its first frame."""
    context = browser.new_context(viewport=VIEWPORT, **device)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    wait_frame(page, _view(page))
    return context, page


def _view(page):
    return page.locator('img[data-rfm-view="view_a"]')


def _preset(page) -> str:
    return page.evaluate(f"() => window.trame.state.get('{PRESET}')")


def _set_preset(page, name: str) -> None:
    page.evaluate(f"() => window.trame.state.set('{PRESET}', '{name}')")


def _wait_log(log, pattern: str, timeout_s: float = 30.0) -> re.Match:
    deadline = time.monotonic() + timeout_s
    while True:
        match = re.search(pattern, log.read_text())
        if match or time.monotonic() > deadline:
            assert match, f"{pattern!r} not in the server log:\n{log.read_text()}"
            return match
        time.sleep(0.2)


def test_a_pinch_on_a_tablet_zooms_and_never_moves_the_cursor(browser, per_tab, artifacts):
    """Two fingers spread over the 3-D view (the first lands a moment before the second): the view
    zooms in. It did nothing, and the cursor jumped to where a finger was (vtk.js's first finger is a
    left button, released when the second lands: a click)."""
    url, _ = per_tab
    context, page = _tab(browser, url, has_touch=True, is_mobile=True)
    try:
        view = _view(page)
        before = wait_quiet(page, view, timeout_ms=TIMEOUT_MS)
        shown = (screenshot_array(view).max(axis=2) > 30).mean()
        cdp = context.new_cdp_session(page)

        def touch(kind: str, points) -> None:
            cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [
                {"x": x, "y": y, "id": i} for i, (x, y) in enumerate(points)]})
        box = view.bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        touch("touchStart", [(x - 30, y)])
        page.wait_for_timeout(30)
        touch("touchStart", [(x - 30, y), (x + 30, y)])
        for k in range(1, 11):
            touch("touchMove", [(x - 30 - 4 * k, y), (x + 30 + 4 * k, y)])
            page.wait_for_timeout(30)
        touch("touchEnd", [(x - 70, y)])
        touch("touchEnd", [])
        wait_idle(page, view, after=before, changed=True, timeout_ms=TIMEOUT_MS)
        wait_quiet(page, view, timeout_ms=TIMEOUT_MS)
        img = screenshot_array(view)
        Image.fromarray(img).save(artifacts / "sessions_pinched.png")
        assert (img.max(axis=2) > 30).mean() > 1.3 * shown          # spread 60 -> 140 px: zoomed in
        assert not page.evaluate("() => window.trame.state.get('AppState__cursor')")
        # one finger dragged down an axial view steps to lower slices (a swipe panned it)
        page.evaluate("() => window.trame.state.set('AppState__view_mode', 'axial')")
        index = "() => window.trame.state.get('AppState__slice_index')"
        # the server's answer (a slice view's window in HU), then its axial frames: the swipe is a slice's
        page.wait_for_function("() => window.trame.state.get('AppState__window_text').includes('HU')")
        wait_quiet(page, view, timeout_ms=TIMEOUT_MS)
        start = page.evaluate(index)
        touch("touchStart", [(x, y - 40)])
        for k in range(1, 11):
            touch("touchMove", [(x, y - 40 + 8 * k)])
            page.wait_for_timeout(30)
        touch("touchEnd", [])
        page.wait_for_function(f"() => window.trame.state.get('AppState__slice_index') <= {start - 8}")
        assert not page.evaluate("() => window.trame.state.get('AppState__cursor')")
        # fingers get controls of ~44 px (Vuetify's compact ones are 28)
        switch = page.locator(".v-navigation-drawer .v-selection-control__input").first
        assert switch.evaluate("(e) => getComputedStyle(e).height") == "44px"
    finally:
        context.close()


def test_a_dropped_connection_reconnects_by_itself_and_an_ended_session_says_so(browser, per_tab, artifacts):
    """Wi-Fi dropped (the page's websocket closed): the page reconnected to nothing and a "Reload"
    5 s later found a new session, the view and annotations gone. Now the page reloads by itself as
    soon as the server answers, into the same session; away longer than --reconnect-s, it says the
    session has ended."""
    url, log = per_tab
    ctx, a = _tab(browser, url)
    drop = "() => window.trame.client.getConnection().getSession().close()"
    try:
        _set_preset(a, "CT-Muscle")
        a.wait_for_function(f"() => window.trame.state.get('{PRESET}') === 'CT-Muscle'")
        where = a.url
        with a.expect_event("load", timeout=30_000):       # the page reloads itself
            a.evaluate(drop)
        wait_frame(a, _view(a))
        assert a.url == where and _preset(a) == "CT-Muscle" and a.locator(".rfm-lost").count() == 0
        tag = re.search(r"/s/([0-9a-f]{6})", where).group(1)
        ctx.set_offline(True)                                # away for longer than the session waits
        a.evaluate(drop)
        _wait_log(log, rf"session {tag} ended \(its tab closed\)", timeout_s=RECONNECT_S + 30)
        ctx.set_offline(False)
        lost = a.locator(".rfm-lost")
        a.wait_for_function("() => document.querySelector('.rfm-lost')?.innerText.includes('has ended')")
        assert f"more than {RECONNECT_S} s" in lost.inner_text() and a.url == where
        a.screenshot(path=str(artifacts / "sessions_ended.png"))
    finally:
        ctx.close()


def test_tabs_have_their_own_state_and_the_limit_holds(browser, per_tab, artifacts):
    url, log = per_tab
    (ctx_a, a), (ctx_b, b) = _tab(browser, url), _tab(browser, url)
    try:
        assert "?secret" not in a.url and re.search(r"/s/[0-9a-f]{32}/", a.url), a.url  # the key left the URL
        assert a.url != b.url  # two sessions
        assert a.locator(".rfm-shared").count() == 0  # no "shared view" notice: each tab is its own viewer
        b_before = wait_quiet(b, _view(b))   # converged: any later frame comes from a change
        a_before = wait_idle(a, _view(a))
        _set_preset(a, "CT-Muscle")
        wait_idle(a, _view(a), after=a_before, changed=True)
        b.wait_for_timeout(1000)  # a shared state would have reached B by now
        assert _preset(a) == "CT-Muscle" and _preset(b) == "CT-Bone"
        # the state B shows is B's own: its frames may still refine (a loaded machine) but never show A's change
        assert frame_info(_view(b))["version"] == b_before["version"], "tab B got a frame from tab A's change"
        a.screenshot(path=str(artifacts / "sessions_tab_a.png"))
        b.screenshot(path=str(artifacts / "sessions_tab_b.png"))

        # a third tab: both sessions are taken
        ctx_c = browser.new_context(viewport=VIEWPORT)
        try:
            c = ctx_c.new_page()
            assert c.goto(url).status == 200                     # the page whose script asks for a session
            c.locator(".rfm-busy").wait_for(timeout=60_000)       # ... and shows the server's 503 page
            assert "All viewer sessions are in use" in c.content() and "at most 2" in c.content()
            assert f"frees its place {RECONNECT_S} s after it closed" in c.locator(".rfm-busy").inner_text()
        finally:
            ctx_c.close()

        # closing tab B ends its session: its process exits
        tag = re.search(r"/s/([0-9a-f]{6})", b.url).group(1)
        pid = int(_wait_log(log, rf"session {tag} started \(pid (\d+)").group(1))
        assert os.path.exists(f"/proc/{pid}")
    finally:
        ctx_b.close()
    _wait_log(log, rf"session {tag} ended \(its tab closed\)")
    assert not os.path.exists(f"/proc/{pid}"), "the closed tab's session process is still there"
    ctx_d, d = _tab(browser, url)  # the freed place can be taken again
    ctx_d.close()
    ctx_a.close()


def _same_frame_shots(a, b, tries: int = 5):
    """Screenshots of the presenter's and the follower's view showing the same frame id.

    The view at rest is refined frame by frame, so a newer frame may land between reading the id and
    the screenshot: the pair counts only if both tabs still show that id after both shots.
    """
    for _ in range(tries):
        a_id = _view(a).evaluate("el => el.dataset.frameId")
        b.wait_for_function("(id) => document.querySelector('img[data-rfm-view=\"view_a\"]').dataset.frameId === id",
                            arg=a_id)
        shots = screenshot_array(_view(a)), screenshot_array(_view(b))
        if {_view(a).evaluate("el => el.dataset.frameId"), _view(b).evaluate("el => el.dataset.frameId")} == {a_id}:
            return shots
        wait_quiet(a, _view(a))
    raise AssertionError(f"the presenter's view kept changing during {tries} screenshot pairs")


def test_shared_tabs_follow_the_first_one(browser, shared):
    url, _ = shared
    (ctx_a, a), (ctx_b, b) = _tab(browser, url), _tab(browser, url)
    try:
        assert a.url == b.url  # one server for everyone
        b_before = wait_idle(b, _view(b))
        _set_preset(a, "CT-Muscle")  # the driver (first tab)
        b.wait_for_function(f"() => window.trame.state.get('{PRESET}') === 'CT-Muscle'")
        wait_idle(b, _view(b), after=b_before, changed=True)  # and B was sent the new picture
        _set_preset(b, "CT-Bone")  # a follower cannot change it: its select goes back
        b.wait_for_function(f"() => window.trame.state.get('{PRESET}') === 'CT-Muscle'")
        a.wait_for_timeout(500)
        assert _preset(a) == "CT-Muscle"
        # presenter and follower see the same frame (the same published image, pixel for pixel)
        wait_quiet(a, _view(a))
        shot_a, shot_b = _same_frame_shots(a, b)
        np.testing.assert_array_equal(shot_a, shot_b)
        # a follower may download the presenter's scene file (it changes nothing)
        scene = json.loads(b.evaluate("() => window.trame.trigger('rfm_scene')"))
        assert scene["preset"] == "CT-Muscle"
    finally:
        ctx_b.close()
        ctx_a.close()


def test_a_session_opened_in_a_second_tab_takes_it_over_and_the_first_says_so(browser, per_tab, artifacts):
    """A duplicated tab or a pasted /s/<id>/ link joined the same session: two pages drove one state,
    each seeing the other's changes. The newer page takes the viewer over; the older one says so."""
    url, log = per_tab
    (ctx_a, a), (ctx_b, b) = _tab(browser, url), _tab(browser, url)
    try:
        b.goto(a.url)                                   # B's context holds the key's cookie
        wait_frame(b, _view(b))
        lost = a.locator(".rfm-lost")
        lost.wait_for(state="visible")
        assert "opened in another tab" in lost.inner_text()
        a.screenshot(path=str(artifacts / "sessions_taken_over.png"))
        tag = re.search(r"/s/([0-9a-f]{6})", a.url).group(1)
        _wait_log(log, rf"session {tag}: opened in another tab")
        before = wait_idle(b, _view(b))
        _set_preset(b, "CT-Muscle")                     # the session works on in the newer tab
        wait_idle(b, _view(b), after=before, changed=True)
        assert b.locator(".rfm-lost").count() == 0
    finally:
        ctx_a.close()
        ctx_b.close()


def test_the_key_typed_into_the_form_signs_in_and_a_driver_cannot_rewrite_the_other_tabs(browser, shared):
    """Without ?secret= (kept in the browser's history) the page asks for the key in a form; typed in,
    the viewer opens. With --shared, the driving tab setting trame's own state (the page's markup, its
    title) reached every tab: a page may set only the app's state."""
    url, log = shared
    base = url.split("?")[0]
    ctx_a, a = _tab(browser, url)
    context = browser.new_context(viewport=VIEWPORT)
    try:
        b = context.new_page()
        b.set_default_timeout(TIMEOUT_MS)
        assert b.goto(base).status == 401 and b.locator('input[name="secret"]').is_visible()
        b.fill('input[name="secret"]', KEY)
        b.click("text=Open")
        wait_frame(b, _view(b))
        assert "secret" not in b.url
        title = b.title()
        a.evaluate("() => { window.trame.state.set('trame__title', 'PWNED'); "
                   "window.trame.state.set('trame__template_main', '<div class=\"pwned\">PWNED</div>'); }")
        _wait_log(log, r"ignored a page's change of \d state key\(s\) it may not set: 'trame__")
        b.wait_for_timeout(1000)
        assert b.title() == title and b.locator(".pwned").count() == 0
        assert _view(b).is_visible()
    finally:
        context.close()
        ctx_a.close()
