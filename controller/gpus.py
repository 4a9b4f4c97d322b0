"""Local GPU inventory and allocator: which trial may use which GPU.

Called by the local reconciler before it starts a trial that asks for ``nvidia.com/gpu`` in its
primary container's limits. The inventory comes from, in order:

1. ``TUNERY_GPUS``: an explicit list of device ids (``"0,1,3"``) or a count (``"4"``); also
   what tests use as a fake inventory;
2. NVML (``nvidia-ml-py``), restricted to ``CUDA_VISIBLE_DEVICES`` when that is set;
3. ``nvidia-smi --query-gpu``, likewise restricted;
4. otherwise no GPUs.

A trial asking for N GPUs gets N distinct devices, exposed to it through
``CUDA_VISIBLE_DEVICES`` and ``NVIDIA_VISIBLE_DEVICES``. By default a device serves one trial at
a time; the experiment annotation ``tunery.io/trials-per-gpu: "k"`` lets k trials share each
device. Trials wait for free devices rather than oversubscribe; a request for more devices
than the machine has is an error, unless the experiment is annotated
``tunery.io/gpu-optional: "true"``: then, on a machine with fewer GPUs than a trial asks for,
trials run on the CPU (no device visible to them), and the controller says so once.
Allocations are recorded in each trial's runner handle, so :meth:`GpuAllocator.restore`
rebuilds them after a controller restart.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

GPU_RESOURCE = "nvidia.com/gpu"
TRIALS_PER_GPU_ANNOTATION = "tunery.io/trials-per-gpu"
GPU_OPTIONAL_ANNOTATION = "tunery.io/gpu-optional"


class GpuRequestError(ValueError):
    """A trial asks for more GPUs than exist, or the request is malformed."""


@dataclass(frozen=True)
class Gpu:
    id: str  # what goes into CUDA_VISIBLE_DEVICES: an index or a UUID
    name: str = ""
    memory_mib: int | None = None


def _visible_filter(gpus: list[Gpu], uuids: Sequence[str]) -> list[Gpu]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return gpus
    wanted = [v.strip() for v in visible.split(",") if v.strip()]
    kept = []
    for gpu, uuid in zip(gpus, uuids, strict=True):
        if gpu.id in wanted or uuid in wanted:
            kept.append(gpu)
    return kept


def _from_nvml() -> list[Gpu] | None:
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return None
    try:
        gpus, uuids = [], []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle).total // 2**20
            gpus.append(Gpu(str(index), name if isinstance(name, str) else name.decode(), memory))
            uuid = pynvml.nvmlDeviceGetUUID(handle)
            uuids.append(uuid if isinstance(uuid, str) else uuid.decode())
        return _visible_filter(gpus, uuids)
    finally:
        pynvml.nvmlShutdown()


def _from_nvidia_smi() -> list[Gpu] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    gpus, uuids = [], []
    for line in out.strip().splitlines():
        index, uuid, name, memory = (part.strip() for part in line.split(","))
        gpus.append(Gpu(index, name, int(float(memory))))
        uuids.append(uuid)
    return _visible_filter(gpus, uuids)


def _from_env(value: str) -> list[Gpu]:
    value = value.strip()
    if value.isdigit() and "," not in value:
        return [Gpu(str(i)) for i in range(int(value))]
    return [Gpu(v.strip()) for v in value.split(",") if v.strip()]


def discover_gpus() -> list[Gpu]:
    """The GPUs tunery may hand to local trials (see the module docstring for the order)."""
    explicit = os.environ.get("TUNERY_GPUS")
    if explicit is not None:
        return _from_env(explicit)
    for probe in (_from_nvml, _from_nvidia_smi):
        found = probe()
        if found is not None:
            return found
    return []


def gpu_request(container: Mapping[str, Any]) -> int:
    """Number of GPUs the container asks for (limits, else requests), 0 when none.

    Raises:
        GpuRequestError: the value is not a non-negative integer.
    """
    resources = container.get("resources") or {}
    raw = (resources.get("limits") or {}).get(GPU_RESOURCE)
    if raw is None:
        raw = (resources.get("requests") or {}).get(GPU_RESOURCE)
    if raw is None:
        return 0
    try:
        count = int(str(raw))
    except ValueError:
        raise GpuRequestError(
            f"resources.limits.{GPU_RESOURCE}: {raw!r} is not an integer"
        ) from None
    if count < 0:
        raise GpuRequestError(f"resources.limits.{GPU_RESOURCE}: {count} is negative")
    return count


class GpuAllocator:
    """Hands out GPU slots to trials; thread-safe. ``trials_per_gpu`` slots per device."""

    def __init__(
        self, gpus: Sequence[Gpu], trials_per_gpu: int = 1, *, optional: bool = False
    ) -> None:
        """``optional``: a request the machine can never meet runs on the CPU instead of being
        an error (the ``tunery.io/gpu-optional`` annotation)."""
        if trials_per_gpu < 1:
            raise GpuRequestError(
                f"{TRIALS_PER_GPU_ANNOTATION} must be >= 1, got {trials_per_gpu}"
            )
        self.gpus = list(gpus)
        self.trials_per_gpu = trials_per_gpu
        self.optional = optional
        self._told_cpu = False
        self._users: dict[str, set[str]] = {g.id: set() for g in self.gpus}
        self._lock = threading.Lock()

    def check(self, count: int) -> None:
        """Raise GpuRequestError when ``count`` GPUs can never be satisfied here (with
        ``optional``, say once that trials run on the CPU instead)."""
        if count > len(self.gpus) and self.optional:
            if not self._told_cpu:
                self._told_cpu = True
                log.warning(
                    "trials ask for %d GPU(s) (%s) but this machine has %d; %s is set, so "
                    "they run on the CPU",
                    count,
                    GPU_RESOURCE,
                    len(self.gpus),
                    GPU_OPTIONAL_ANNOTATION,
                )
            return
        if count > len(self.gpus):
            have = ", ".join(g.id for g in self.gpus) or "none"
            raise GpuRequestError(
                f"a trial asks for {count} GPU(s) ({GPU_RESOURCE}) but this machine has "
                f"{len(self.gpus)} (visible: {have}); set TUNERY_GPUS or lower the request"
            )

    def allocate(self, trial: str, count: int) -> list[str] | None:
        """Reserve ``count`` distinct devices for ``trial``; None when not enough are free now."""
        if count == 0:
            return []
        self.check(count)
        if count > len(self.gpus):  # optional and never satisfiable: the CPU, no device
            return []
        with self._lock:
            free = [g.id for g in self.gpus if len(self._users[g.id]) < self.trials_per_gpu]
            if len(free) < count:
                return None
            # least-loaded devices first, so packing spreads trials before stacking them
            free.sort(key=lambda gid: len(self._users[gid]))
            chosen = sorted(free[:count], key=[g.id for g in self.gpus].index)
            for gid in chosen:
                self._users[gid].add(trial)
            return chosen

    def release(self, trial: str) -> None:
        with self._lock:
            for users in self._users.values():
                users.discard(trial)

    def restore(self, allocations: Iterable[tuple[str, Sequence[str]]]) -> None:
        """Re-register (trial, devices) pairs of trials still running after a restart."""
        with self._lock:
            for trial, devices in allocations:
                for gid in devices:
                    if gid in self._users:
                        self._users[gid].add(trial)
                    else:
                        log.warning(
                            "trial %s holds GPU %s, which is not in the inventory", trial, gid
                        )

    def in_use(self) -> dict[str, list[str]]:
        with self._lock:
            return {gid: sorted(users) for gid, users in self._users.items()}


def visible_devices_env(devices: Sequence[str]) -> dict[str, str]:
    """Environment that confines a process to ``devices`` (empty list: no GPU at all)."""
    value = ",".join(devices)
    return {"CUDA_VISIBLE_DEVICES": value, "NVIDIA_VISIBLE_DEVICES": value or "void"}
