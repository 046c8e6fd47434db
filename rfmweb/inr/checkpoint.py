"""Neumours checkpoints: atomic saves, ``weights_only`` loads, the shipped weights.

Two kinds of file share one format (a dict of tensors and plain Python values, so
``torch.load(..., weights_only=True)`` reads it without unpickling code):

- a *model* file (``model.pt``, the shipped ``neumours_adamw.pt``):
  ``{"format", "model_config", "state_dict", "info"}``;
- a *training* checkpoint (``checkpoint.pt``) adds ``"step"``, ``"optimizers"`` (a list of
  optimiser state dicts) and ``"train_config"``; it is also a valid model file.
"""

from __future__ import annotations

import importlib.resources
import json
import os
from pathlib import Path

import torch

from ..errors import InputError
from ..io.atomic import atomic_write
from ..models.inr import INRConfig, NeumoursINR

FORMAT = "rfmweb.neumours/1"
#: The shipped checkpoint (trained on the synthetic cohort; see NEUMOURS_CARD.md beside it).
DEFAULT_WEIGHTS = "neumours_adamw.pt"


def default_checkpoint() -> Path:
    """Path of the shipped checkpoint ``rfmweb/weights/neumours_adamw.pt``."""
    return Path(str(importlib.resources.files("rfmweb.weights") / DEFAULT_WEIGHTS))


def _unwrap(model: torch.nn.Module) -> NeumoursINR:
    return getattr(model, "module", model)   # DistributedDataParallel keeps the model in .module


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, *, info: dict | None = None,
                    step: int | None = None, optimizers: list | None = None,
                    train_config: dict | None = None) -> Path:
    """Write a model file (or, with ``step``/``optimizers``, a training checkpoint) atomically.

    ``info`` and ``train_config`` must hold plain values (str, int, float, bool, lists, dicts).
    """
    net = _unwrap(model)
    state = {"format": FORMAT, "model_config": net.config.to_dict(),
             "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
             "info": _plain(info or {})}
    if step is not None:
        state["step"] = int(step)
    if optimizers is not None:
        state["optimizers"] = [opt.state_dict() for opt in optimizers]
    if train_config is not None:
        state["train_config"] = _plain(train_config)
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def _plain(values: dict) -> dict:
    """A JSON round trip: only plain types survive, so ``weights_only`` loading accepts the file
    (e.g. ``torch.__version__`` is a ``TorchVersion``, which it refuses)."""
    return json.loads(json.dumps(values, default=str))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a Neumours file with ``torch.load(weights_only=True)``.

    Raises:
        InputError: missing, unreadable, or not a Neumours checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("no such checkpoint file", path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt zip, pickle of code objects, truncated file
        raise InputError(f"not a readable checkpoint ({type(exc).__name__}; a file written by train-inr "
                         "is a torch zip archive)", path) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InputError(f"not a Neumours checkpoint (expected format {FORMAT!r})", path)
    return state


def load_model(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> NeumoursINR:
    """A :class:`~rfmweb.models.inr.NeumoursINR` in eval mode from a model file or training
    checkpoint (default: the shipped weights)."""
    path = default_checkpoint() if path is None else Path(path)
    state = load_checkpoint(path)
    try:
        model = NeumoursINR(INRConfig(**state["model_config"]))
        model.load_state_dict(state["state_dict"])
    except (TypeError, KeyError, RuntimeError) as exc:
        raise InputError(f"checkpoint does not match the Neumours model ({str(exc).splitlines()[0][:200]})",
                         path) from None
    model.info = dict(state.get("info", {}))
    return model.to(device).eval()
