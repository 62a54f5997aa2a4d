"""The training contract inside the real image: artifacts, failure file, SIGTERM + resume, two hosts over DDP."""

import contextlib
import json
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from conftest import QUICK_HYPERPARAMETERS, docker_train, make_opt_ml, run
from loopback import free_port

from local_test.make_sample_data import make_dataset

SIGTERM_EXIT = 143  # dogbreed.train.EXIT_STOPPED: 128 + SIGTERM
HOSTS = ("algo-1", "algo-2")


@contextlib.contextmanager
def container_names(count: int) -> Iterator[list[str]]:
    """Unique container names, force-removed afterwards (a failed test leaves nothing running)."""
    names = [f"dogbreed-train-{uuid.uuid4().hex[:8]}" for _ in range(count)]
    try:
        yield names
    finally:
        for name in names:
            run(["docker", "rm", "-f", name], check=False)


def wait_for_file(pattern: str, directory: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not list(directory.glob(pattern)):
        assert time.monotonic() < deadline, f"{directory}/{pattern} never appeared"
        time.sleep(0.1)


def epochs_logged(log: str) -> list[int]:
    return [int(e) for e in re.findall(r"\bepoch=(\d+) train_loss=", log)]


def test_train_writes_model_and_reports(trained_opt_ml: Path) -> None:
    config = json.loads((trained_opt_ml / "model" / "model_config.json").read_text())
    assert config["architecture"] == "resnet50" and len(config["class_names"]) == 4
    assert (trained_opt_ml / "model" / "model.pt").stat().st_size > 1_000_000
    report = json.loads((trained_opt_ml / "output" / "data" / "metrics.json").read_text())
    run = report["final"]["epochs"]  # patience may stop before QUICK_HYPERPARAMETERS' epochs
    assert [row["epoch"] for row in report["epochs"]] == list(range(1, run + 1))
    assert config["metrics"]["best_epoch"] == min(report["epochs"], key=lambda row: row["valid_loss"])["epoch"]
    assert (trained_opt_ml / "output" / "data" / "confusion.png").read_bytes().startswith(b"\x89PNG")
    assert (trained_opt_ml / "output" / "data" / "loss.png").read_bytes().startswith(b"\x89PNG")
    assert not (trained_opt_ml / "output" / "failure").exists()


def test_run_without_a_command_prints_usage(image: str) -> None:
    result = run(["docker", "run", "--rm", image], check=False)
    assert result.returncode == 2
    assert "usage: docker run IMAGE train|serve" in result.stderr


def test_bad_hyperparameter_fails_naming_the_key(image: str, tmp_path: Path) -> None:
    opt_ml = make_opt_ml(tmp_path / "opt_ml", {**QUICK_HYPERPARAMETERS, "optimizer": "rmsprop"})
    result = docker_train(image, opt_ml, check=False)
    assert result.returncode != 0, result.stdout
    first_line = (opt_ml / "output" / "failure").read_text().splitlines()[0]
    assert "optimizer='rmsprop'" in first_line and "adam, adamw, sgd" in first_line
    assert not (opt_ml / "model").exists()


def test_dockers_default_shared_memory_trains_with_the_default_loader_settings(image: str, tmp_path: Path) -> None:
    """Docker's default /dev/shm (64 MB, as docker-compose and the SDK's local mode run the image) holds fewer
    batches than num_workers=2 keep in flight at the default image_size=224 and batch_size=32: a loader process
    that could not allocate one failed the job. Now the job uses as many loader processes as fit, and says so."""
    opt_ml = make_opt_ml(tmp_path / "opt_ml", {"epochs": "1", "pretrained": "false", "int8": "false"})
    make_dataset(opt_ml / "input" / "data" / "training", per_class=60, size=(320, 240))  # 6 batches of 32 to train
    result = docker_train(image, opt_ml, "--shm-size", "64m", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "num_workers=2 would keep" in result.stdout and "--shm-size" in result.stdout
    assert (opt_ml / "model" / "model.pt").is_file()


def test_docker_stop_checkpoints_and_rerun_resumes(image: str, tmp_path: Path) -> None:
    # Frozen backbone with augmentation: a full forward pass per image every epoch, no feature cache.
    slow_epochs = {"epochs": "6", "image_size": "32", "fine_tune": "head", "augment": "true", "patience": "0"}
    hyperparameters = {**QUICK_HYPERPARAMETERS, **slow_epochs}
    opt_ml, checkpoints = make_opt_ml(tmp_path / "opt_ml", hyperparameters), tmp_path / "checkpoints"
    checkpoints.mkdir()
    mount = ("-v", f"{checkpoints}:/opt/ml/checkpoints")  # as SageMaker's checkpoint sync: outlives the container
    with container_names(1) as (name,):
        detached = ["docker", "run", "-d", "--name", name, "--network", "host", *mount, "-v", f"{opt_ml}:/opt/ml"]
        run([*detached, image, "train"])
        wait_for_file("checkpoint-0001.pt", checkpoints)
        sent = time.monotonic()
        run(["docker", "stop", "--time", "120", name])  # SIGTERM to PID 1 (python), SIGKILL after 120 s
        stopped_after = time.monotonic() - sent
        exit_code = run(["docker", "inspect", "--format", "{{.State.ExitCode}}", name]).stdout.strip()
        log = run(["docker", "logs", name]).stdout

    assert exit_code == str(SIGTERM_EXIT), log
    assert stopped_after < 30 and "received signal 15" in log
    assert "training stopped by SIGTERM" in (opt_ml / "output" / "failure").read_text()
    newest = sorted(checkpoints.glob("checkpoint-*.pt"))[-1]
    done = torch.load(newest, weights_only=True)["epochs_done"]
    assert 1 <= done < 6
    stopped = json.loads((opt_ml / "model" / "model_config.json").read_text())["metrics"]  # what SageMaker uploads
    assert "stopped" in stopped and stopped["best_epoch"] <= done

    rerun = docker_train(image, opt_ml, *mount)
    assert f"resuming from /opt/ml/checkpoints/{newest.name} after {done} completed epoch(s)" in rerun.stdout
    assert epochs_logged(rerun.stdout) == list(range(done + 1, 7))
    assert "heap allocator: tcmalloc" in rerun.stdout  # bin/train re-ran itself with it (same PID: SIGTERM works)
    metrics = json.loads((opt_ml / "model" / "model_config.json").read_text())["metrics"]
    assert metrics["epochs"] == 6 and (checkpoints / "best.pt").is_file()
    assert f"final best_epoch={metrics['best_epoch']} " in rerun.stdout
    assert not (opt_ml / "output" / "failure").exists()  # the stopped run's failure is gone
    print(f"container stopped {stopped_after:.1f} s after SIGTERM with {done} epoch(s) checkpointed")


def test_two_host_containers_train_one_model(image: str, tmp_path: Path) -> None:
    hyperparameters = {**QUICK_HYPERPARAMETERS, "epochs": "2", "image_size": "32", "fine_tune": "last_stage"}
    listed = HOSTS[::-1]  # SageMaker does not promise an order; the master is the first after sorting
    trees = {host: make_opt_ml(tmp_path / host, hyperparameters, current_host=host, hosts=listed) for host in HOSTS}
    # SageMaker resolves algo-1 by name; here both containers share the host network and meet on loopback.
    rendezvous = ("-e", "MASTER_ADDR=127.0.0.1", "-e", f"MASTER_PORT={free_port()}", "-e", "GLOO_SOCKET_IFNAME=lo")
    with container_names(2) as names, ThreadPoolExecutor(2) as pool:
        runs = [
            pool.submit(docker_train, image, trees[host], "--name", name, *rendezvous)
            for host, name in zip(HOSTS, names, strict=True)
        ]
        logs = dict(zip(HOSTS, (job.result().stdout for job in runs), strict=True))

    for rank, host in enumerate(HOSTS):
        assert f"as rank {rank} of 2" in logs[host]
    assert epochs_logged(logs["algo-1"]) == [1, 2] and epochs_logged(logs["algo-2"]) == [1, 2]
    assert (trees["algo-1"] / "model" / "model.pt").is_file()
    assert list((trees["algo-1"] / "checkpoints").glob("checkpoint-*.pt"))
    assert not (trees["algo-2"] / "model").exists() and not (trees["algo-2"] / "checkpoints").exists()


def _one_class(opt_ml: Path) -> None:
    for split in (opt_ml / "input" / "data" / "training").iterdir():
        for extra in sorted(split.iterdir())[1:]:
            shutil.rmtree(extra)


def _empty_class(opt_ml: Path) -> None:
    for image in (opt_ml / "input" / "data" / "training" / "train" / "002.Afghan_hound").iterdir():
        image.unlink()


def _config_not_an_object(opt_ml: Path) -> None:
    (opt_ml / "input" / "config" / "hyperparameters.json").write_text('["epochs", "3"]')


def _typo(opt_ml: Path) -> None:
    (opt_ml / "input" / "config" / "hyperparameters.json").write_text(json.dumps({"epoch": "3", "image_size": "32"}))


FAIL_FAST = {
    "one class": (_one_class, "the train split at /opt/ml/input/data/training/train has 1 class folder(s)"),
    "class without images": (_empty_class, "1 class folder(s) in /opt/ml/input/data/training/train hold no readable"),
    "config not an object": (_config_not_an_object, "/opt/ml/input/config/hyperparameters.json must hold a JSON"),
    "unknown hyperparameter": (_typo, "unknown hyperparameter epoch='3': did you mean epochs?"),
}


@pytest.mark.parametrize("case", FAIL_FAST)
def test_bad_setup_fails_before_any_epoch(image: str, tmp_path: Path, case: str) -> None:
    break_it, first_line = FAIL_FAST[case]
    opt_ml = make_opt_ml(tmp_path / "opt_ml", QUICK_HYPERPARAMETERS)
    break_it(opt_ml)
    result = docker_train(image, opt_ml, check=False)
    assert result.returncode == 1, result.stdout
    assert (opt_ml / "output" / "failure").read_text().splitlines()[0].startswith(first_line)
    assert not epochs_logged(result.stdout) and "internal error" not in result.stdout
    assert not (opt_ml / "model" / "model.pt").exists()


def test_read_only_model_dir_fails_before_any_epoch(image: str, tmp_path: Path) -> None:
    opt_ml, model = make_opt_ml(tmp_path / "opt_ml", QUICK_HYPERPARAMETERS), tmp_path / "model"
    model.mkdir()
    result = docker_train(image, opt_ml, "-v", f"{model}:/opt/ml/model:ro", check=False)
    assert result.returncode == 1, result.stdout
    assert (opt_ml / "output" / "failure").read_text().splitlines()[0] == (
        "cannot write the model to /opt/ml/model: read-only file system (EROFS); mount it read-write"
    )
    assert not epochs_logged(result.stdout)


def test_read_only_output_dir_logs_why_and_exits_non_zero(image: str, tmp_path: Path) -> None:
    opt_ml, output = make_opt_ml(tmp_path / "opt_ml", QUICK_HYPERPARAMETERS), tmp_path / "output"
    output.mkdir()
    result = docker_train(image, opt_ml, "-v", f"{output}:/opt/ml/output:ro", check=False)
    assert result.returncode == 1, result.stdout
    assert "training failed: cannot write the failure file to /opt/ml/output: read-only file system" in result.stdout
    assert "cannot write /opt/ml/output/failure (read-only file system (EROFS))" in result.stdout
    assert not epochs_logged(result.stdout) and not list(output.iterdir())


def test_full_model_dir_fails_naming_it_and_the_cause(image: str, tmp_path: Path) -> None:
    one_epoch = {**QUICK_HYPERPARAMETERS, "epochs": "1", "image_size": "32", "fine_tune": "head"}
    opt_ml = make_opt_ml(tmp_path / "opt_ml", one_epoch)
    tiny = "type=tmpfs,destination=/opt/ml/model,tmpfs-size=1m"  # ResNet50's weights need ~95 MB
    result = docker_train(image, opt_ml, "--mount", tiny, check=False)
    assert result.returncode == 1, result.stdout
    assert (opt_ml / "output" / "failure").read_text().splitlines()[0] == (
        "cannot write the model to /opt/ml/model: no space left on device (ENOSPC); "
        "free space or give the job a larger volume"
    )
    assert "Traceback" not in result.stdout + result.stderr and epochs_logged(result.stdout) == [1]


def test_out_of_memory_is_reported_with_the_settings_to_lower(image: str, tmp_path: Path) -> None:
    """The kernel kills the job with SIGKILL, which no handler sees: `train`'s first process reports it."""
    greedy = {**QUICK_HYPERPARAMETERS, "batch_size": "256", "image_size": "224", "fine_tune": "all"}
    opt_ml = make_opt_ml(tmp_path / "opt_ml", greedy)
    result = docker_train(image, opt_ml, "--memory", "1500m", "--memory-swap", "1500m", check=False)
    assert result.returncode == 137, result.stdout
    failure = (opt_ml / "output" / "failure").read_text()
    assert failure.startswith("out of memory: the kernel killed a training process (the container has 1.5 GiB")
    assert "lower batch_size" in failure and not epochs_logged(result.stdout)


def test_read_only_root_without_a_tmpfs_says_what_to_mount(image: str, tmp_path: Path) -> None:
    opt_ml = make_opt_ml(tmp_path / "opt_ml", QUICK_HYPERPARAMETERS)
    result = docker_train(image, opt_ml, "--read-only", check=False)
    assert result.returncode == 1, result.stdout
    assert "mount one, e.g. docker run --tmpfs /tmp" in (opt_ml / "output" / "failure").read_text()
    assert "Traceback" not in result.stdout + result.stderr
