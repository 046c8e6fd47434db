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

from . import samples
from .camera import OrbitCamera
from .errors import InputError
from .io import load_brats_case, load_volume, save_volume
from .render import FULL, INTERACTIVE, Quality, RaymarchRenderer, Scene
from .session import FrameStream, RenderSession, encode_image, link_cameras
from .transfer import PRESETS, ClassTable, TransferFunction, preset
from .volume import LabelClass, Volume

__version__ = "0.1.0"

__all__ = [
    "FULL", "INTERACTIVE", "PRESETS", "ClassTable", "FrameStream", "InputError", "LabelClass", "OrbitCamera",
    "Quality", "RaymarchRenderer", "RenderSession", "Scene", "TransferFunction", "Volume", "encode_image",
    "link_cameras", "load_brats_case", "load_volume", "preset", "samples", "save_volume",
]
