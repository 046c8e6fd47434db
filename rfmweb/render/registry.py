"""Renderer names used everywhere (CLI ``--renderer``, sessions, UI) -> renderer classes.

Later renderers (``splats``, ``renderfm``, ``pathtrace``) register here with :func:`register`.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..errors import InputError
from .scene import Renderer

_FACTORIES: dict[str, Callable[[], Renderer]] = {}
_LABELS: dict[str, str] = {}


def register(name: str, factory: Callable[[], Renderer], label: str) -> None:
    """Make a renderer available under ``name`` (``label`` is shown in UIs)."""
    _FACTORIES[name] = factory
    _LABELS[name] = label


def renderer_names() -> list[str]:
    return list(_FACTORIES)


def renderer_label(name: str) -> str:
    return _LABELS[name]


def make_renderer(name: str) -> Renderer:
    """A new renderer instance called ``name``."""
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise InputError(f"unknown renderer {name!r}; choose one of {', '.join(_FACTORIES)}") from None
    return factory()


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


register("raymarch", _raymarch, "Ray-marcher (torch)")
register("compiled", _compiled, "Ray-marcher (compiled CPU)")
register("vtk", _vtk, "VTK (fast CPU)")
register("splats", _splats, "6D Gaussian splats")

# the path tracer registers itself only when Mitsuba 3 can be found (without importing it)
from . import pathtrace  # noqa: E402,F401
