"""Mouse gestures -> view changes, the same in every front end (3D Slicer's mapping).

3-D view: left drag: orbit; shift + left drag or middle drag: pan; ctrl + left drag or right drag:
zoom (drag up zooms in); wheel: zoom.

Slice views: ctrl + left drag or right drag: window/level (right widens the window, down raises the
level); any other drag pans; wheel: steps slices (down: lower index; one a notch, one per
:data:`WHEEL_NOTCH` of a trackpad's smooth scrolling: :class:`WheelSteps`); ctrl + wheel (a trackpad
pinch too): zoom about the pointer.

Keys, on a focused view (both front ends send them; :func:`key_gesture`): arrows orbit the 3-D
view (:data:`KEY_ORBIT_PX` of left drag each) or step slices (up/down); PageUp/PageDown zoom in 3-D
and step slices on a slice view; + and - zoom; Home resets the camera.

Front ends merge pointer events (sum the deltas of events that arrive within ~20 ms) and call
:func:`apply_drag` / :func:`apply_wheel` once per merged event.
"""

from __future__ import annotations

import math

from ..errors import InputError
from .session import RenderSession

BUTTONS = ("left", "middle", "right")

#: Zoom per pixel of vertical drag, and per unit of wheel delta (a notch is ~100 units).
ZOOM_PER_PX = 0.005
ZOOM_PER_WHEEL = 0.0015


#: Keys a focused view answers (``KeyboardEvent.key``), and the drag one arrow press stands for, px.
KEYS = ("ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "PageUp", "PageDown", "+", "=", "-", "Home")
KEY_ORBIT_PX = 20.0
#: The wheel delta one zoom key press stands for (a notch).
KEY_WHEEL = 100.0
#: Wheel delta of one slice step: a mouse notch (100 in Chrome, 120 with some drivers; 53 in older
#: Chrome on Linux). A wheel event of at least half of it is a notch and steps once per notch; smaller
#: ones (a trackpad's smooth scrolling) add up to a step per notch.
WHEEL_NOTCH = 100.0


def key_gesture(key: str, mode: str) -> tuple[str, tuple] | None:
    """The gesture key ``key`` makes on a view in ``mode`` (``"3d"`` or a slice plane):
    ``("drag", (dx, dy))``, ``("wheel", (dy, ctrl))``, ``("reset", ())``, or ``None`` (nothing)."""
    if key == "Home":
        return "reset", ()
    if key in ("+", "=", "-"):
        return "wheel", (KEY_WHEEL if key == "-" else -KEY_WHEEL, True)   # ctrl: a slice view zooms
    if mode == "3d":
        arrows = {"ArrowLeft": (-1, 0), "ArrowRight": (1, 0), "ArrowUp": (0, -1), "ArrowDown": (0, 1)}
        if key in arrows:
            return "drag", tuple(KEY_ORBIT_PX * v for v in arrows[key])
        return ("wheel", ((-KEY_WHEEL if key == "PageUp" else KEY_WHEEL), False)) if key.startswith("Page") else None
    steps = {"ArrowUp": -KEY_WHEEL, "PageUp": -KEY_WHEEL, "ArrowDown": KEY_WHEEL, "PageDown": KEY_WHEEL}
    return ("wheel", (steps[key], False)) if key in steps else None


def drag_action(button: str, *, shift: bool = False, ctrl: bool = False) -> str:
    """Which camera action a drag performs: ``"orbit"``, ``"pan"`` or ``"zoom"``."""
    if button not in BUTTONS:
        raise InputError(f"unknown mouse button {button!r}; expected one of {BUTTONS}")
    if button == "middle" or (button == "left" and shift):
        return "pan"
    if button == "right" or (button == "left" and ctrl):
        return "zoom"
    return "orbit"


def slice_drag_action(button: str, *, shift: bool = False, ctrl: bool = False) -> str:
    """Which slice-view action a drag performs: ``"window"`` (window/level) or ``"pan"``."""
    if button not in BUTTONS:
        raise InputError(f"unknown mouse button {button!r}; expected one of {BUTTONS}")
    return "window" if button == "right" or (button == "left" and ctrl and not shift) else "pan"


def apply_drag(session: RenderSession, button: str, dx: float, dy: float, *, shift: bool = False,
               ctrl: bool = False, pixel_ratio: float = 1.0) -> str:
    """Apply a drag of ``(dx, dy)`` CSS pixels (y down) to the session; returns the action
    (``orbit``/``pan``/``zoom`` in 3-D, ``window``/``pan`` on a slice).

    ``pixel_ratio`` is the device pixels per CSS pixel of the view (the session's image is in
    device pixels), so a pan keeps the scene under the pointer on HiDPI screens.
    """
    if session.mode != "3d":
        action = slice_drag_action(button, shift=shift, ctrl=ctrl)
        if action == "window":
            session.drag_window(dx, dy)
        else:
            session.pan_slice(dx * pixel_ratio, dy * pixel_ratio)
        return action
    action = drag_action(button, shift=shift, ctrl=ctrl)
    if action == "orbit":
        session.orbit(dx, dy)
    elif action == "pan":
        session.pan(dx * pixel_ratio, dy * pixel_ratio)
    else:
        session.zoom(math.exp(dy * ZOOM_PER_PX))
    return action


class WheelSteps:
    """Slice steps of a view's wheel (:data:`WHEEL_NOTCH`): a notch steps once whatever its delta (a
    3-notch event three times); small deltas add up, so a gentle trackpad flick (20 px) steps none,
    not one per event; reversing direction starts the sum again."""

    def __init__(self) -> None:
        self._sum = 0.0

    def steps(self, delta_y: float) -> int:
        """Slices to step for a wheel ``delta_y`` (browser ``deltaY``, pixels; positive: down = lower
        index, so the steps are negative)."""
        if abs(delta_y) >= WHEEL_NOTCH / 2:
            self._sum = 0.0
            return -int(math.copysign(max(1, round(abs(delta_y) / WHEEL_NOTCH)), delta_y))
        if self._sum * delta_y < 0:
            self._sum = 0.0
        self._sum += delta_y
        n = int(self._sum / WHEEL_NOTCH)
        self._sum -= n * WHEEL_NOTCH
        return -n


def apply_wheel(session: RenderSession, delta_y: float, *, ctrl: bool = False, steps: int | None = None,
                about: tuple[float, float] | None = None) -> None:
    """Apply a wheel movement (browser ``deltaY``: positive scrolls down = zoom out / lower slices).

    ``steps``: slices a slice view steps (:meth:`WheelSteps.steps`; default one, by the sign);
    ``about``: the pointer (device pixels, y down) a ctrl + wheel on a slice view zooms about."""
    factor = math.exp(max(-500.0, min(500.0, delta_y)) * ZOOM_PER_WHEEL)
    if session.mode == "3d":
        session.zoom(factor)
    elif ctrl:
        session.zoom_slice(1.0 / factor, about=about)
    elif delta_y:
        session.step_slice((-1 if delta_y > 0 else 1) if steps is None else steps)
