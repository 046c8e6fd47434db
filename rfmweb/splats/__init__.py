"""6D Gaussian splats (6DGS): the model, view-direction slicing, rasterisation, files.

- :class:`Splats6D` (:mod:`.model`): parameters, covariance, prune, ``.npz`` save/load.
- :func:`slice_6d` (:mod:`.slicing`): 6D -> per-view 3D Gaussians + SH colour.
- :func:`rasterize` (:mod:`.rasterize`): 3D Gaussians -> images; backends gsplat (CUDA), the torch
  twin (differentiable) and a numba kernel (fast CPU forward), chosen by :func:`rfmweb.backend.choose_rasterizer`.
- :func:`render_splats` (:mod:`.pipeline`): slice + rasterise for OrbitCameras.
- :func:`export_ply` / :func:`import_ply` (:mod:`.ply`): standard 3DGS ``.ply`` files.
"""

from .model import Splats6D
from .pipeline import camera_tensors, render_splats
from .ply import export_ply, import_ply, read_ply, write_ply
from .rasterize import rasterize
from .slicing import LAMBDA_OPA, ConditionalParts, SlicedGaussians, conditional_parts, eval_sh_deg1, slice_6d

__all__ = [
    "LAMBDA_OPA", "ConditionalParts", "SlicedGaussians", "Splats6D", "camera_tensors",
    "conditional_parts", "eval_sh_deg1", "export_ply", "import_ply", "rasterize", "read_ply", "render_splats",
    "slice_6d", "write_ply",
]
