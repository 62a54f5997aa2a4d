"""Issue 11 through the real image (4 GiB memory limit, default settings): hostile bodies, malformed HTTP and
slow clients leave the workers alive, memory bounded, /ping answering and good requests right."""

import statistics
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from conftest import run, serving, wait_for_ping
from serving_requests import (
    SlowClients,
    bad_requests,
    cut_short,
    jpeg,
    malformed_http,
    raw_exchange,
    status_and_json,
)
from test_serve_container import invoke, worker_pids

MEMORY_LIMIT = "4g"


@pytest.fixture(scope="module")
def endpoint(image: str, trained_opt_ml) -> Iterator[tuple[str, str]]:
    with serving(image, trained_opt_ml / "model", docker_args=("--memory", MEMORY_LIMIT)) as (url, name):
        wait_for_ping(url, timeout=120)
        yield url, name


def memory_mib(name: str) -> float:
    """The container's memory use as `docker stats` reports it (cgroup usage minus page cache)."""
    usage = run(["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", name]).stdout.split("/")[0].strip()
    value, unit = float(usage[:-3]), usage[-3:]
    return value * {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024}[unit]


def test_hostile_bodies_answer_4xx_json_workers_live_memory_bounded(endpoint: tuple[str, str]) -> None:
    url, name = endpoint
    good = invoke(url, jpeg()).json()
    workers, before = worker_pids(name), memory_mib(name)
    for _ in range(3):  # repeated: a leak would grow with every round
        for case, headers, body, status in bad_requests():
            started = time.monotonic()
            response = requests.post(f"{url}/invocations", data=body, headers=headers, timeout=60)
            assert (response.status_code, case) == (status, case), response.text
            assert response.json()["error"], case
            assert time.monotonic() - started < 5, f"{case} took {time.monotonic() - started:.1f} s"
    after = memory_mib(name)
    print(f"memory: {before:.0f} MiB before the corpus x3, {after:.0f} MiB after")
    assert after - before < 300
    assert worker_pids(name) == workers
    assert invoke(url, jpeg()).json() == good


def test_malformed_http_is_answered_in_json_by_the_front(endpoint: tuple[str, str]) -> None:
    url, name = endpoint
    host, port = "127.0.0.1", int(url.rsplit(":", 1)[1])
    workers = worker_pids(name)
    for case, request, status in malformed_http():
        answer = raw_exchange(host, port, request)
        assert answer, f"{case}: no answer"
        code, body = status_and_json(answer)
        assert (code, case) == (status, case), answer[:300]
        assert body["error"], case
    truncated = b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc"
    assert not cut_short(host, port, truncated).startswith(b"HTTP/1.1 5")  # nginx closes; never a 500
    assert worker_pids(name) == workers
    assert invoke(url, jpeg()).status_code == 200


def test_ping_answers_within_a_second_while_slow_clients_hold_connections(endpoint: tuple[str, str]) -> None:
    url, name = endpoint
    port, workers = int(url.rsplit(":", 1)[1]), worker_pids(name)
    latencies: list[float] = []
    served: list[int] = []

    def good_requests(stop: threading.Event) -> None:
        while not stop.is_set():
            served.append(invoke(url, jpeg()).status_code)

    with SlowClients("127.0.0.1", port, count=48, interval=0.25) as slow:
        stop = threading.Event()
        client = threading.Thread(target=good_requests, args=(stop,))
        client.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            started = time.monotonic()
            assert requests.get(f"{url}/ping", timeout=5).status_code == 200
            latencies.append(time.monotonic() - started)
            time.sleep(0.1)
        stop.set()
        client.join()
        held = len(slow.conns)
    median_ms, max_ms = statistics.median(latencies) * 1000, max(latencies) * 1000
    print(f"/ping with {held} slow connections held: {len(latencies)} pings, median {median_ms:.0f} ms, ", end="")
    print(f"max {max_ms:.0f} ms; {len(served)} requests served")
    assert held >= 40
    assert worker_pids(name) == workers
    assert max(latencies) < 1.0
    assert served and set(served) == {200}
