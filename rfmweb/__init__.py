"""rfmweb: neural volume rendering of CT and MRI, streamed to a browser viewer.

The curated public API::

    import rfmweb
    vol = rfmweb.load_volume("ct.nii.gz", "labels.nii.gz")     # or rfmweb.samples.load("ct_phantom")
    session = rfmweb.RenderSession(vol, preset="CT-Bone")
    png = rfmweb.encode_image(session.render(), "png")

    from rfmweb.widgets import Viewer                         # in Jupyter
    Viewer(vol)

Submodules: :mod:`rfmweb.io` (NIfTI, NRRD, MHA, DICOM series and SEG, BraTS), :mod:`rfmweb.samples`
(built-in data), :mod:`rfmweb.transfer` (transfer functions, presets, class styles),
:mod:`rfmweb.render` (the renderers: ray-marchers, VTK, splats, Render-FM's, path tracer),
:mod:`rfmweb.splats` (6D Gaussian splats: slicing, fitting, PLY), :mod:`rfmweb.renderfm` (Render-FM:
the CT -> 6D Gaussians network, its data and training), :mod:`rfmweb.inr` with :mod:`rfmweb.models`
(Neumours, the INR segmenter, and the CNN baseline), :mod:`rfmweb.session` (state -> frames),
``rfmweb.widgets`` (Jupyter) and ``rfmweb.app`` (trame web app).
"""

import importlib

#: The public names and the modules that define them, imported on first use: ``rfmweb --help`` and
#: ``import rfmweb.errors`` do not pay for torch (seconds).
_LAZY = {
    "samples": ".samples", "OrbitCamera": ".camera", "InputError": ".errors",
    "load_brats_case": ".io", "load_volume": ".io", "save_volume": ".io",
    "FULL": ".render", "INTERACTIVE": ".render", "Quality": ".render", "RaymarchRenderer": ".render",
    "Scene": ".render", "FrameStream": ".session", "RenderSession": ".session", "encode_image": ".session",
    "link_cameras": ".session", "PRESETS": ".transfer", "ClassTable": ".transfer",
    "TransferFunction": ".transfer", "preset": ".transfer", "LabelClass": ".volume", "Volume": ".volume",
}


#: Subpackages reachable as attributes after a plain ``import rfmweb`` (``rfmweb.io.open_volume``).
_SUBMODULES = ("camera", "errors", "inr", "io", "metrics", "models", "render", "renderfm", "session", "splats",
               "transfer", "volume")


def __getattr__(name: str):
    if name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
        globals()[name] = value
        return value
    if name not in _LAZY:
        raise AttributeError(f"module 'rfmweb' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name], __name__)
    value = module if name == "samples" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBMODULES})


__version__ = "0.1.0"

__all__ = sorted(_LAZY)
