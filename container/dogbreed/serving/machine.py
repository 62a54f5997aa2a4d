"""What the serving host offers: usable CPUs and memory (container limits included), GPUs, CPU features.

Reads /proc and /sys only (no torch), so the gunicorn master can size workers before any fork.
"""

import math
import os
from dataclasses import dataclass
from pathlib import Path

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")  # x86 AMX / AVX-512-BF16, aarch64 (Graviton 3+)


@dataclass(frozen=True)
class Machine:
    cpus: int
    memory_bytes: int
    gpus: int
    cpu_flags: frozenset[str]

    @property
    def cpu_has_bf16(self) -> bool:
        return any(flag in self.cpu_flags for flag in BF16_CPU_FLAGS)


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def usable_cpus() -> int:
    """CPUs this process may run on, capped by a cgroup CPU quota (docker --cpus)."""
    cpus = len(os.sched_getaffinity(0))
    quota = _read("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"
    if quota and not quota.startswith("max"):
        limit, period = (int(v) for v in quota.split()[:2])
        cpus = min(cpus, max(1, math.ceil(limit / period)))
    else:
        limit, period = _read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), _read("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
        if limit and period and int(limit) > 0:
            cpus = min(cpus, max(1, math.ceil(int(limit) / int(period))))
    return cpus


def usable_memory() -> int:
    """Physical memory, capped by a cgroup memory limit (docker --memory)."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        limit = _read(path)
        if limit and limit.isdigit():
            memory = min(memory, int(limit))
    return memory


def gpu_count() -> int:
    return sum(1 for p in Path("/dev").glob("nvidia[0-9]*") if p.name[len("nvidia") :].isdigit())


def cpu_flags() -> frozenset[str]:
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def describe() -> Machine:
    return Machine(cpus=usable_cpus(), memory_bytes=usable_memory(), gpus=gpu_count(), cpu_flags=cpu_flags())
