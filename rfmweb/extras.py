"""Which features need which optional packages, and what to install for them: the one place that knows.

The base install (``pip install rfmweb``; ``bash .ci/setup``) reads volumes, runs the ray-marchers,
the viewer and the widgets. The extras add:

- ``rfmweb[photoreal]``: Mitsuba 3, for the path tracer (``--renderer pathtrace``, the viewer's
  cinematic mode);
- ``rfmweb[gpu]``: gsplat and Triton, CUDA kernels whose torch twins run without them;
- ``rfmweb[dev]``: test tools (pytest, Playwright, Jupyter): nothing in the package needs them.

A feature that needs a package of the base install is listed too: a partial install (``pip install
--no-deps``, a package removed later) then says what to add instead of failing with a traceback.

Everything asks here, by feature name (:data:`FEATURES`):

- :func:`available`: are the feature's packages installed (found with ``importlib.util.find_spec``,
  nothing imported, cheap enough to call on every menu refresh)?
- :func:`require`: raise :class:`~rfmweb.errors.MissingDependency` whose message names the feature,
  the package and the ``pip install`` line;
- :func:`feature_status`: every feature's ``(available, hint)``, for UIs that show an unavailable
  feature disabled with the hint;
- :func:`note_fallback`: log once at INFO that a fast path runs on its twin, and what would enable it;
- :func:`missing_from`: the error for a :class:`ModuleNotFoundError` of a feature's package (the
  command line's last line of defence).

Example:
    >>> from rfmweb import extras
    >>> extras.FEATURES["pathtrace"].hint
    "the path-traced renderer needs Mitsuba 3: pip install 'rfmweb[photoreal]'"
    >>> extras.require("pathtrace")  # without Mitsuba: MissingDependency  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import shlex
from dataclasses import dataclass
from typing import NamedTuple

from .errors import MissingDependency

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Feature:
    """A feature and the packages it needs.

    Args:
        what: the feature, as the start of a sentence ("the path-traced renderer").
        package: the package(s) it needs, as people call them ("Mitsuba 3").
        modules: the top-level modules that must be importable (checked with ``find_spec``).
        install: the ``pip install`` arguments that provide them (an extra, or base packages).
        fallback: what runs instead when they are missing (``None``: the feature is refused).
    """

    what: str
    package: str
    modules: tuple[str, ...]
    install: tuple[str, ...]
    fallback: str | None = None

    @property
    def command(self) -> str:
        """The shell command that installs the packages: ``pip install 'rfmweb[photoreal]'``."""
        return "pip install " + " ".join(shlex.quote(a) for a in self.install)

    @property
    def hint(self) -> str:
        """One line: what needs what, and the command that installs it."""
        return f"{self.what} needs {self.package}: {self.command}"


#: Feature name -> :class:`Feature`. Renderer features are named after the renderer.
FEATURES: dict[str, Feature] = {
    "pathtrace": Feature("the path-traced renderer", "Mitsuba 3", ("mitsuba", "drjit"), ("rfmweb[photoreal]",)),
    "vtk": Feature("the VTK renderer", "VTK", ("vtkmodules",), ("vtk",)),
    "compiled": Feature("the compiled CPU ray-marcher", "numba", ("numba",), ("numba",)),
    "gsplat": Feature("the CUDA splat rasteriser", "gsplat", ("gsplat",), ("rfmweb[gpu]",),
                      fallback="its torch twin"),
    "triton": Feature("the fused GPU kernel path (ray-marcher forward, 6DGS slicing)", "Triton", ("triton",),
                      ("rfmweb[gpu]",), fallback="its torch twins"),
    "dicom": Feature("reading DICOM series", "pydicom and SimpleITK", ("pydicom", "SimpleITK"),
                     ("pydicom", "SimpleITK")),
    "dicom_seg": Feature("writing DICOM SEG", "highdicom", ("highdicom", "pydicom"), ("highdicom",)),
    "itk": Feature("reading and writing NRRD and MetaImage (.mha) files", "SimpleITK", ("SimpleITK",),
                   ("SimpleITK",)),
    "viewer": Feature("the browser viewer (rfmweb serve)", "trame", ("trame", "trame_server", "trame_rca",
                                                                      "trame_vuetify"),
                      ("trame", "trame-rca", "trame-vuetify")),
    "widgets": Feature("rfmweb.widgets (the Jupyter viewer)", "anywidget", ("anywidget", "traitlets"),
                       ("anywidget", "traitlets")),
    "mni": Feature("the MNI152 brain template (sample:brain_glioma, make-cohort)", "nilearn", ("nilearn",),
                   ("nilearn",)),
}


def _found(module: str) -> bool:
    # find_spec: None when absent or when sys.modules[module] is None (how tests hide a package)
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken package, or one without a __spec__
        return False


def available(feature: str) -> bool:
    """True when every package ``feature`` needs is installed (nothing is imported)."""
    return all(_found(m) for m in FEATURES[feature].modules)


def hint(feature: str) -> str:
    """What ``feature`` needs and how to install it, one line (also for an available feature)."""
    return FEATURES[feature].hint


def missing(feature: str) -> MissingDependency:
    """The error that says ``feature`` needs a package that is not installed (to raise)."""
    return MissingDependency(hint(feature), feature)


def require(feature: str) -> None:
    """Return when ``feature`` can be used here.

    Raises:
        MissingDependency: a package it needs is not installed; the message says what to install.
    """
    if not available(feature):
        raise missing(feature)


class FeatureStatus(NamedTuple):
    """Whether a feature can be used here, and the line to show beside it (a tooltip) when not."""

    available: bool
    hint: str


def feature_status() -> dict[str, FeatureStatus]:
    """Every feature of :data:`FEATURES` -> ``(available, hint)``, for UIs: show an unavailable feature
    disabled with ``hint`` rather than not at all. Checked afresh on each call (cheap)."""
    return {name: FeatureStatus(available(name), f.hint) for name, f in FEATURES.items()}


@functools.cache
def note_fallback(feature: str) -> None:
    """Log once at INFO that ``feature`` is replaced by its fallback here, and how to enable it.

    For features with a :attr:`Feature.fallback`; call it where the fallback is chosen for a reason
    the install would change (e.g. CUDA present, gsplat absent).
    """
    f = FEATURES[feature]
    log.info("%s not installed: %s is replaced by %s (%s)", f.package, f.what, f.fallback, f.command)


def missing_from(exc: ModuleNotFoundError) -> MissingDependency | None:
    """The :class:`~rfmweb.errors.MissingDependency` for ``exc`` when it is the absence of a package a
    feature needs (the first such feature), else ``None`` (an installed but broken package, a bug)."""
    top = (exc.name or "").split(".")[0]
    for name, f in FEATURES.items():
        if top in f.modules and not _found(top):
            return missing(name)
    return None
