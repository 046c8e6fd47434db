"""Neumours: training, inference, denoising and checkpoints of the INR tumour segmenter.

The network itself is :class:`rfmweb.models.inr.NeumoursINR`.

>>> from rfmweb.inr import load_model, segment_volume, denoise_labels   # doctest: +SKIP
>>> model = load_model()                      # the shipped weights (synthetic cohort)
>>> labels = segment_volume(model, volume)    # [X, Y, Z] uint8, 0 bg / 1 NCR / 2 ED / 3 ET
>>> clean = denoise_labels(labels, spacing=volume.spacing)
>>> train_inr(TrainConfig(cases="cohort/train", out="runs/a", val="cohort/val"))   # rfmweb.inr.train.train
"""

from .checkpoint import default_checkpoint, load_checkpoint, load_model, save_checkpoint
from .cnn import CNNTrainConfig, load_cnn, segment_cnn, train_cnn
from .correct import CorrectionResult, Corrector
from .denoise import denoise_labels
from .evaluate import evaluate_inr
from .infer import LabelCache, finer_grid, segment_case, segment_volume
from .train import TrainConfig, learning_rate, neumours_loss
from .train import train as train_inr   # not "train": that would shadow the module rfmweb.inr.train

__all__ = ["CNNTrainConfig", "CorrectionResult", "Corrector", "LabelCache", "TrainConfig", "default_checkpoint",
           "denoise_labels", "evaluate_inr", "finer_grid", "learning_rate", "load_checkpoint", "load_cnn", "load_model",
           "neumours_loss", "save_checkpoint", "segment_case", "segment_cnn", "segment_volume", "train_cnn", "train_inr"]
