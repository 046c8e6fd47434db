"""torch.distributed for training (Neumours, the CNN baseline, Render-FM): one process per device,
launched by ``torchrun``.

``torchrun --nproc_per_node N -m rfmweb train-inr ...`` (or ``train-renderfm``) sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`setup` reads them and starts the
process group (gloo on CPU, NCCL on CUDA). Without those variables training runs in one process
and every helper here is a no-op. Only rank 0 writes files.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, its ``device``, whether it started
    the process group (and so must destroy it)."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str | torch.device | None = None) -> DistInfo:
    """Join the process group when launched by torchrun, and pick this process's device.

    Args:
        device: ``"cpu"``, ``"cuda"`` (one GPU per local rank) or ``None`` for
            :func:`rfmweb.backend.default_device`.
    """
    from .backend import default_device

    device = torch.device(device) if device is not None else default_device()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(device=device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, device_id=device if device.type == "cuda" else None)
        owns = True
    log.info("rank %d/%d on %s (%s)", rank, world, device, dist.get_backend())
    return DistInfo(rank, world, device, owns)


def wrap(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """``DistributedDataParallel`` around ``model`` when distributed (gradients averaged over ranks)."""
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[info.device.index] if info.device.type == "cuda" else None)


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def broadcast_flag(value: bool, info: DistInfo) -> bool:
    """Rank 0's boolean, on every rank."""
    if not info.distributed:
        return value
    t = torch.tensor([int(value)], device=info.device if info.device.type == "cuda" else "cpu")
    dist.broadcast(t, src=0)
    return bool(t.item())


def all_mean(value: float, info: DistInfo) -> float:
    """Mean of a float over ranks."""
    if not info.distributed:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=info.device if info.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


def teardown(info: DistInfo) -> None:
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()
