"""Dynamic batching: one background thread runs a function on batches gathered from concurrent callers; and the
budget that bounds how many pixels a worker's request threads decode at once.

A caller first takes a slot (announcing a job is coming), prepares its payload (e.g. decodes images)
in its own thread, then submits it. The batch runner takes every job already queued, and waits at
most `max_delay_s` longer while other callers hold slots, or until the callers of the previous batch
are back: under steady load, callers just answered come straight back (their round trip is invisible
to the server), and running without them splits the load into alternating partial batches. The
expected count is the previous batch plus what queued while it ran, so a lone caller never waits
and concurrent ones share a forward pass (TorchServe's batchSize / maxBatchDelay, without its idle
wait at low load).

With several streams (threads running batches at the same time, e.g. one per CPU core), one stream
gathers at a time and takes its share of the callers expected, so under steady load the streams
alternate: one computes while the callers of the other are on their round trip and decoding.
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
    """run(payloads) -> results, one per payload, called on batches of at most max_batch_size items,
    from `streams` threads; `running` says how many of them are inside run() right now.

    A single job larger than max_batch_size forms a batch on its own (run must accept it).
    """

    def __init__(
        self,
        run: Callable[[list[Any]], list[Any]],
        *,
        max_batch_size: int,
        max_delay_s: float,
        streams: int = 1,
        name: str = "batcher",
    ):
        self._run = run
        self.max_batch_size, self.max_delay_s, self.streams = max_batch_size, max_delay_s, streams
        self._cond = threading.Condition()
        self._gathering = threading.Lock()  # one stream gathers a batch at a time
        self._jobs: deque[_Job] = deque()
        self._announced = 0  # slots taken whose job is not queued yet
        self.running = 0  # streams inside run()
        self._closed = False
        self._threads = [threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True) for i in range(streams)]
        for thread in self._threads:
            thread.start()

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
        """Finish the queued jobs, then stop the threads."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    def _take(self, previous: int) -> list[_Job] | None:
        """The next batch for a stream whose previous batch held `previous` items (callers likely back)."""
        with self._gathering, self._cond:
            expected = min(self.max_batch_size, previous + self._queued())
            while not self._jobs and not self._closed:
                self._cond.wait()
            if not self._jobs:
                return None
            deadline = time.monotonic() + self.max_delay_s
            while self._queued() < self._target(expected) and (self._announced or self._queued() < expected):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            target = self._target(expected)
            batch = [self._jobs.popleft()]
            size = batch[0].size
            while self._jobs and size + self._jobs[0].size <= target:
                size += self._jobs[0].size
                batch.append(self._jobs.popleft())
            self.running += 1
            return batch

    def _queued(self) -> int:
        return sum(job.size for job in self._jobs)

    def _target(self, expected: int) -> int:
        """This stream's share of the items queued, announced or expected back, split over idle streams."""
        coming = max(expected, self._queued() + self._announced)
        return min(self.max_batch_size, max(1, -(-coming // (self.streams - self.running))))

    def _loop(self) -> None:
        previous = 0
        while (batch := self._take(previous)) is not None:
            previous = sum(job.size for job in batch)
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
            finally:
                with self._cond:
                    self.running -= 1
                    self._cond.notify_all()  # a gathering stream's share depends on how many are idle


class BudgetExhausted(Exception):
    """A PixelBudget.hold that waited its whole timeout."""


class PixelBudget:
    """At most `capacity` pixels held at once by the threads inside hold(): concurrent requests of large images
    take turns instead of each holding its decoded pixels at the same time (before it, 32 concurrent requests of
    two 6000x6000 PNGs, 373 KB each, took one worker to 12 GB). A holder asking for more than the capacity is
    given the whole budget, alone; smaller holders share it."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.used = 0
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, pixels: int, timeout: float) -> Iterator[None]:
        """Wait (at most timeout seconds, else BudgetExhausted) until `pixels` fit, hold them for the block."""
        pixels = min(pixels, self.capacity)
        with self._cond:
            if not self._cond.wait_for(lambda: self.used + pixels <= self.capacity, timeout):
                raise BudgetExhausted(f"{pixels} pixels did not fit in {timeout:g} s")
            self.used += pixels
        try:
            yield
        finally:
            with self._cond:
                self.used -= pixels
                self._cond.notify_all()
