"""Renderer names used everywhere (CLI ``--renderer``, sessions, UI) -> renderer classes.

Later renderers (``splats``, ``renderfm``, ``pathtrace``) register here with :func:`register`. A
renderer that needs something this machine may lack (Render-FM: a checkpoint) registers with a
``missing`` check: it is listed only while the check passes, and asking for it otherwise raises an
:class:`~rfmweb.errors.InputError` with the check's reason.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..errors import InputError
from .scene import Renderer

_FACTORIES: dict[str, Callable[[], Renderer]] = {}
_LABELS: dict[str, str] = {}
_MISSING: dict[str, Callable[[], str | None]] = {}


def register(name: str, factory: Callable[[], Renderer], label: str, *,
             missing: Callable[[], str | None] | None = None) -> None:
    """Make a renderer available under ``name`` (``label`` is shown in UIs).

    ``missing``: called whenever renderers are listed; returns why the renderer cannot run here now
    (then it is not listed), or ``None``. It must be cheap (e.g. a file check).
    """
    _FACTORIES[name] = factory
    _LABELS[name] = label
    if missing is not None:
        _MISSING[name] = missing


def _why_missing(name: str) -> str | None:
    check = _MISSING.get(name)
    return None if check is None else check()


def renderer_names() -> list[str]:
    """The renderers that can run here now (in registration order)."""
    return [n for n in _FACTORIES if _why_missing(n) is None]


def check_renderer(name: str) -> str:
    """``name`` when it is a renderer that can run here; else an :class:`InputError` that says why."""
    if name not in _FACTORIES:
        raise InputError(f"unknown renderer {name!r}; choose one of {', '.join(renderer_names())}")
    why = _why_missing(name)
    if why is not None:
        raise InputError(f"renderer {name!r} is not available here: {why}")
    return name


def renderer_label(name: str) -> str:
    return _LABELS[name]


def make_renderer(name: str) -> Renderer:
    """A new renderer instance called ``name`` (:func:`check_renderer` first)."""
    return _FACTORIES[check_renderer(name)]()


def default_renderer_name() -> str:
    """The interactive renderer for this machine (:func:`rfmweb.backend.volume_renderer`)."""
    from ..backend import volume_renderer
    return volume_renderer()


def _raymarch():
    from .dvr import RaymarchRenderer
    return RaymarchRenderer()


def _compiled():
    from .compiled import CompiledRaymarchRenderer
    return CompiledRaymarchRenderer()


def _vtk():
    from .vtk_volume import VtkRenderer
    return VtkRenderer(threads=max(1, torch.get_num_threads()))


def _splats():
    from .splat_renderer import SplatRenderer
    return SplatRenderer()


def _renderfm():
    from .renderfm_renderer import RenderFMRenderer
    return RenderFMRenderer()


def _renderfm_missing() -> str | None:
    from .renderfm_renderer import checkpoint_missing
    return checkpoint_missing()


register("raymarch", _raymarch, "Ray-marcher (torch)")
register("compiled", _compiled, "Ray-marcher (compiled CPU)")
register("vtk", _vtk, "VTK (fast CPU)")
register("splats", _splats, "6D Gaussian splats")
# Render-FM: offered while a checkpoint is there (shipped, or $RFMWEB_RENDERFM_CHECKPOINT)
register("renderfm", _renderfm, "Render-FM (feed-forward splats)", missing=_renderfm_missing)

# the path tracer registers itself only when Mitsuba 3 can be found (without importing it)
from . import pathtrace  # noqa: E402,F401
