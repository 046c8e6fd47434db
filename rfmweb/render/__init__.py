"""Renderers: the torch ray-marcher (``raymarch``) and VTK (``vtk``), behind one interface."""

from .dvr import RaymarchRenderer
from .fields import ChannelMix, ChannelSetting, ScalarField
from .raymarch import MarchResult, march, ray_aabb
from .scene import FULL, INTERACTIVE, MOVING, REFERENCE, Quality, Renderer, Scene

__all__ = ["FULL", "INTERACTIVE", "MOVING", "REFERENCE", "ChannelMix", "ChannelSetting", "MarchResult", "Quality",
           "RaymarchRenderer", "Renderer", "ScalarField", "Scene", "march", "ray_aabb"]
