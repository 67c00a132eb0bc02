"""The one device resolver (``mitokit.engines.device.resolve_device``)."""

from __future__ import annotations

import pytest
import torch

import mitokit.engines.device as device_module
from mitokit.engines.device import resolve_device
from mitokit.errors import MitokitError


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "_mps_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.delenv("LOCAL_RANK", raising=False)


@pytest.mark.parametrize("choice", ["auto", None, "AUTO"])
def test_auto_without_accelerators_is_cpu(no_gpu, choice):
    assert resolve_device(choice) == torch.device("cpu")


def test_default_is_auto(no_gpu):
    assert resolve_device() == torch.device("cpu")


def test_auto_prefers_cuda_with_the_local_rank(two_gpus):
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("auto", local_rank=1) == torch.device("cuda", 1)


def test_torchrun_local_rank_is_read_from_the_environment(two_gpus, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)  # an explicit index stands


def test_auto_takes_mps_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "_mps_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    assert resolve_device("mps") == torch.device("mps")


def test_cpu_and_device_objects_pass(no_gpu):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("choice", ["cuda", "cuda:0", torch.device("cuda")])
def test_cuda_without_a_gpu_is_a_clear_error(no_gpu, choice):
    with pytest.raises(MitokitError, match="no CUDA device"):
        resolve_device(choice)


def test_mps_without_it_is_a_clear_error(no_gpu):
    with pytest.raises(MitokitError, match="MPS"):
        resolve_device("mps")


@pytest.mark.parametrize("choice", ["tpu", "graphics", "", "cuda:x", "meta"])
def test_unknown_device_is_a_clear_error(no_gpu, choice):
    with pytest.raises(MitokitError, match="unknown device"):
        resolve_device(choice)


def test_gpu_index_or_rank_beyond_the_gpus_present(two_gpus):
    with pytest.raises(MitokitError, match="no GPU 2"):
        resolve_device("cuda:2")
    with pytest.raises(MitokitError, match="local rank 3"):
        resolve_device("auto", local_rank=3)
