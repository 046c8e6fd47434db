"""Neural networks: the Neumours INR tumour segmenter (:mod:`rfmweb.models.inr`)."""

from .inr import (CLASS_NAMES, INRConfig, NeumoursINR, brain_mask, count_parameters, extract_patches,
                  fourier_features, gather_patches, normalise_modalities, voxel_to_unit)

__all__ = ["CLASS_NAMES", "INRConfig", "NeumoursINR", "brain_mask", "count_parameters", "extract_patches",
           "fourier_features", "gather_patches", "normalise_modalities", "voxel_to_unit"]
