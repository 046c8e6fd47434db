"""Reading and writing volumes: NIfTI (nibabel), NRRD/MetaImage (SimpleITK), DICOM series in and
DICOM SEG out (pydicom, SimpleITK, highdicom), BraTS-style case folders, label tables (BIDS, 3D Slicer,
ITK-SNAP), command-line names."""

from .atomic import atomic_write
from .brats import BRATS_CLASSES, BRATS_REGIONS, load_brats_case, save_brats_case
from .dicom import load_dicom
from .dicom_seg import save_segmentation
from .formats import load_volume
from .label_table import classes_from_table, read_label_table
from .nifti import save_array, save_volume
from .resolve import open_volume

__all__ = ["BRATS_CLASSES", "BRATS_REGIONS", "atomic_write", "classes_from_table", "load_brats_case", "load_dicom",
           "load_volume", "open_volume", "read_label_table", "save_array", "save_brats_case", "save_segmentation",
           "save_volume"]
