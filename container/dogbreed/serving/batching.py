"""Dynamic batching: one background thread runs a function on batches gathered from concurrent callers.

A caller first takes a slot (announcing a job is coming), prepares its payload (e.g. decodes images)
in its own thread, then submits it. The batch runner takes every job already queued, and waits at
most `max_delay_s` longer while other callers hold slots, or until the callers of the previous batch
are back: under steady load, callers just answered come straight back (their round trip is invisible
to the server), and running without them splits the load into alternating partial batches. The
expected count is the previous batch plus what queued while it ran, so a lone caller never waits
and concurrent ones share a forward pass (TorchServe's batchSize / maxBatchDelay, without its idle
wait at low load).
"""

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class _Job:
    payload: Any
    size: int
    future: Future = field(default_factory=Future)


class Slot:
    """A caller's place in the next batches; submit() exactly once, or leave the `with` block."""

    def __init__(self, batcher: "DynamicBatcher"):
        self._batcher = batcher
        self.future: Future | None = None

    def submit(self, payload: Any, size: int) -> Future:
        if self.future is not None:
            raise RuntimeError("a slot takes one submission")
        self.future = self._batcher._enqueue(_Job(payload, size))
        return self.future


class DynamicBatcher:
    """run(payloads) -> results, one per payload, called on batches of at most max_batch_size items.

    A single job larger than max_batch_size forms a batch on its own (run must accept it).
    """

    def __init__(
        self,
        run: Callable[[list[Any]], list[Any]],
        *,
        max_batch_size: int,
        max_delay_s: float,
        on_start: Callable[[], None] | None = None,
        name: str = "batcher",
    ):
        self._run, self._on_start = run, on_start
        self.max_batch_size, self.max_delay_s = max_batch_size, max_delay_s
        self._cond = threading.Condition()
        self._jobs: deque[_Job] = deque()
        self._announced = 0  # slots taken whose job is not queued yet
        self._previous_batch_size = 0  # items in the last batch run: callers likely to return
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @contextmanager
    def slot(self) -> Iterator[Slot]:
        slot = Slot(self)
        with self._cond:
            if self._closed:
                raise RuntimeError("batcher is closed")
            self._announced += 1
        try:
            yield slot
        finally:
            if slot.future is None:
                with self._cond:
                    self._announced -= 1
                    self._cond.notify_all()

    def _enqueue(self, job: _Job) -> Future:
        with self._cond:
            self._announced -= 1
            self._jobs.append(job)
            self._cond.notify_all()
        return job.future

    def close(self, timeout: float | None = None) -> None:
        """Finish the queued jobs, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _take(self) -> list[_Job] | None:
        with self._cond:
            expected = min(self.max_batch_size, self._previous_batch_size + self._queued())
            while not self._jobs and not self._closed:
                self._cond.wait()
            if not self._jobs:
                return None
            deadline = time.monotonic() + self.max_delay_s
            while self._worth_waiting(expected):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch = [self._jobs.popleft()]
            size = batch[0].size
            while self._jobs and size + self._jobs[0].size <= self.max_batch_size:
                size += self._jobs[0].size
                batch.append(self._jobs.popleft())
            self._previous_batch_size = size
            return batch

    def _queued(self) -> int:
        return sum(job.size for job in self._jobs)

    def _worth_waiting(self, expected: int) -> bool:
        queued = self._queued()
        return queued < self.max_batch_size and (self._announced > 0 or queued < expected)

    def _loop(self) -> None:
        if self._on_start is not None:
            self._on_start()
        while (batch := self._take()) is not None:
            try:
                results = self._run([job.payload for job in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"batch function returned {len(results)} results for {len(batch)} jobs")
            except BaseException as exc:  # delivered to every waiting caller; the thread lives on
                for job in batch:
                    job.future.set_exception(exc)
            else:
                for job, result in zip(batch, results, strict=True):
                    job.future.set_result(result)
