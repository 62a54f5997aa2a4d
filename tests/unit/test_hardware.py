"""dogbreed.hardware: the oneDNN cap, serving's candidate precisions and the timed choice among them, the heap."""

import ctypes.util
import platform
import time
from pathlib import Path

import pytest

from dogbreed.hardware import (
    TCMALLOC,
    Machine,
    choose_precision,
    malloc_env,
    onednn_caps_bf16,
    release_freed_memory,
    serving_candidates,
)

BF16_HOST = Machine(cpus=2, memory_bytes=8 << 30, gpus=0, cpu_flags=frozenset({"avx512f", "avx512_bf16"}))
AVX2_HOST = Machine(cpus=2, memory_bytes=8 << 30, gpus=0, cpu_flags=frozenset({"avx2"}))


@pytest.mark.parametrize(
    ("cap", "capped"),
    [("AVX512_CORE_VNNI", True), ("avx512_core", True), ("AVX2", True), ("AVX512_CORE_BF16", False),
     ("AVX512_CORE_AMX", False), ("", False), ("DEFAULT", False)],
)  # fmt: skip
def test_onednn_cap_below_bf16_is_recognised(cap, capped):
    assert onednn_caps_bf16({"ONEDNN_MAX_CPU_ISA": cap}) is capped


def test_auto_times_every_precision_the_cpu_and_the_gate_allow():
    assert serving_candidates("auto", device="cpu", host=BF16_HOST, int8_refusal=None) == ["fp32", "bf16", "int8"]
    assert serving_candidates("auto", device="cpu", host=AVX2_HOST, int8_refusal=None) == ["fp32", "int8"]
    assert serving_candidates("auto", device="cpu", host=BF16_HOST, int8_refusal="gate failed") == ["fp32", "bf16"]


def test_a_requested_precision_is_served_unless_int8_is_refused():
    assert serving_candidates("bf16", device="cpu", host=AVX2_HOST, int8_refusal=None) == ["bf16"]
    assert serving_candidates("int8", device="cpu", host=AVX2_HOST, int8_refusal=None) == ["int8"]
    assert serving_candidates("int8", device="cpu", host=AVX2_HOST, int8_refusal="gate failed") == ["fp32"]
    with pytest.raises(ValueError, match="auto, fp32, bf16, int8"):
        serving_candidates("fp16", device="cpu", host=AVX2_HOST, int8_refusal=None)


def sleeping(seconds: dict[str, float]):
    return lambda names: {name: (lambda s=seconds[name]: time.sleep(s)) for name in names}


def test_auto_keeps_the_fastest_measured_and_says_why():
    probes = sleeping({"fp32": 0.03, "bf16": 0.09, "int8": 0.01})
    choice = choose_precision("auto", ["fp32", "bf16", "int8"], int8_refusal=None, probes=probes)
    assert choice.precision == "int8"
    assert "fastest measured here" in choice.reason and choice.reason.index("int8") < choice.reason.index("bf16")


def test_the_real_probes_time_each_candidate():
    choice = choose_precision("auto", ["fp32", "int8"], int8_refusal=None)
    assert choice.precision in ("fp32", "int8") and "fp32 1.00x" in choice.reason


def test_a_refused_int8_request_says_why_in_the_reason():
    choice = choose_precision("int8", ["fp32"], int8_refusal="it failed the accuracy gate")
    assert choice.precision == "fp32"
    assert "int8 requested" in choice.reason and "failed the accuracy gate" in choice.reason


@pytest.mark.skipif(
    not Path("/proc/self/status").exists() or platform.libc_ver()[0] != "glibc", reason="glibc on Linux"
)
def test_freed_heap_memory_goes_back_to_the_os():
    def rss_mb() -> float:
        line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmRSS"))
        return int(line.split()[1]) / 1024

    # 200 MB in heap-sized pieces (below mmap's threshold), each followed by a 1 KiB block that stays (from malloc,
    # not pymalloc): the freed pieces lie between live blocks, as the copies a model was built from do, so free()
    # keeps them.
    chunks = [(bytearray(64 * 1024), bytearray(1024)) for _ in range(3200)]
    held = rss_mb()
    pins = [pin for _, pin in chunks]
    del chunks
    freed = rss_mb()
    release_freed_memory()
    assert pins and freed - rss_mb() > 100, (
        f"RSS held {held:.0f} MB, freed {freed:.0f} MB, after release {rss_mb():.0f} MB"
    )


def test_tcmalloc_is_preloaded_first_where_installed_or_the_text_says_it_is_missing() -> None:
    env, used = malloc_env("tcmalloc", {"LD_PRELOAD": "/opt/libother.so", "PATH": "/bin"})
    installed = ctypes.util.find_library(TCMALLOC)
    if installed:
        assert (env["LD_PRELOAD"], used) == (f"{installed} /opt/libother.so", f"tcmalloc ({installed})")
    else:
        assert env["LD_PRELOAD"] == "/opt/libother.so"
        assert "tcmalloc is not installed here" in used
    assert env["PATH"] == "/bin"


def test_the_system_malloc_drops_only_tcmalloc_from_the_preload_list() -> None:
    env, used = malloc_env("system", {"LD_PRELOAD": "libtcmalloc_minimal.so.4:/opt/libother.so"})
    assert (env["LD_PRELOAD"], used) == ("/opt/libother.so", "the C library's malloc")
    assert "LD_PRELOAD" not in malloc_env("system", {"LD_PRELOAD": "/usr/lib/libtcmalloc_minimal.so.4"})[0]
