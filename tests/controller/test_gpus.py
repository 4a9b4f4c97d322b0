"""controller.gpus: inventory sources and exclusive/packed allocation with a fake inventory."""

from __future__ import annotations

import pytest

from controller import gpus
from controller.gpus import Gpu, GpuAllocator, GpuRequestError, gpu_request, visible_devices_env


def test_inventory_from_tunery_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNERY_GPUS", "0,2,5")
    assert [g.id for g in gpus.discover_gpus()] == ["0", "2", "5"]
    monkeypatch.setenv("TUNERY_GPUS", "3")
    assert [g.id for g in gpus.discover_gpus()] == ["0", "1", "2"]
    monkeypatch.setenv("TUNERY_GPUS", "")
    assert gpus.discover_gpus() == []


def test_without_nvml_or_nvidia_smi_there_are_no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNERY_GPUS", raising=False)
    monkeypatch.setattr(gpus, "_from_nvml", lambda: None)
    monkeypatch.setattr(gpus.shutil, "which", lambda _: None)
    assert gpus.discover_gpus() == []


def test_nvidia_smi_output_is_parsed_and_filtered(monkeypatch: pytest.MonkeyPatch) -> None:
    class Done:
        stdout = "0, GPU-aaa, NVIDIA H100, 81559\n1, GPU-bbb, NVIDIA H100, 81559\n"

    monkeypatch.delenv("TUNERY_GPUS", raising=False)
    monkeypatch.setattr(gpus, "_from_nvml", lambda: None)
    monkeypatch.setattr(gpus.shutil, "which", lambda _: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(gpus.subprocess, "run", lambda *a, **k: Done())
    assert [g.id for g in gpus.discover_gpus()] == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-bbb")
    found = gpus.discover_gpus()
    assert [(g.id, g.name, g.memory_mib) for g in found] == [("1", "NVIDIA H100", 81559)]


def test_exclusive_allocation_waits_instead_of_oversubscribing() -> None:
    alloc = GpuAllocator([Gpu("0"), Gpu("1"), Gpu("2")])
    assert alloc.allocate("a", 2) == ["0", "1"]
    assert alloc.allocate("b", 2) is None
    assert alloc.allocate("c", 1) == ["2"]
    assert alloc.allocate("d", 1) is None
    alloc.release("a")
    assert alloc.allocate("b", 2) == ["0", "1"]
    assert alloc.allocate("e", 0) == []


def test_packing_spreads_before_stacking() -> None:
    alloc = GpuAllocator([Gpu("0"), Gpu("1")], trials_per_gpu=2)
    got = [alloc.allocate(t, 1) for t in "abcd"]
    assert got == [["0"], ["1"], ["0"], ["1"]]
    assert alloc.allocate("e", 1) is None
    assert alloc.in_use() == {"0": ["a", "c"], "1": ["b", "d"]}


def test_requests_larger_than_the_machine_fail_clearly() -> None:
    alloc = GpuAllocator([Gpu("0")])
    with pytest.raises(GpuRequestError, match=r"asks for 2 GPU\(s\).*this machine has 1"):
        alloc.allocate("a", 2)
    with pytest.raises(GpuRequestError, match="not an integer"):
        gpu_request({"resources": {"limits": {"nvidia.com/gpu": "two"}}})
    assert gpu_request({"resources": {"requests": {"nvidia.com/gpu": 1}}}) == 1
    assert gpu_request({}) == 0


def test_gpu_optional_runs_on_the_cpu_where_the_machine_has_too_few(
    caplog: pytest.LogCaptureFixture,
) -> None:
    alloc = GpuAllocator([], optional=True)
    alloc.check(1)  # no error: the request is optional
    assert alloc.allocate("a", 1) == [] and alloc.allocate("b", 1) == []  # no device: the CPU
    assert visible_devices_env([])["CUDA_VISIBLE_DEVICES"] == ""
    said = [r.getMessage() for r in caplog.records if "run on the CPU" in r.getMessage()]
    assert len(said) == 1 and "tunery.io/gpu-optional" in said[0]  # said once
    # where the machine has enough, the request is exclusive as usual
    alloc = GpuAllocator([Gpu("0")], optional=True)
    assert alloc.allocate("a", 1) == ["0"]
    assert alloc.allocate("b", 1) is None


def test_restore_rebuilds_allocations_after_restart() -> None:
    alloc = GpuAllocator([Gpu("0"), Gpu("1")])
    alloc.restore([("old", ["1"])])
    assert alloc.allocate("new", 1) == ["0"]
    assert alloc.allocate("newer", 1) is None


def test_visible_devices_env() -> None:
    assert visible_devices_env(["1", "3"]) == {
        "CUDA_VISIBLE_DEVICES": "1,3",
        "NVIDIA_VISIBLE_DEVICES": "1,3",
    }
    assert visible_devices_env([]) == {
        "CUDA_VISIBLE_DEVICES": "",
        "NVIDIA_VISIBLE_DEVICES": "void",
    }
