"""`train`'s first process: run the job in a child process and report the failures the job cannot report itself.

The kernel's out-of-memory killer ends a process with SIGKILL: no handler runs, so a killed job writes no
output/failure and SageMaker shows only "exit code 137". This parent stays small (no torch, so the OOM killer picks
the job), passes SageMaker's stop (SIGTERM; Ctrl-C locally) on to the job, which checkpoints and exits 143, and
writes output/failure itself when the job was killed, or failed after the kernel killed one of its processes
(a data loader process) for want of memory.
"""

import io
import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from . import hardware
from .errors import describe, no_temp_dir
from .sm_env import Paths, paths_from_environ

log = logging.getLogger(__name__)

EXIT_USER_ERROR, EXIT_INTERNAL_ERROR, EXIT_STOPPED = 1, 2, 143  # 143 = 128 + SIGTERM
# The job: dogbreed.train.main in a fresh interpreter (-c: spawned local workers then re-import no main module).
JOB = "import sys; from dogbreed.train import main; sys.exit(main(argv=sys.argv[1:]))"
MEMORY_ADVICE = (
    "lower batch_size or num_workers (each loader process holds batches), or use an instance with more memory"
)


def main(argv: Sequence[str], environ: Mapping[str, str] = os.environ) -> int:
    """Run the training job under tcmalloc (hardware.malloc_env); its exit code, and output/failure when the job
    could not write it."""
    configure_logging()
    paths = paths_from_environ(environ)
    try:
        tempfile.gettempdir()  # torch's import needs one
    except OSError as exc:
        return report_failure(paths, str(no_temp_dir(exc)), EXIT_USER_ERROR)
    failure_before, oom_kills = _stamp(paths.failure_file), hardware.oom_kills()
    code = _run_job(argv, hardware.malloc_env("tcmalloc", environ)[0])
    if code == 0:
        return 0
    out_of_memory = code != EXIT_STOPPED and _rose(oom_kills, hardware.oom_kills())
    wrote = _stamp(paths.failure_file) != failure_before
    unreported = _unreported(code, paths, out_of_memory=out_of_memory, wrote=wrote)
    return code if unreported is None else report_failure(paths, *unreported)


def _unreported(code: int, paths: Paths, *, out_of_memory: bool, wrote: bool) -> tuple[str, int] | None:
    """What output/failure should say, and the exit code, for a failed job whose own report is missing or wrong."""
    if code == -signal.SIGTERM:  # before the job's handler was in place (it imports torch first)
        return "training stopped by SIGTERM before it started; rerun to train", EXIT_STOPPED
    if out_of_memory:
        return _out_of_memory(paths), EXIT_USER_ERROR if code > 0 else 128 - code
    if code < 0:
        return _killed(-code), 128 - code
    if not wrote:  # e.g. the interpreter failed before main() ran
        return f"internal error: the training process exited with code {code} without saying why (see the log)", code
    return None


def _run_job(argv: Sequence[str], env: dict[str, str]) -> int:
    """The job's exit code (-N: killed by signal N), with stop signals passed on to it."""
    with _Forwarder() as stop:
        # Its own process group: a terminal's Ctrl-C reaches this process only, and the job gets one SIGTERM (the
        # processes it starts end with it: torch's spawned workers and loader processes watch their parent).
        job = subprocess.Popen([sys.executable, "-c", JOB, *argv], env=env, process_group=0)
        stop.attach(job)
        return job.wait()


def _stamp(path: Path) -> tuple[int, int] | None:
    """Changes when the file is written: (inode, modification time)."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_ino, status.st_mtime_ns


def _out_of_memory(paths: Paths) -> str:
    reported = paths.failure_file.read_text(errors="replace").strip() if paths.failure_file.is_file() else ""
    return (
        f"out of memory: the kernel killed a training process (the container has {_gib(hardware.usable_memory())}); "
        + MEMORY_ADVICE
        + (f". The job itself reported: {reported}" if reported else "")
    )


def _killed(number: int) -> str:
    name = signal.Signals(number).name
    if number == signal.SIGKILL:
        return (
            f"the training process was killed by SIGKILL (the container has {_gib(hardware.usable_memory())}); "
            f"if nobody stopped it on purpose, the kernel did, for want of memory: {MEMORY_ADVICE}"
        )
    return f"internal error: the training process crashed with {name}; the job log shows how far it came"


def _gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB of memory"


def _rose(before: int | None, after: int | None) -> bool:
    return before is not None and after is not None and after > before


class _Forwarder:
    """While running the job: SIGTERM or SIGINT to this process becomes SIGTERM to the job."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self._job: subprocess.Popen | None = None
        self._requested = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "_Forwarder":
        self._previous = {number: signal.signal(number, self._handle) for number in self.SIGNALS}
        return self

    def __exit__(self, *_exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def attach(self, job: subprocess.Popen) -> None:
        self._job = job
        if self._requested:  # the stop came while the job was starting
            job.terminate()

    def _handle(self, signum: int, _frame: object) -> None:
        self._requested = True
        if self._job is not None and self._job.poll() is None:
            log.warning("received signal %d: passing SIGTERM on to the training process", signum)
            self._job.terminate()


def configure_logging(level: int = logging.INFO) -> None:
    """INFO lines (metric lines included) to stdout, where SageMaker's metric regexes read them."""
    package = logging.getLogger(__package__)
    package.setLevel(level)
    if isinstance(sys.stdout, io.TextIOWrapper):  # a non-UTF-8 file name is logged escaped, not lost to an error
        sys.stdout.reconfigure(errors="backslashreplace")
    if not package.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        package.addHandler(handler)


def report_failure(paths: Paths, message: str, code: int) -> int:
    """Write output/failure (SageMaker shows its first 1024 characters as FailureReason); if even that cannot
    be written, the log says why and the exit code still reports the failure."""
    log.error("training failed: %s", message)
    try:
        paths.output_dir.mkdir(parents=True, exist_ok=True)
        # backslashreplace: a non-UTF-8 file name in the message
        paths.failure_file.write_text(message + "\n", encoding="utf-8", errors="backslashreplace")
    except OSError as exc:
        log.error(
            "cannot write %s (%s): the failure reason above is only in this log", paths.failure_file, describe(exc)
        )
    return code
