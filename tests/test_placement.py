"""Where the forward passes run (execution/placement.py): the hardware decides, a setting overrides."""

from __future__ import annotations

import pytest

from execution import placement


def test_visible_gpus_follows_cuda_visible_devices():
    assert placement.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == 0
    assert placement.visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == 0
    assert placement.visible_gpus({"CUDA_VISIBLE_DEVICES": "0"}) == 1
    assert placement.visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == 2
    assert placement.visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-5d1f,GPU-77aa"}) == 2


def test_auto_takes_the_executor_only_with_a_gpu_and_a_backend_that_can_use_it(monkeypatch):
    monkeypatch.setattr(placement, "cuda_backend", lambda environ: "jax")
    assert placement.resolve("auto", {"CUDA_VISIBLE_DEVICES": "0"}) == "executor"
    assert placement.resolve("auto", {"CUDA_VISIBLE_DEVICES": ""}) == "worker"  # the GPU hidden
    monkeypatch.setattr(placement, "cuda_backend", lambda environ: None)  # a CPU-only jaxlib
    assert placement.resolve("auto", {"CUDA_VISIBLE_DEVICES": "0"}) == "worker"


def test_the_setting_overrides_the_hardware(monkeypatch):
    monkeypatch.setattr(placement, "cuda_backend", lambda environ: "jax")
    assert placement.resolve("worker", {"CUDA_VISIBLE_DEVICES": "0"}) == "worker"
    assert placement.resolve("executor", {"CUDA_VISIBLE_DEVICES": ""}) == "executor"
    with pytest.raises(ValueError, match="PLACEMENT='gpu'"):
        placement.resolve("gpu", {})


def test_one_executor_per_gpu_and_one_without():
    assert placement.executors({"CUDA_VISIBLE_DEVICES": "0,1,2"}) == 3
    assert placement.executors({"CUDA_VISIBLE_DEVICES": ""}) == 1


def test_this_machines_cpu_only_jaxlib_is_no_cuda_backend():
    # the dev extras install a CPU jaxlib: auto must keep the in-worker passes here
    assert placement.cuda_backend({"KERAS_BACKEND": "jax"}) is None
