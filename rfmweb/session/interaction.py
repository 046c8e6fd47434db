"""Mouse gestures -> camera changes, the same in every front end (3D Slicer's mapping).

- left drag: orbit; shift + left drag or middle drag: pan; ctrl + left drag or right drag: zoom
  (drag up zooms in); wheel: zoom.

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


def drag_action(button: str, *, shift: bool = False, ctrl: bool = False) -> str:
    """Which camera action a drag performs: ``"orbit"``, ``"pan"`` or ``"zoom"``."""
    if button not in BUTTONS:
        raise InputError(f"unknown mouse button {button!r}; expected one of {BUTTONS}")
    if button == "middle" or (button == "left" and shift):
        return "pan"
    if button == "right" or (button == "left" and ctrl):
        return "zoom"
    return "orbit"


def apply_drag(session: RenderSession, button: str, dx: float, dy: float, *, shift: bool = False,
               ctrl: bool = False, pixel_ratio: float = 1.0) -> str:
    """Apply a drag of ``(dx, dy)`` CSS pixels (y down) to the session's camera; returns the action.

    ``pixel_ratio`` is the device pixels per CSS pixel of the view (the session's image is in
    device pixels), so a pan keeps the scene under the pointer on HiDPI screens.
    """
    action = drag_action(button, shift=shift, ctrl=ctrl)
    if action == "orbit":
        session.orbit(dx, dy)
    elif action == "pan":
        session.pan(dx * pixel_ratio, dy * pixel_ratio)
    else:
        session.zoom(math.exp(dy * ZOOM_PER_PX))
    return action


def apply_wheel(session: RenderSession, delta_y: float) -> None:
    """Apply a wheel movement (browser ``deltaY``: positive scrolls down = zoom out)."""
    session.zoom(math.exp(max(-500.0, min(500.0, delta_y)) * ZOOM_PER_WHEEL))
