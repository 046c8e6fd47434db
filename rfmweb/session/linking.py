"""Linked views: several sessions (a compare layout) share one camera, or one slice position."""

from __future__ import annotations

from typing import Callable

from ..errors import InputError
from .session import RenderSession


def _sessions(args: tuple) -> list[RenderSession]:
    """The sessions given as ``f([a, b])`` or ``f(a, b)``; an InputError for anything else."""
    sessions = list(args[0]) if len(args) == 1 and isinstance(args[0], (list, tuple)) else list(args)
    wrong = [type(s).__name__ for s in sessions if not isinstance(s, RenderSession)]
    if wrong:
        raise InputError(f"links join RenderSessions, got {', '.join(wrong)}")
    return sessions


def _link(sessions: list[RenderSession], what: str,
          copy: Callable[[RenderSession, RenderSession], None]) -> Callable[[], None]:
    """On every ``what`` change of one session, ``copy(source, other)`` to each other one; the first
    session is copied now. Returns the unlink function."""
    guard = {"busy": False}

    def follow(source: RenderSession, changed: str) -> None:
        if changed != what or guard["busy"]:
            return
        guard["busy"] = True
        try:
            for other in sessions:
                if other is not source:
                    copy(source, other)
        finally:
            guard["busy"] = False

    unsubscribes = [s.subscribe(follow) for s in sessions]
    if sessions:
        follow(sessions[0], what)
    return lambda: [u() for u in unsubscribes]


def link_cameras(*sessions: RenderSession | list[RenderSession]) -> Callable[[], None]:
    """Keep the cameras of ``sessions`` (a list, or the sessions themselves) equal: each view keeps its
    own image size and shows across its narrower side what the others show across theirs
    (:meth:`~rfmweb.camera.OrbitCamera.in_viewport`).

    The first session's camera is copied to the others now; afterwards a camera change in any of
    them is copied to the rest. Returns a function that unlinks them.
    """
    def copy(source: RenderSession, other: RenderSession) -> None:
        other.set_camera(source.camera.in_viewport(other.camera.width, other.camera.height))
    return _link(_sessions(sessions), "camera", copy)


def link_view_modes(*sessions: RenderSession | list[RenderSession]) -> Callable[[], None]:
    """Keep the view mode, slice index and overlay opacity of ``sessions`` equal (a compare layout's
    slice views). Sessions must show volumes of the same grid. Like :func:`link_cameras`: the first
    session's mode is copied now, later changes in any are copied to the rest. Returns the unlink
    function.
    """
    def copy(source: RenderSession, other: RenderSession) -> None:
        other.set_view_mode(source.mode, source.slice_index if source.mode != "3d" else None)
        if other.overlay != source.overlay:
            other.set_overlay(source.overlay)
    return _link(_sessions(sessions), "slice", copy)


def link_points(*sessions: RenderSession | list[RenderSession]) -> Callable[[], None]:
    """Share the crosshair cursor, the annotations and the ruler of ``sessions`` (views of volumes on
    one grid, or at least one world frame): a click in one view moves every view's cursor, and so its
    slices, there; a ruler drawn in one shows in all (and a difference pane sees it in both). Like
    :func:`link_cameras`: the first session's points are copied now. Returns the unlink function."""
    def ruler(source: RenderSession, other: RenderSession) -> None:
        if source.ruler is None:
            other.measure(None)
        else:
            other.measure(source.ruler.start, source.ruler.end)

    sessions = _sessions(sessions)
    unlinks = [_link(sessions, "cursor", lambda source, other: other.set_cursor(source.cursor)),
               _link(sessions, "annotations", lambda source, other: other.set_annotations(source.annotations)),
               _link(sessions, "ruler", ruler)]

    def unlink() -> None:
        for u in unlinks:
            u()
    return unlink
