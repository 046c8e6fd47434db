"""Optional packages (:mod:`rfmweb.extras`): every feature that needs one says what to install.

A missing package is simulated the way Python itself refuses an import: ``sys.modules[name] = None``
(``find_spec`` then answers ``None`` and ``import name`` raises ``ModuleNotFoundError``).
"""

from __future__ import annotations

import logging
import sys

import pytest

from rfmweb import extras
from rfmweb.cli import main
from rfmweb.errors import InputError, MissingDependency
from rfmweb.render.registry import all_renderer_names, check_renderer, renderer_names, renderer_status

#: Features whose packages this project's dev venv (``bash .ci/setup dev``) installs.
DEV_FEATURES = ("pathtrace", "vtk", "compiled", "dicom", "dicom_seg", "itk", "viewer", "widgets", "mni")
PATHTRACE_HINT = "the path-traced renderer needs Mitsuba 3: pip install 'rfmweb[photoreal]'"


def hide(monkeypatch, *modules: str) -> None:
    """Make ``modules`` look uninstalled for the rest of the test."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def one_line_error(capsys, hint: str) -> None:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines == [f"rfmweb: error: {hint}"], err
    assert "Traceback" not in err


@pytest.mark.parametrize("feature", DEV_FEATURES)
def test_installed_features_are_available(feature):
    assert extras.available(feature)
    extras.require(feature)
    assert extras.feature_status()[feature] == (True, extras.hint(feature))


def test_every_feature_names_its_install_command():
    for name, feature in extras.FEATURES.items():
        assert feature.hint.startswith(f"{feature.what} needs {feature.package}: pip install "), name
        assert feature.modules and feature.install, name
    assert extras.hint("pathtrace") == PATHTRACE_HINT
    assert extras.FEATURES["gsplat"].command == "pip install 'rfmweb[gpu]'"


def test_require_names_the_feature_and_the_install(monkeypatch):
    hide(monkeypatch, "mitsuba")
    assert not extras.available("pathtrace")
    with pytest.raises(MissingDependency, match=r"pip install 'rfmweb\[photoreal\]'") as info:
        extras.require("pathtrace")
    assert isinstance(info.value, InputError) and info.value.feature == "pathtrace"
    assert extras.feature_status()["pathtrace"] == (False, PATHTRACE_HINT)


def test_registry_lists_every_renderer_and_says_why_one_cannot_run(monkeypatch):
    hide(monkeypatch, "mitsuba", "vtkmodules")
    assert {"raymarch", "compiled", "vtk", "splats", "renderfm", "pathtrace"} <= set(all_renderer_names())
    assert "pathtrace" not in renderer_names() and "vtk" not in renderer_names()
    status = renderer_status()
    assert status["pathtrace"] == PATHTRACE_HINT and status["vtk"] == extras.hint("vtk")
    assert status["raymarch"] is None
    with pytest.raises(MissingDependency, match="needs VTK"):
        check_renderer("vtk")


def test_path_tracer_refuses_without_mitsuba(monkeypatch):
    from rfmweb.render.pathtrace import PathTracer

    hide(monkeypatch, "mitsuba")
    with pytest.raises(MissingDependency, match=r"rfmweb\[photoreal\]"):
        PathTracer()


@pytest.mark.parametrize("command, hidden, feature", [
    (["render", "sample:ct_phantom", "--renderer", "pathtrace"], "mitsuba", "pathtrace"),
    (["render", "sample:ct_phantom", "--renderer", "vtk"], "vtkmodules", "vtk"),
    (["render", "sample:ct_phantom", "--renderer", "compiled"], "numba", "compiled"),
    (["views", "sample:ct_phantom", "--renderer", "pathtrace"], "mitsuba", "pathtrace"),
    (["views", "sample:ct_phantom", "--renderer", "vtk"], "vtkmodules", "vtk"),
])
def test_cli_renderer_without_its_package_exits_2_with_the_hint(monkeypatch, capsys, tmp_path, command, hidden,
                                                                feature):
    hide(monkeypatch, hidden)
    out = tmp_path / ("frame.png" if command[0] == "render" else "views")
    assert main([*command, "--out", str(out)]) == 2
    one_line_error(capsys, extras.hint(feature))
    assert not out.exists()


def test_serve_renderer_without_its_package_exits_2_with_the_hint(monkeypatch, capsys):
    hide(monkeypatch, "mitsuba")
    with pytest.raises(SystemExit) as info:
        main(["serve", "--renderer", "pathtrace"])
    assert info.value.code == 2
    one_line_error(capsys, PATHTRACE_HINT)


def test_make_cohort_without_nilearn_exits_2_with_the_hint(monkeypatch, capsys, tmp_path):
    hide(monkeypatch, "nilearn")
    assert main(["make-cohort", "--out", str(tmp_path / "cohort"), "--n", "1"]) == 2
    one_line_error(capsys, extras.hint("mni"))
    assert not (tmp_path / "cohort").exists()


def test_a_missing_import_met_on_the_way_is_explained(monkeypatch, capsys, tmp_path):
    """The command line's last line of defence: a feature's package imported without asking first."""
    import functools

    from rfmweb.samples import glioma

    hide(monkeypatch, "nilearn")
    # an empty cache of the MNI maps (another test may have read them already)
    monkeypatch.setattr(glioma, "tissue_maps", functools.lru_cache(maxsize=4)(glioma.tissue_maps.__wrapped__))
    assert main(["render", "sample:brain_glioma", "--out", str(tmp_path / "brain.png")]) == 2
    one_line_error(capsys, extras.hint("mni"))


def test_saving_a_dicom_seg_without_highdicom_says_what_to_install(monkeypatch, tmp_path):
    """From Python (the app's and the widget's "save"), not only from the CLI: a bare ModuleNotFoundError."""
    import numpy as np

    from rfmweb.io import save_segmentation
    from rfmweb.samples import load

    volume = load("ct_phantom")
    hide(monkeypatch, "highdicom")
    with pytest.raises(MissingDependency, match="highdicom"):
        save_segmentation(np.zeros(volume.shape, np.uint8), volume, tmp_path / "seg.dcm")
    assert not (tmp_path / "seg.dcm").exists()


def test_missing_from_leaves_other_import_errors_alone(monkeypatch):
    assert extras.missing_from(ModuleNotFoundError("no module", name="not_a_feature_package")) is None
    # installed but failing to import (a broken build): not a missing package, the traceback stays
    assert extras.missing_from(ModuleNotFoundError("broken", name="vtkmodules.vtkRenderingOpenGL2")) is None
    hide(monkeypatch, "highdicom")
    error = extras.missing_from(ModuleNotFoundError("halted", name="highdicom"))
    assert error is not None and error.feature == "dicom_seg"


def test_a_gpu_fallback_is_logged_once(caplog):
    extras.note_fallback.cache_clear()
    with caplog.at_level(logging.INFO, logger="rfmweb.extras"):
        extras.note_fallback("gsplat")
        extras.note_fallback("gsplat")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["gsplat not installed: the CUDA splat rasteriser is replaced by its torch twin "
                     "(pip install 'rfmweb[gpu]')"]
    extras.note_fallback.cache_clear()


def test_the_viewers_show_a_missing_renderer_disabled_with_the_install_hint(monkeypatch, small_ct):
    """Without Mitsuba the app and the widget still list the path tracer and the cinematic switch,
    disabled, saying what to install (instead of leaving them out)."""
    from trame.app import get_server

    from rfmweb.app.server import build_app
    from rfmweb.widgets import Viewer

    hide(monkeypatch, "mitsuba")
    server = get_server("rfmweb-extras-ui-test", client_type="vue3")
    _, app = build_app(small_ct, server=server, renderer="vtk")
    widget = Viewer(small_ct, renderer="vtk", width=32, height=32)
    try:
        d = app.typed.data
        (tracer,) = [c for c in d.renderers if c.value == "pathtrace"]
        assert tracer.disabled and "rfmweb[photoreal]" in tracer.subtitle
        assert not [c for c in d.renderers if c.value == "vtk"][0].disabled
        assert not d.can_cinematic and "Mitsuba" in d.cinematic_hint
        (option,) = [r for r in widget.renderer_options if r["name"] == "pathtrace"]
        assert option["disabled"] and "rfmweb[photoreal]" in option["hint"]
    finally:
        app.close()
        widget.close()
