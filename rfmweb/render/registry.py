"""Renderer names used everywhere (CLI ``--renderer``, sessions, UI) -> renderer classes.

Later renderers (``splats``, ``renderfm``, ``pathtrace``) register here with :func:`register`. Every
renderer is registered, whatever this machine has; one that needs something the machine may lack says
so when it registers:

- ``feature``: a feature of :mod:`rfmweb.extras` (an optional package: Mitsuba for ``pathtrace``,
  VTK for ``vtk``); without it, asking for the renderer raises
  :class:`~rfmweb.errors.MissingDependency`, whose message says what to install;
- ``missing``: any other check (Render-FM: a checkpoint); asking for it raises an
  :class:`~rfmweb.errors.InputError` with the check's reason;
- ``unsuited``: whether it can draw a given volume (Render-FM: CT only).

:func:`all_renderer_names` lists every renderer (the CLI's choices: a missing package is then an
explained error, not "invalid choice"); :func:`renderer_names` those that can run here now;
:func:`renderer_status` each one's reason not to (UIs show those disabled, with the reason).
"""

from __future__ import annotations

from typing import Callable

import torch

from .. import extras
from ..errors import InputError
from .scene import Renderer

_FACTORIES: dict[str, Callable[[], Renderer]] = {}
_LABELS: dict[str, str] = {}
_FEATURES: dict[str, str] = {}
_MISSING: dict[str, Callable[[], str | None]] = {}
_NOTES: dict[str, Callable[[], str | None]] = {}
_UNSUITED: dict[str, Callable[[object], str | None]] = {}


def register(name: str, factory: Callable[[], Renderer], label: str, *, feature: str | None = None,
             missing: Callable[[], str | None] | None = None, note: Callable[[], str | None] | None = None,
             unsuited: Callable[[object], str | None] | None = None) -> None:
    """Make a renderer known under ``name`` (``label`` is shown in UIs).

    ``feature``: the :data:`rfmweb.extras.FEATURES` entry whose packages the renderer needs.
    ``missing``: called whenever renderers are listed; returns why the renderer cannot run here now,
    or ``None``. It must be cheap (e.g. a file check).
    ``note``: like ``missing``, a cheap check; returns a few words UIs add to the label here (e.g. that
    the renderer is slow on this machine), or ``None``.
    ``unsuited``: called with a :class:`~rfmweb.volume.Volume`; returns why the renderer cannot draw
    it, or ``None``.
    """
    _FACTORIES[name] = factory
    _LABELS[name] = label
    if feature is not None:
        _FEATURES[name] = feature
    if missing is not None:
        _MISSING[name] = missing
    if note is not None:
        _NOTES[name] = note
    if unsuited is not None:
        _UNSUITED[name] = unsuited


def _why_missing(name: str) -> str | None:
    feature = _FEATURES.get(name)
    if feature is not None and not extras.available(feature):
        return extras.hint(feature)
    check = _MISSING.get(name)
    return None if check is None else check()


def all_renderer_names() -> list[str]:
    """Every registered renderer (in registration order), whether or not it can run here."""
    return list(_FACTORIES)


def renderer_names() -> list[str]:
    """The renderers that can run here now (in registration order)."""
    return [n for n in _FACTORIES if _why_missing(n) is None]


def renderer_status(volume=None) -> dict[str, str | None]:
    """Every renderer -> ``None`` when it can run here now (and draw ``volume``, a
    :class:`~rfmweb.volume.Volume`, when given), else why not (one line that says what to install or
    provide): a UI lists them all and shows the unavailable ones disabled, with the reason."""
    return {n: _why_missing(n) or renderer_unsuited(n, volume) for n in _FACTORIES}


def renderer_unsuited(name: str, volume) -> str | None:
    """Why renderer ``name`` cannot draw ``volume`` (``None``: it can, or no volume was given)."""
    check = _UNSUITED.get(name)
    return None if check is None or volume is None else check(volume)


def check_renderer(name: str) -> str:
    """``name`` when it is a renderer that can run here.

    Raises:
        MissingDependency: the renderer needs a package that is not installed (says what to install).
        InputError: an unknown name, or another reason the renderer cannot run here.
    """
    if name not in _FACTORIES:
        raise InputError(f"unknown renderer {name!r}; choose one of {', '.join(all_renderer_names())}")
    if name in _FEATURES:
        extras.require(_FEATURES[name])
    why = _why_missing(name)
    if why is not None:
        raise InputError(f"renderer {name!r} is not available here: {why}")
    return name


def renderer_label(name: str, *, note: bool = False) -> str:
    """The name UIs show for renderer ``name``; with ``note`` (a menu), its note for this machine, if any."""
    text = _NOTES[name]() if note and name in _NOTES else None
    return _LABELS[name] if text is None else f"{_LABELS[name]} · {text}"


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


def _raymarch_note() -> str | None:
    """On a CPU the torch marcher takes seconds per full frame; the compiled one (same images) is the default."""
    from ..backend import default_device
    return "slow on a CPU" if default_device().type != "cuda" else None


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


def _renderfm_unsuited(volume) -> str | None:
    from ..renderfm.inputs import unsuited
    return unsuited(volume)


register("raymarch", _raymarch, "Ray-marcher (torch)", note=_raymarch_note)
register("compiled", _compiled, "Ray-marcher (compiled CPU)", feature="compiled")
register("vtk", _vtk, "VTK ray caster", feature="vtk")
register("splats", _splats, "6D Gaussian splats")
# Render-FM: offered while a checkpoint is there (shipped, or $RFMWEB_RENDERFM_CHECKPOINT)
register("renderfm", _renderfm, "Render-FM (feed-forward splats)", missing=_renderfm_missing,
         unsuited=_renderfm_unsuited)

# the path tracer registers itself (needing the "pathtrace" feature: Mitsuba 3, imported on first render)
from . import pathtrace  # noqa: E402,F401
