"""The app's layout in a scene file: compare (the right view's renderer and preset), linked cameras,
difference, four views.

A scene file (:mod:`rfmweb.session.scene_file`) describes one view; the app writes its layout beside
it under ``"layout"`` and, loading a scene that has one, lays the page out again::

    "layout": {"compare": true, "right": {"renderer": "renderfm", "preset": "CT-Bone"},
               "linked": true, "difference": false, "four_up": false}

Other front ends ignore it. Every value is checked before anything changes; a renderer this machine
cannot run is logged and skipped, as a scene's own renderer is.
"""

from __future__ import annotations

from ..backend import marcher_renderer
from ..errors import InputError
from ..render.registry import all_renderer_names, renderer_names
from ..transfer import PRESETS
from ..volume import Volume
from .state import VIEW_B

_SWITCHES = ("compare", "linked", "difference", "four_up")


def layout_of(app) -> dict:
    """The layout of an :class:`~rfmweb.app.logic.AppController` (its ``typed.data``), as a scene saves it."""
    d = app.typed.data
    right = app.sessions[VIEW_B]
    return {"compare": bool(d.compare), "right": {"renderer": right.renderer_name, "preset": right.preset_name},
            "linked": bool(d.linked), "difference": bool(d.difference), "four_up": bool(d.four_up)}


def check_layout(layout) -> dict:
    """``layout`` (a scene's ``"layout"``), checked: InputError naming the bad field."""
    if not isinstance(layout, dict):
        raise InputError("scene layout must be a JSON object")
    unknown = set(layout) - {*_SWITCHES, "right"}
    if unknown:
        raise InputError(f"unknown scene layout fields {sorted(unknown)}")
    for key in _SWITCHES:
        if not isinstance(layout.get(key, False), bool):
            raise InputError(f"scene layout: {key!r} must be true or false, got {layout[key]!r}")
    right = layout.get("right", {})
    if not isinstance(right, dict) or set(right) - {"renderer", "preset"}:
        raise InputError("scene layout: 'right' must be {\"renderer\": ..., \"preset\": ...}")
    if right.get("renderer", "raymarch") not in all_renderer_names():
        raise InputError(f"scene layout: unknown renderer {right['renderer']!r}")
    if right.get("preset", "CT-Bone") not in PRESETS:
        raise InputError(f"scene layout: unknown preset {right['preset']!r}")
    return layout


def apply_layout(app, layout: dict) -> None:
    """Lay an :class:`~rfmweb.app.logic.AppController` out as ``layout`` (checked by :func:`check_layout`)."""
    right = layout.get("right", {})
    if "renderer" in right:
        app.set_renderer(VIEW_B, right["renderer"])   # guarded: a renderer missing here is logged, skipped
    if "preset" in right:
        app.set_preset(VIEW_B, right["preset"])
    compare = layout.get("compare", False)
    app.set_compare(compare)
    if compare:
        app.typed.data.linked = layout.get("linked", True)
        app.set_linked(layout.get("linked", True))
        app.set_difference(layout.get("difference", False))
    app.set_four_up(layout.get("four_up", False) and not compare)


def compare_choice(volume: Volume | None, renderer: str, preset: str) -> tuple[str, str]:
    """The compare view's first ``(renderer, preset)``, never the main view's pair: Render-FM for a
    CT when a checkpoint is there (the comparison it was made for), else VTK beside a ray-marcher
    (or the ray-marcher beside VTK), else the same renderer with the modality's next preset."""
    names = renderer_names()
    if volume is None:
        return renderer, preset
    if volume.modality == "CT" and "renderfm" in names and renderer != "renderfm":
        return "renderfm", preset
    if renderer != "vtk" and "vtk" in names:
        return "vtk", preset
    if renderer == "vtk":
        return marcher_renderer(), preset
    same = [p for p in PRESETS if p.startswith(volume.modality) and p != preset] or [p for p in PRESETS if p != preset]
    return renderer, same[0]
