"""Transfer functions: intensity -> colour and opacity (with Slicer presets), and per-class styles."""

from .classes import ClassStyle, ClassTable
from .function import Shading, TransferFunction
from .paraview import load_paraview_json, save_paraview_json, tf_from_paraview, tf_to_paraview
from .presets import DEFAULT_PRESET, PRESETS, preset, preset_for, preset_unsuited

__all__ = ["DEFAULT_PRESET", "PRESETS", "ClassStyle", "ClassTable", "Shading", "TransferFunction",
           "load_paraview_json", "preset", "preset_for", "preset_unsuited", "save_paraview_json", "tf_from_paraview",
           "tf_to_paraview"]
