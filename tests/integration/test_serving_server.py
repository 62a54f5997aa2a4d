"""The real launcher (container/bin/serve → gunicorn) as a subprocess on 127.0.0.1, driven over HTTP."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from serving_fixtures import CLASS_NAMES, REPO, running_server, wait_for_ping, write_artifact
from serving_requests import (
    MIB,
    bad_requests,
    flat_png,
    in_flight_request,
    instances,
    jpeg,
    malformed_http,
    padded_jpeg,
    raw_exchange,
    status_and_json,
)

from dogbreed.serving import front


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("opt_ml")
    write_artifact(base / "model")
    return base


def invoke(server, body: bytes, content_type: str = "image/jpeg", timeout: float = 30, **headers) -> requests.Response:
    return requests.post(
        f"{server.url}/invocations", data=body, headers={"Content-Type": content_type, **headers}, timeout=timeout
    )


def test_two_workers_survive_the_bad_request_corpus(base_dir, tmp_path):
    with running_server(base_dir, tmp_path / "server.log", SAGEMAKER_MODEL_SERVER_WORKERS="2") as server:
        started = time.monotonic()
        ping = wait_for_ping(server)
        assert ping.content == b""
        assert time.monotonic() - started < 30
        workers = server.worker_pids()
        assert len(workers) == 2
        assert "2 worker(s) x 1 torch threads" in server.log_text()

        good = invoke(server, jpeg())
        assert good.status_code == 200
        assert np.asarray(good.json()).shape == (1, len(CLASS_NAMES))

        for name, headers, body, status in bad_requests():
            response = requests.post(f"{server.url}/invocations", data=body, headers=headers, timeout=30)
            assert response.status_code == status, (name, response.text)
            assert response.json()["error"], name

        assert requests.get(f"{server.url}/ping", timeout=2).status_code == 200
        assert server.worker_pids() == workers
        assert invoke(server, jpeg()).json() == good.json()


def test_concurrent_large_images_take_turns_within_the_budget_and_never_delay_ping(base_dir, tmp_path):
    """16 requests at once, each two 6000x6000 PNGs in 70 KB: the worker decodes them in turn within its pixel
    budget (before it, 32 such requests took it to 12 GB), and nginx answers /ping without waiting for them."""
    import psutil

    body = instances(*[flat_png(6000, 6000)] * 2)
    with running_server(base_dir, tmp_path / "server.log") as server:
        wait_for_ping(server)
        (worker,) = (psutil.Process(pid) for pid in server.worker_pids())
        before, peak, pings, done = worker.memory_info().rss, [0], [], threading.Event()

        def watch() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], worker.memory_info().rss)
                started = time.monotonic()
                assert requests.get(f"{server.url}/ping", timeout=2).status_code == 200
                pings.append(time.monotonic() - started)
                time.sleep(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()
        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(lambda _: invoke(server, body, "application/json", timeout=120).status_code,
                                     range(16)))  # fmt: skip
        done.set()
        watcher.join()
    grown_mib = (peak[0] - before) / MIB
    print(f"16 requests of 2 x 36 MP: worker +{grown_mib:.0f} MiB at peak; /ping max {max(pings) * 1000:.0f} ms")
    assert statuses == [200] * 16
    assert grown_mib < 1500
    assert max(pings) < 0.5


def test_payload_limit_and_batch_over_http(base_dir, tmp_path):
    with running_server(base_dir, tmp_path / "server.log") as server:
        wait_for_ping(server)
        assert invoke(server, padded_jpeg(int(5.9 * MIB))).status_code == 200
        assert invoke(server, padded_jpeg(int(6.1 * MIB))).status_code == 413
        chunked = iter([padded_jpeg(int(6.1 * MIB))])  # no Content-Length: the body's real size counts
        response = requests.post(
            f"{server.url}/invocations", data=chunked, headers={"Content-Type": "image/jpeg"}, timeout=30
        )
        assert response.status_code == 413
        assert response.json()["error"]

        images = [jpeg(i, seed=i) for i in range(4)]
        batch = np.asarray(invoke(server, instances(*images), "application/json").json())
        singles = np.asarray([invoke(server, image).json()[0] for image in images])
        np.testing.assert_allclose(batch, singles, atol=1e-3)  # default precision auto: bf16 kernels per batch size
        files = [("image", (f"{i}.jpg", image, "image/jpeg")) for i, image in enumerate(images)]
        uploaded = requests.post(f"{server.url}/invocations", files=files, timeout=30)  # multipart/form-data
        np.testing.assert_allclose(uploaded.json(), singles, atol=1e-3)

        parameters = requests.get(f"{server.url}/execution-parameters", timeout=2).json()
        assert parameters == {"MaxConcurrentTransforms": 1, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 6}


def test_sigterm_answers_the_request_in_flight_then_exits(base_dir, tmp_path):
    body = jpeg()
    with running_server(base_dir, tmp_path / "server.log") as server:
        wait_for_ping(server)
        stopped_at = time.monotonic()
        response = in_flight_request("127.0.0.1", server.port, body, lambda: server.process.send_signal(signal.SIGTERM))
        assert response.startswith(b"HTTP/1.1 200"), response[:200]
        assert len(json.loads(response.split(b"\r\n\r\n", 1)[1])[0]) == len(CLASS_NAMES)
        server.process.wait(30)
        assert time.monotonic() - stopped_at < 30


def test_malformed_http_is_answered_in_json_by_the_front(base_dir, tmp_path):
    with running_server(base_dir, tmp_path / "server.log") as server:
        wait_for_ping(server)
        for case, request, status in malformed_http():
            code, body = status_and_json(raw_exchange("127.0.0.1", server.port, request))
            assert (code, case) == (status, case)
            assert body["error"], case
        assert invoke(server, jpeg()).status_code == 200


def test_missing_artifact_keeps_answering_503_with_the_reason(tmp_path):
    (tmp_path / "ml" / "model").mkdir(parents=True)
    with running_server(tmp_path / "ml", tmp_path / "server.log") as server:
        ping = wait_for_ping(server, statuses=(503,), body_has=b"model not loaded")
        assert "not found" in ping.json()["error"]
        assert invoke(server, jpeg()).status_code == 503
        assert "model_config.json not found" in server.log_text()
        assert server.process.poll() is None


def test_invalid_environment_exits_with_the_reason(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "container" / "bin" / "serve")],
        env={
            "PYTHONPATH": str(REPO / "container"),
            "SAGEMAKER_BASE_DIR": str(tmp_path),
            "SAGEMAKER_MODEL_SERVER_WORKERS": "many",
        },
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "SAGEMAKER_MODEL_SERVER_WORKERS='many' is not an integer" in result.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_a_killed_worker_never_stalls_ping(base_dir, tmp_path, workers):
    """The OOM killer ends a worker with SIGKILL; gunicorn starts a replacement, which loads the model. /ping must
    answer within SageMaker's 2 s all along: 503 while no worker holds the model, 200 while another one does."""
    log = tmp_path / "server.log"
    with running_server(base_dir, log, SAGEMAKER_MODEL_SERVER_WORKERS=str(workers)) as server:
        wait_for_ping(server)
        deadline = time.monotonic() + 60
        while not all_ready(server, server.worker_pids()):
            assert time.monotonic() < deadline, server.log_text()
            time.sleep(0.1)
        victim, *others = sorted(server.worker_pids())
        os.kill(victim, signal.SIGKILL)
        answers = []
        deadline = time.monotonic() + 60
        while not replaced(server, victim, others) or answers[-1] != 200:
            assert time.monotonic() < deadline, f"no replacement worker served: {answers}\n{server.log_text()}"
            answers.append(requests.get(f"{server.url}/ping", timeout=1.5).status_code)  # a stall raises
            time.sleep(0.05)
        assert set(answers) <= {200, 503}
        assert (503 in answers) == (workers == 1), answers
        assert invoke(server, jpeg()).status_code == 200


def replaced(server, victim: int, others: list[int]) -> bool:
    """Whether a worker started after the victim has said it is ready (gunicorn's post_worker_init: model loaded)."""
    new = server.worker_pids() - {victim, *others}
    return bool(new) and all_ready(server, new)


def all_ready(server, workers: set[int]) -> bool:
    return all(f"worker {pid} ready" in server.log_text() for pid in workers)


def test_stalled_uploads_are_capped_and_ping_still_answers(base_dir, tmp_path):
    """Each stalled upload keeps its body in an nginx temp file: past MAX_REQUESTS_IN_PROGRESS, 429 at once (400
    connections stalling near the end of 6 MB bodies held 2.2 GB of disk before)."""
    head = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 1000000\r\n\r\n"
    with running_server(base_dir, tmp_path / "server.log") as server, contextlib.ExitStack() as stalls:
        wait_for_ping(server)
        for _ in range(front.MAX_REQUESTS_IN_PROGRESS):
            conn = stalls.enter_context(socket.create_connection(("127.0.0.1", server.port), timeout=10))
            conn.sendall(head + bytes(600_000))  # most of the body, then nothing
        deadline = time.monotonic() + 10
        while (refused := invoke(server, jpeg())).status_code != 429:  # nginx counts each once it has its headers
            assert time.monotonic() < deadline, refused.text
        assert "too many requests in progress" in refused.json()["error"]
        assert requests.get(f"{server.url}/ping", timeout=2).status_code == 200
        stalls.close()
        deadline = time.monotonic() + 10
        while invoke(server, jpeg()).status_code != 200:
            assert time.monotonic() < deadline
