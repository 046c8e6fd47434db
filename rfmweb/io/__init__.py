"""Reading and writing volumes: NIfTI (nibabel), BraTS-style case folders, command-line names."""

from .atomic import atomic_write
from .brats import BRATS_CLASSES, BRATS_REGIONS, load_brats_case, save_brats_case
from .nifti import load_volume, save_array, save_volume
from .resolve import open_volume

__all__ = ["BRATS_CLASSES", "BRATS_REGIONS", "atomic_write", "load_brats_case", "load_volume", "open_volume",
           "save_array", "save_brats_case", "save_volume"]
