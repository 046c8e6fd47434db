"""Thread counts of the compute commands (:func:`rfmweb.backend.compute_threads`, ``--threads``)."""

from __future__ import annotations

import argparse

import pytest
import torch

from rfmweb.backend import CUDA_HOST_THREADS, compute_threads
from rfmweb.commands._options import apply_threads
from rfmweb.errors import InputError


@pytest.fixture
def threads():
    """Put torch's thread count back after the test."""
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def test_cuda_work_keeps_a_few_host_threads(threads, monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 16)            # a many-core host
    set_to = []
    monkeypatch.setattr(torch, "set_num_threads", set_to.append)
    assert compute_threads(None, torch.device("cuda")) == CUDA_HOST_THREADS == set_to[-1]
    assert compute_threads(None, torch.device("cpu")) == 16 and len(set_to) == 1     # CPU work: untouched
    assert compute_threads(3, torch.device("cuda")) == 3 == set_to[-1]               # asked for: honoured


def test_threads_option(threads):
    apply_threads(argparse.Namespace(threads=1), "cpu")
    assert torch.get_num_threads() == 1
    with pytest.raises(InputError, match="--threads must be >= 1"):
        apply_threads(argparse.Namespace(threads=0), "cpu")
    with pytest.raises(InputError, match="--device must be cpu or cuda"):
        apply_threads(argparse.Namespace(threads=None), "tpu")
