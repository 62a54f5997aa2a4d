"""The dynamic batcher: concurrent callers share batches, a lone caller never waits, errors reach callers; the
decode budget: concurrent holders never exceed it."""

import threading
import time

import pytest

from dogbreed.serving.batching import BudgetExhausted, DynamicBatcher, PixelBudget


def recording_batcher(max_batch_size=8, max_delay_s=0.2, fail=False):
    batches = []

    def run(payloads):
        batches.append(list(payloads))
        if fail:
            raise ValueError("model broke")
        return [p * 10 for p in payloads]

    return DynamicBatcher(run, max_batch_size=max_batch_size, max_delay_s=max_delay_s), batches


def call(batcher, value, prepare_s=0.0):
    with batcher.slot() as slot:
        time.sleep(prepare_s)  # e.g. decoding images in the caller's thread
        future = slot.submit(value, 1)
    return future.result(5)


def steady_load(batcher, callers, rounds, *, round_trip_s):
    """`callers` threads each calling `rounds` times, after a round trip (differing per caller) the batcher
    cannot see; returns {(caller, round): result} for payloads caller * 100 + round."""
    results = {}

    def client(i):
        for r in range(rounds):
            time.sleep(round_trip_s * (1 + i % 3))
            results[(i, r)] = call(batcher, i * 100 + r)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_lone_caller_does_not_wait_for_the_delay():
    batcher, batches = recording_batcher(max_delay_s=2.0)
    started = time.monotonic()
    assert call(batcher, 3) == 30
    assert time.monotonic() - started < 0.5
    assert batches == [[3]]
    batcher.close()


def test_concurrent_callers_share_batches_and_get_their_own_results():
    batcher, batches = recording_batcher(max_batch_size=8, max_delay_s=0.5)
    results = {}
    threads = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, call(batcher, i, prepare_s=0.05))) for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    batcher.close()
    assert results == {i: i * 10 for i in range(8)}
    assert len(batches) < 8
    assert all(len(batch) <= 8 for batch in batches)


def test_steady_callers_with_a_round_trip_are_gathered_into_full_batches():
    """Callers that come back a few ms after their answer (an HTTP round trip the batcher cannot see)
    are waited for, instead of alternating a partial batch with the rest."""
    callers, rounds = 6, 8
    batches = []

    def run(payloads):
        batches.append(len(payloads))
        time.sleep(0.03)  # the forward pass
        return payloads

    batcher = DynamicBatcher(run, max_batch_size=callers, max_delay_s=0.2)
    steady_load(batcher, callers, rounds, round_trip_s=0.005)
    batcher.close()
    assert sum(batches) == callers * rounds
    assert len(batches) <= rounds + 2, batches  # alternating partial batches would take ~2 x rounds


def test_two_streams_compute_at_once_under_load_and_a_lone_caller_still_never_waits():
    callers, rounds = 8, 6
    running, overlap, sizes = [0], [0], []
    lock = threading.Lock()

    def run(payloads):
        with lock:
            running[0] += 1
            overlap[0] = max(overlap[0], running[0])
            sizes.append(len(payloads))
        time.sleep(0.03)
        with lock:
            running[0] -= 1
        return [p * 10 for p in payloads]

    batcher = DynamicBatcher(run, max_batch_size=16, max_delay_s=0.2, streams=2)
    started = time.monotonic()
    assert call(batcher, 5) == 50  # alone: no waiting for the delay or for the other stream
    assert time.monotonic() - started < 0.15
    results = steady_load(batcher, callers, rounds, round_trip_s=0.003)
    batcher.close()
    assert results == {(i, r): (i * 100 + r) * 10 for i in range(callers) for r in range(rounds)}
    assert overlap[0] == 2  # both streams computed at the same time
    assert max(sizes) < callers, sizes  # the load is shared out, not gathered into one batch


def test_batches_respect_max_size_and_oversized_jobs_run_alone():
    batcher, batches = recording_batcher(max_batch_size=2, max_delay_s=0.0)
    with batcher.slot() as a, batcher.slot() as b, batcher.slot() as c:
        futures = [a.submit(1, 5), b.submit(2, 1), c.submit(3, 1)]
    assert [f.result(5) for f in futures] == [10, 20, 30]
    batcher.close()
    assert [1] in batches  # size 5 > max 2: alone
    assert all(len(batch) <= 2 for batch in batches if batch != [1])


def test_errors_reach_every_caller_of_the_batch_and_the_thread_survives():
    batcher, _ = recording_batcher(fail=True)
    with pytest.raises(ValueError, match="model broke"):
        call(batcher, 1)
    with pytest.raises(ValueError, match="model broke"):
        call(batcher, 2)
    batcher.close()


def test_a_caller_that_fails_before_submitting_releases_its_slot():
    batcher, _ = recording_batcher(max_delay_s=5.0)
    with pytest.raises(RuntimeError), batcher.slot():
        raise RuntimeError("bad image")
    started = time.monotonic()
    assert call(batcher, 4) == 40  # nobody announced: no waiting for the abandoned slot
    assert time.monotonic() - started < 1.0
    batcher.close()


def test_pixel_budget_holders_never_exceed_it_and_small_ones_share_it():
    budget, peak, lock = PixelBudget(100), [0], threading.Lock()

    def holder(pixels):
        with budget.hold(pixels, timeout=5):
            with lock:
                peak[0] = max(peak[0], budget.used)
            time.sleep(0.02)

    sizes = [60, 60, 60, 30, 30, 30, 10, 10, 150]  # 150: more than the budget, given all of it, alone
    threads = [threading.Thread(target=holder, args=(size,)) for size in sizes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak[0] == 100  # full, and never over
    assert budget.used == 0


def test_pixel_budget_wait_ends_at_its_timeout_and_a_failed_holder_releases():
    budget = PixelBudget(100)
    with budget.hold(80, timeout=1), pytest.raises(BudgetExhausted), budget.hold(30, timeout=0.05):
        pass
    with pytest.raises(ValueError), budget.hold(100, timeout=1):
        raise ValueError("decode failed")
    with budget.hold(100, timeout=0.05):
        assert budget.used == 100
