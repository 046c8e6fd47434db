"""Linked cameras: several sessions (a compare layout) share one camera."""

from __future__ import annotations

from typing import Callable

from .session import RenderSession


def link_cameras(sessions: list[RenderSession]) -> Callable[[], None]:
    """Keep the cameras of ``sessions`` equal (each view keeps its own image size).

    The first session's camera is copied to the others now; afterwards a camera change in any of
    them is copied to the rest. Returns a function that unlinks them.
    """
    guard = {"busy": False}

    def follow(source: RenderSession, what: str) -> None:
        if what != "camera" or guard["busy"]:
            return
        guard["busy"] = True
        try:
            for other in sessions:
                if other is not source:
                    other.set_camera(source.camera.resized(other.camera.width, other.camera.height))
        finally:
            guard["busy"] = False

    unsubscribes = [s.subscribe(follow) for s in sessions]
    if sessions:
        follow(sessions[0], "camera")
    return lambda: [u() for u in unsubscribes]
