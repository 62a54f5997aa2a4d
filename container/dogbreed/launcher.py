"""Several training processes on one host (one per GPU): start them, forward SIGTERM, relay the first failure.

The launcher is not an error boundary: a worker's failure is raised again in the launching process, so
train.main() reports it (output/failure, exit code) exactly as it would a failure of its own.
"""

import logging
import traceback
from collections.abc import Callable
from multiprocessing.queues import SimpleQueue

import torch.multiprocessing as mp
from torch.multiprocessing.spawn import ProcessException

from .checkpoint import StopFlag, stop_on_sigterm
from .engine import Interrupted
from .errors import UserError

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # how soon a SIGTERM to the launcher reaches the workers
GRACE_SECONDS = 30.0  # after one worker ends with an error, time the others get to stop (checkpoint) by themselves


class WorkerError(Exception):
    """A worker failed with an internal error (its traceback is in the job log) or was killed."""


def run_local_workers(target: Callable[..., None], args: tuple, processes: int) -> None:
    """Run target(local_rank, *args) in `processes` spawned processes; raise the first worker failure here."""
    failures = mp.get_context("spawn").SimpleQueue()
    with stop_on_sigterm() as stop:
        workers = mp.start_processes(_relay, (target, args, failures), nprocs=processes, join=False)
        try:
            _join_forwarding_sigterm(workers, stop)
        except ProcessException as exc:
            raise _first_failure(failures, exc, stopping=stop()) from None


def _join_forwarding_sigterm(workers: mp.ProcessContext, stop: StopFlag) -> None:
    """Wait for all workers; pass SIGTERM (SageMaker's stop) on to them once, so each stops and checkpoints."""
    forwarded = False
    while not workers.join(timeout=POLL_SECONDS, grace_period=GRACE_SECONDS):
        if stop() and not forwarded:
            log.warning("forwarding SIGTERM to %d local training processes", len(workers.processes))
            for process in workers.processes:
                if process.is_alive():
                    process.terminate()
            forwarded = True


def _relay(local_rank: int, target: Callable[..., None], args: tuple, failures: SimpleQueue) -> None:
    """A worker's entry point: run target; on failure, tell the launcher what failed, then fail (exit non-zero)."""
    try:
        target(local_rank, *args)
    except Exception as exc:
        failures.put(_portable(local_rank, exc))
        raise


def _portable(local_rank: int, exc: Exception) -> Exception:
    """The exception to raise in the launcher: stops and user errors as they are; others named, traceback logged."""
    if isinstance(exc, Interrupted | UserError):
        return exc
    log.error("local rank %d: internal error:\n%s", local_rank, traceback.format_exc())
    return WorkerError(f"local rank {local_rank}: {type(exc).__name__}: {exc}")


def _first_failure(failures: SimpleQueue, exc: ProcessException, *, stopping: bool) -> Exception:
    """The first failure a worker reported; else why it ended (killed, or SIGTERM before it could handle it)."""
    if not failures.empty():
        return failures.get()
    if stopping:
        return Interrupted("stopped before training started; rerun to train")
    return WorkerError(f"local rank {exc.error_index}: {exc}")
