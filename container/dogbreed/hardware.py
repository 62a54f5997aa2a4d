"""The one owner of hardware and precision, for training and serving.

Host description (usable CPUs and memory with container limits, GPUs, CPU flags) reads /proc and /sys
only, so the gunicorn master can size workers before it imports torch. Threads: how many, and the one place
torch's counts are set. Precision: which numeric formats a host runs natively, the autocast training uses,
and serving's choice among fp32 / bf16 / int8.

Why serving measures instead of reading flags: oneDNN can be capped below what /proc/cpuinfo lists
(ONEDNN_MAX_CPU_ISA, e.g. AVX512_CORE_VNNI to behave like an ml.m5.large Cascade Lake), and then
emulates bf16 at a third of fp32's speed; int8, which runs on the oneDNN engine (dogbreed.quantize), follows the
cap too (1.6x slower without VNNI, as on a Skylake-SP). A short timed forward of each candidate (one ResNet
block) at start-up is right under any cap, on AMX, on AVX2-only CPUs.
"""

import contextlib
import copy
import ctypes
import ctypes.util
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

SERVING_PRECISIONS = ("auto", "fp32", "bf16", "int8")
# oneDNN's ISA names in rising order; bf16 runs natively from AVX512_CORE_BF16 on (ONEDNN_MAX_CPU_ISA).
ONEDNN_ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
               "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16", "AVX10_1_512_AMX", "AVX512_CORE_AMX",
               "AVX10_1_512_AMX_FP16", "AVX512_CORE_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2")  # fmt: skip
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")  # x86 AMX / AVX-512-BF16, aarch64 (Graviton 3+)
MALLOCS = ("tcmalloc", "system")
TCMALLOC = "tcmalloc_minimal"  # gperftools' tcmalloc without its profiler (Debian: libtcmalloc-minimal4)
SYSTEM_MALLOC = "the C library's malloc"


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


def oom_kills() -> int | None:
    """Processes of this container the kernel's out-of-memory killer has ended so far (cgroup v2 memory.events,
    v1 memory.oom_control); None where neither is readable."""
    for path in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
        for line in (_read(path) or "").splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    return None


def gpu_count() -> int:
    return sum(1 for p in Path("/dev").glob("nvidia[0-9]*") if p.name[len("nvidia") :].isdigit())


def cpu_flags() -> frozenset[str]:
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def malloc_env(malloc: str, environ: Mapping[str, str] = os.environ) -> tuple[dict[str, str], str]:
    """A copy of environ whose processes allocate with `malloc` (tcmalloc | system), and what they will use.

    PyTorch allocates every activation afresh on each forward pass. With several threads, glibc's malloc hands
    the pages of those multi-MB buffers back to the kernel and each forward faults them in again (the served
    int8 model at concurrency 16: 50 000 page faults a second); tcmalloc keeps them (README "Int8 and one precision
    per host": a forward on two threads +20-40 %, the server at concurrency 16 +6 %). tcmalloc is preloaded
    (LD_PRELOAD) where it is installed (the image); elsewhere the C library's malloc stays, and the text says so.
    """
    env = dict(environ)
    preload = [entry for entry in env.pop("LD_PRELOAD", "").replace(":", " ").split() if TCMALLOC not in entry]
    used = SYSTEM_MALLOC
    if malloc == "tcmalloc":
        if library := ctypes.util.find_library(TCMALLOC):
            preload.insert(0, library)
            used = f"tcmalloc ({library})"
        else:
            used += " (tcmalloc is not installed here: apt-get install libtcmalloc-minimal4)"
    if preload:
        env["LD_PRELOAD"] = " ".join(preload)
    return env, used


def rerun_with_malloc(malloc: str, argv: list[str]) -> None:
    """Replace this process (same PID) by `python argv...` allocating with `malloc` (malloc_env), unless it already
    does. Call first thing in a program, before torch is imported."""
    env, _ = malloc_env(malloc)
    if env.get("LD_PRELOAD") != os.environ.get("LD_PRELOAD"):
        os.execve(sys.executable, [sys.executable, *argv], env)


def _tcmalloc_release() -> Callable[[], None] | None:
    """tcmalloc's ReleaseFreeMemory when this process allocates with tcmalloc (malloc_env), else None."""
    try:
        return getattr(ctypes.CDLL(None), "MallocExtension_ReleaseFreeMemory", None)
    except OSError:  # no dlopen(NULL) on this platform
        return None


def malloc_in_use() -> str:
    """'tcmalloc' when this process allocates with it, else SYSTEM_MALLOC."""
    return "tcmalloc" if _tcmalloc_release() else SYSTEM_MALLOC


def release_freed_memory() -> None:
    """Hand the heap pages freed so far back to the OS: after a model is built from copies (FX quantization,
    weight folding) the process would otherwise stay ~200 MB larger than what it holds. glibc: malloc_trim;
    tcmalloc (malloc_env): its ReleaseFreeMemory. Nothing to do for other allocators (musl, macOS)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    if release := _tcmalloc_release():
        release()


def describe() -> Machine:
    return Machine(cpus=usable_cpus(), memory_bytes=usable_memory(), gpus=gpu_count(), cpu_flags=cpu_flags())


def onednn_caps_bf16(environ: Mapping[str, str] = os.environ) -> bool:
    """True when ONEDNN_MAX_CPU_ISA holds oneDNN below AVX512_CORE_BF16 (bf16 then runs emulated)."""
    cap = environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    return cap in ONEDNN_ISAS and ONEDNN_ISAS.index(cap) < ONEDNN_ISAS.index("AVX512_CORE_BF16")


def cpu_runs_bf16(host: Machine | None = None, environ: Mapping[str, str] = os.environ) -> bool:
    """The CPU has bf16 instructions and oneDNN may use them."""
    return (host or describe()).cpu_has_bf16 and not onednn_caps_bf16(environ)


# ------------------------------------------------------------------------------------- threads


def choose_threads(requested: int | None, processes: int = 1, cpus: int | None = None) -> int:
    """Intra-op threads: as asked, else the CPUs (default: usable here) shared by this host's processes,
    so they never oversubscribe the cores."""
    return requested or max(1, (cpus or usable_cpus()) // processes)


def set_torch_threads(count: int, *, interop: int | None = None) -> None:
    """The one place torch's thread counts are set: `count` intra-op threads (per thread: each request or batch
    thread sets its own), and `interop` inter-op threads, settable only before the process's first inter-op
    task (later calls keep the first value)."""
    import torch

    torch.set_num_threads(count)
    if interop:
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(interop)


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """`count` intra-op threads for the calling thread inside the block, its previous count restored after."""
    import torch

    previous = torch.get_num_threads()
    set_torch_threads(count)
    try:
        yield
    finally:
        set_torch_threads(previous)


# ------------------------------------------------------------------------------------- training


def training_autocast(device) -> contextlib.AbstractContextManager:
    """Mixed precision for training steps: fp16 on CUDA (with a GradScaler); full precision on CPU."""
    import torch

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def feature_autocast(device, precision: str = "auto") -> contextlib.AbstractContextManager:
    """A frozen backbone's forward pass: fp16 on CUDA, bf16 on CPUs that run it natively, else (or with
    precision="fp32") full precision."""
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    if cpu_runs_bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# -------------------------------------------------------------------------------------- serving


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str
    reason: str  # for the log: what was measured, or why there was nothing to choose


def serving_candidates(requested: str, *, device: str, host: Machine, int8_refusal: str | None) -> list[str]:
    """The precisions worth timing for `requested` on this host; int8_refusal: why int8 may not be served."""
    if requested not in SERVING_PRECISIONS:
        raise ValueError(f"precision {requested!r}: expected one of {', '.join(SERVING_PRECISIONS)}")
    if requested == "int8":
        return ["fp32"] if int8_refusal else ["int8"]
    if requested != "auto":
        return [requested]
    if device == "cuda":
        import torch

        return ["bf16" if torch.cuda.is_bf16_supported() else "fp32"]
    return ["fp32"] + ["bf16"] * host.cpu_has_bf16 + ["int8"] * (int8_refusal is None)


def precision_probes(names: list[str]) -> dict[str, Callable[[], object]]:
    """Per precision, one pass of one ResNet50 layer2 bottleneck (1x1, 3x3, 1x1 convolutions at 28x28,
    batch 4, channels_last) prepared as the server prepares the model: its speed ratios follow the whole
    network's, at a few percent of the cost of preparing and timing the model itself."""
    import torch
    from torch import nn

    from .quantize import quantize

    torch.manual_seed(0)
    block = nn.Sequential(nn.Conv2d(512, 128, 1), nn.ReLU(), nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(128, 512, 1), nn.ReLU()).eval()  # fmt: skip
    x = torch.randn(4, 512, 28, 28).contiguous(memory_format=torch.channels_last)
    nets = {
        "fp32": (block.to(memory_format=torch.channels_last), x),
        "bf16": (copy.deepcopy(block).to(torch.bfloat16), x.to(torch.bfloat16)),
        "int8": (quantize(block, [x]) if "int8" in names else None, x),
    }

    @torch.inference_mode()
    def forward(net: nn.Module, batch) -> None:
        net(batch)

    return {name: partial(forward, *nets[name]) for name in names}


def _fastest_times(probes: dict[str, Callable[[], object]], rounds: int = 4, budget_s: float = 1) -> dict[str, float]:
    """Each probe's best time over interleaved rounds (after a warm-up call): on a shared, busy host the
    best of several, taken in turns, is the figure least distorted by other processes."""
    for probe in probes.values():
        probe()
    best = dict.fromkeys(probes, math.inf)
    deadline = time.perf_counter() + budget_s
    for _ in range(rounds):
        for name, probe in probes.items():
            started = time.perf_counter()
            probe()
            best[name] = min(best[name], time.perf_counter() - started)
        if time.perf_counter() > deadline:
            break
    return best


def choose_precision(
    requested: str,
    names: list[str],
    *,
    int8_refusal: str | None,
    probes: Callable[[list[str]], dict[str, Callable[[], object]]] = precision_probes,
) -> PrecisionChoice:
    """The fastest of the candidate precisions by timed probes (_fastest_times), with the reason for the log;
    no probe when there is one candidate."""
    refused = f"; int8 not served: {int8_refusal}" if int8_refusal else ""
    if len(names) == 1:
        (only,) = names
        why = "requested" if requested == only else f"{requested} requested, {only} the only candidate here"
        return PrecisionChoice(only, why + refused)
    seconds = _fastest_times(probes(names))
    best = min(seconds, key=seconds.get)
    speeds = ", ".join(f"{p} {seconds['fp32'] / t:.2f}x" for p, t in sorted(seconds.items(), key=lambda kv: kv[1]))
    return PrecisionChoice(best, f"fastest measured here (ResNet block speed vs fp32: {speeds}){refused}")
