"""Render-FM: a feed-forward CT -> 6D Gaussian splats model (arXiv 2505.17338; DESIGN.md).

- :mod:`.inputs`: the input builder (6 channels on a working grid);
- :mod:`.decoder`: 37 channels -> residuals on the Anatomy-Guided-Priming base -> :class:`~rfmweb.splats.Splats6D`;
- :mod:`.model`: the U-Net + decoder, one-pass (or exactly patched) prediction, checkpoints;
- :mod:`.anatomy`, :mod:`.styles`, :mod:`.data`: generated training scans, styles, ground-truth views;
- :mod:`.train`: ``rfmweb train-renderfm`` (DDP, resumable); :mod:`.evaluate`: ``rfmweb evaluate-renderfm``.

Example::

    >>> from rfmweb.io import load_volume                                       # doctest: +SKIP
    >>> from rfmweb.render import Scene                                         # doctest: +SKIP
    >>> from rfmweb.renderfm import load_model, predict                          # doctest: +SKIP
    >>> from rfmweb.transfer import preset                                      # doctest: +SKIP
    >>> volume = load_volume("ct.nii.gz", "labels.nii.gz")                       # doctest: +SKIP
    >>> pred = predict(load_model(), Scene(volume, preset("CT-Bone")))          # doctest: +SKIP
    >>> pred.splats.save("splats.npz"); pred.timings["prepare_s"]              # doctest: +SKIP
"""

from .inputs import RenderFMInput, build_inputs
from .model import Prediction, RenderFM, RenderFMConfig, default_checkpoint, load_model, predict, save_model

__all__ = ["Prediction", "RenderFM", "RenderFMConfig", "RenderFMInput", "build_inputs", "default_checkpoint",
           "load_model", "predict", "save_model"]
