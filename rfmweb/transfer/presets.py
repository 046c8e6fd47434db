"""Volume-rendering presets with 3D Slicer's names and meaning.

The numbers are transcribed from 3D Slicer's ``Modules/Loadable/VolumeRendering/Resources/presets.xml``
(Slicer/Slicer, 3D Slicer Contribution and Software License Agreement, a BSD-style licence;
portions obtained under licence from The Brigham and Women's Hospital, Inc.). CT presets are in
Hounsfield units; MR presets are in the scanner units of Slicer's sample data and are stretched to
a volume's intensity range by :func:`preset_for`. ``MR-Glass`` is rfmweb's own (a see-through
brain for segmentations), defined on the blended MR range [0, 1].
"""

from __future__ import annotations

from ..errors import InputError
from ..volume import Volume
from .function import Shading, TransferFunction

_LIT = Shading(True, 0.1, 0.9, 0.2, 10.0)          # Slicer's usual CT lighting
_MATTE = Shading(True, 0.2, 1.0, 0.0, 1.0)

PRESETS: dict[str, TransferFunction] = {tf.name: tf for tf in (
    TransferFunction(
        "CT-Bone",
        color=[(-3024, 0, 0, 0), (-16.4458, 0.729412, 0.254902, 0.301961),
               (641.385, 0.905882, 0.815686, 0.552941), (3071, 1, 1, 1)],
        opacity=[(-3024, 0), (-16.4458, 0), (641.385, 0.715686), (3071, 0.705882)],
        shading=_LIT),
    TransferFunction(
        "CT-Soft-Tissue",
        color=[(-2048, 0, 0, 0), (-167.01, 0, 0, 0), (-160, 0.0556356, 0.0556356, 0.0556356), (240, 1, 1, 1),
               (3661, 1, 1, 1)],
        opacity=[(-2048, 0), (-167.01, 0), (-160, 1), (240, 1), (3661, 1)],
        shading=Shading(False, 0.2, 1.0, 0.0, 1.0)),
    TransferFunction(
        "CT-Muscle",
        color=[(-3024, 0, 0, 0), (-155.407, 0.54902, 0.25098, 0.14902), (217.641, 0.882353, 0.603922, 0.290196),
               (419.736, 1, 0.937033, 0.954531), (3071, 0.827451, 0.658824, 1)],
        opacity=[(-3024, 0), (-155.407, 0), (217.641, 0.676471), (419.736, 0.833333), (3071, 0.803922)],
        shading=_LIT),
    TransferFunction(
        "CT-AAA",
        color=[(-3024, 0, 0, 0), (143.556, 0.615686, 0.356863, 0.184314), (166.222, 0.882353, 0.603922, 0.290196),
               (214.389, 1, 1, 1), (419.736, 1, 0.937033, 0.954531), (3071, 0.827451, 0.658824, 1)],
        opacity=[(-3024, 0), (143.556, 0), (166.222, 0.686275), (214.389, 0.696078), (419.736, 0.833333),
                 (3071, 0.803922)],
        shading=_LIT),
    TransferFunction(
        "CT-Lung",
        color=[(-1000, 0.3, 0.3, 1), (-600, 0, 0, 1), (-530, 0.134704, 0.781726, 0.0724558),
               (-460, 0.929244, 1, 0.109473), (-400, 0.888889, 0.254949, 0.0240258), (2952, 1, 0.3, 0.3)],
        opacity=[(-1000, 0), (-600, 0), (-599, 0.15), (-400, 0.15), (-399, 0), (2952, 0)],
        shading=_MATTE),
    TransferFunction(
        "CT-Cardiac",
        color=[(-3024, 0, 0, 0), (-77.6875, 0.54902, 0.25098, 0.14902), (94.9518, 0.882353, 0.603922, 0.290196),
               (179.052, 1, 0.937033, 0.954531), (260.439, 0.615686, 0, 0), (3071, 0.827451, 0.658824, 1)],
        opacity=[(-3024, 0), (-77.6875, 0), (94.9518, 0.285714), (179.052, 0.553571), (260.439, 0.848214),
                 (3071, 0.875)],
        shading=_LIT),
    TransferFunction(
        "CT-Chest-Contrast-Enhanced",
        color=[(-3024, 0, 0, 0), (67.0106, 0.54902, 0.25098, 0.14902), (251.105, 0.882353, 0.603922, 0.290196),
               (439.291, 1, 0.937033, 0.954531), (3071, 0.827451, 0.658824, 1)],
        opacity=[(-3024, 0), (67.0106, 0), (251.105, 0.446429), (439.291, 0.625), (3071, 0.616071)],
        shading=_LIT),
    TransferFunction(
        "MR-Default",
        color=[(0, 0, 0, 0), (20, 0.168627, 0, 0), (40, 0.403922, 0.145098, 0.0784314),
               (120, 0.780392, 0.607843, 0.380392), (220, 0.847059, 0.835294, 0.788235), (1024, 1, 1, 1)],
        opacity=[(0, 0), (20, 0), (40, 0.15), (120, 0.3), (220, 0.375), (1024, 0.5)],
        shading=_MATTE),
    TransferFunction(
        "MR-T2-Brain",
        color=[(0, 0, 0, 0), (98.7223, 0.956863, 0.839216, 0.192157), (412.406, 0, 0.592157, 0.807843),
               (641, 1, 1, 1)],
        opacity=[(0, 0), (36.05, 0), (218.302, 0.171429), (412.406, 1), (641, 1)],
        shading=Shading(True, 0.3, 0.6, 0.5, 40.0)),
    TransferFunction(
        "MR-Angio",
        color=[(-2048, 0, 0, 0), (151.354, 0, 0, 0), (158.279, 0.74902, 0.376471, 0),
               (190.112, 1, 0.866667, 0.733333), (200.873, 0.937255, 0.937255, 0.937255), (3661, 1, 1, 1)],
        opacity=[(-2048, 0), (151.354, 0), (158.279, 0.4375), (190.112, 0.580357), (200.873, 0.732143),
                 (3661, 0.741071)],
        shading=_MATTE),
)}

#: rfmweb's own presets (not Slicer's): a see-through MR brain for showing segmentations inside it.
PRESETS["MR-Glass"] = TransferFunction(
    "MR-Glass",
    color=[(0.0, 0, 0, 0), (0.15, 0.35, 0.35, 0.4), (0.6, 0.8, 0.8, 0.85), (1.0, 1, 1, 1)],
    opacity=[(0.0, 0), (0.08, 0), (0.3, 0.004), (1.0, 0.01)],
    shading=Shading(True, 0.35, 0.65, 0.25, 20.0))

#: Default preset per modality.
DEFAULT_PRESET = {"CT": "CT-Bone", "MR": "MR-Default"}

#: Slicer's MR presets, set in the raw intensities of its samples (MRHead; an MR angiogram for
#: MR-Angio): preset_for stretches them onto the [0, 1] blend rfmweb renders MR through. Unstretched,
#: MR-Angio's threshold (~150) lay above the whole blend and drew a black frame.
_STRETCHED = ("MR-Default", "MR-T2-Brain", "MR-Angio")


def preset(name: str) -> TransferFunction:
    """The preset called ``name`` (exact Slicer name, e.g. ``"CT-Bone"``): its points are in HU for
    the CT presets and in blended units [0, 1] for the MR ones; opacity is per ``unit_distance`` mm."""
    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


def preset_unsuited(name: str, volume: Volume | None) -> str | None:
    """Why preset ``name`` does not fit ``volume``'s modality (``None``: it does, or no volume): CT
    presets are set in Hounsfield units, MR ones on the MR channels' [0, 1] blend."""
    kind = name.split("-", 1)[0]
    if volume is None or kind not in DEFAULT_PRESET or kind == volume.modality:
        return None
    return f"for {kind}; this volume is {volume.modality}"


def preset_for(name: str, volume: Volume) -> TransferFunction:
    """A preset adapted to ``volume``: CT presets stay in HU; for MR, whose channels are blended and
    windowed into [0, 1] before the TF (see :class:`rfmweb.render.ChannelMix`), the MR presets are
    stretched from their design range onto [0, 1]."""
    tf = preset(name)
    if volume.modality == "MR" and name in _STRETCHED:
        return tf.rescaled(0.0, 1.0)
    return tf
