"""Optional SageMaker Debugger (smdebug) hook and torch.profiler trace; both no-ops unless asked for."""

import contextlib
import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

PROFILE_STEPS = {"wait": 1, "warmup": 1, "active": 3}


class NullHook:
    """No debughookconfig.json: nothing is imported, registered or saved."""

    def train(self) -> None:
        """Mark the following steps as training steps."""

    def eval(self) -> None:
        """Mark the following steps as evaluation steps."""

    def close(self) -> None:
        """Flush what was saved."""


class SmdebugHook(NullHook):
    """smdebug's PyTorch hook from SageMaker's JSON config: collections, save intervals and output path."""

    def __init__(self, config: Path, model: nn.Module, criterion: nn.Module):
        import smdebug.pytorch as smd  # imported only when Debugger is configured

        self._modes = smd.modes
        # Collections (losses, gradients, relu_input, ...) and LocalPath come from the config SageMaker wrote.
        self._hook = smd.Hook.create_from_json_file(str(config))
        self._hook.register_module(model)
        self._hook.register_loss(criterion)
        log.info("smdebug hook created from %s", config)

    def train(self) -> None:
        self._hook.set_mode(self._modes.TRAIN)

    def eval(self) -> None:
        self._hook.set_mode(self._modes.EVAL)

    def close(self) -> None:
        self._hook.close()


def create_hook(config: Path | None, model: nn.Module, criterion: nn.Module) -> NullHook:
    """The smdebug hook when SageMaker wrote a Debugger config (register the module that actually runs)."""
    return SmdebugHook(config, model, criterion) if config is not None else NullHook()


def _no_step() -> None:
    """Profiling disabled: a step costs nothing."""


def profile_dir(output_data_dir: Path, enabled: bool) -> Path | None:
    """Where profile=true traces (output/data/profile); None without it, and then an earlier run's trace there is
    removed: the job's reports hold only this job's figures."""
    target = output_data_dir / "profile"
    if enabled:
        return target
    shutil.rmtree(target, ignore_errors=True)
    return None


@contextlib.contextmanager
def profiled_steps(out_dir: Path | None) -> Iterator[Callable[[], None]]:
    """Yield a per-step callback; given a directory, trace a few steps (Chrome trace + op table) into it."""
    if out_dir is None:
        yield _no_step
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(torch.profiler.ProfilerActivity.CUDA)

    def on_ready(prof: torch.profiler.profile) -> None:
        prof.export_chrome_trace(str(out_dir / "trace.json"))
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30)
        (out_dir / "op_summary.txt").write_text(table)
        log.info("profiler trace of %d steps written to %s", PROFILE_STEPS["active"], out_dir)

    schedule = torch.profiler.schedule(**PROFILE_STEPS, repeat=1)
    with torch.profiler.profile(activities=activities, schedule=schedule, on_trace_ready=on_ready) as prof:
        yield prof.step
