"""Neural networks: the Neumours INR tumour segmenter (:mod:`rfmweb.models.inr`) and the reusable
nnU-Net-style 3-D U-Net (:mod:`rfmweb.models.unet`)."""

from .inr import (CLASS_NAMES, INRConfig, NeumoursINR, brain_mask, count_parameters, extract_patches,
                  fourier_features, gather_patches, normalise_modalities, voxel_to_unit)
from .unet import UNet3D, UNetConfig, unet_parameter_count

__all__ = ["CLASS_NAMES", "INRConfig", "NeumoursINR", "brain_mask", "count_parameters", "extract_patches",
           "fourier_features", "gather_patches", "normalise_modalities", "voxel_to_unit", "UNet3D", "UNetConfig",
           "unet_parameter_count"]
