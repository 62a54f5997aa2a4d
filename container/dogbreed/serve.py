"""`serve`: SageMaker's hosting contract: nginx on the port in front of gunicorn, each worker one model + batcher.

`serve` supervises two processes: nginx (dogbreed.serving.front), which holds client connections and hands
complete requests to gunicorn on a Unix socket, and the model server (`python -m dogbreed.serve RUN_DIR`:
gunicorn's master, whose workers each load the model). If either exits, the other is stopped and `serve`
exits non-zero, so SageMaker replaces the container instead of keeping half a server.

The environment variables it reads: `serve --help` (declared in dogbreed.sm_env.ServingEnv).

Workers load the model before they accept a connection (until then nginx answers 503). If it cannot be
loaded the server still runs, logs the reason, and answers /ping and /invocations with 503 {"error": reason}.
SIGTERM stops it gracefully: nginx first (requests in flight are read, answered and the connections closed,
within front.SHUTDOWN_TIMEOUT_S), then gunicorn; SageMaker kills after 30 s.
"""

import argparse
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gunicorn.app.base import BaseApplication

from . import hardware
from .errors import ArtifactError, UserError, no_temp_dir
from .serving import front
from .sm_env import ServingEnv

log = logging.getLogger("dogbreed.serve")

CORES_PER_WORKER = 4  # beyond ~4 intra-op threads a batched ResNet50 forward scales worse than 2 workers
WORKER_MEMORY_BYTES = 2 * 1024**3  # model + batch activations + decode buffers, with headroom
GRACEFUL_TIMEOUT_S = 20
LOG_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class ServerPlan:
    workers: int
    torch_threads: int  # per worker; workers x torch_threads <= cores avoids oversubscription
    streams: int  # per worker: batches computed at the same time, sharing its torch threads
    http_threads: int  # per worker; concurrent requests that can share a batch


def plan_server(env: ServingEnv, host: hardware.Machine) -> ServerPlan:
    """Size the server for the host: never one model copy per vCPU, never more compute threads than cores."""
    if env.workers:
        workers = env.workers
        if workers * WORKER_MEMORY_BYTES > host.memory_bytes:
            log.warning(
                "SAGEMAKER_MODEL_SERVER_WORKERS=%d: %d workers x %d GiB exceed the %.1f GiB of memory here: expect "
                "workers to be killed when it runs out (%d fit)",
                workers, workers, WORKER_MEMORY_BYTES // 1024**3, host.memory_bytes / 1024**3,
                max(1, host.memory_bytes // WORKER_MEMORY_BYTES),
            )  # fmt: skip
    elif host.gpus:
        workers = 1  # one process feeds the GPU; batching keeps it busy
    else:
        workers = max(1, min(host.cpus // CORES_PER_WORKER, host.memory_bytes // WORKER_MEMORY_BYTES))
    torch_threads = hardware.choose_threads(env.torch_threads, workers, host.cpus)
    if workers * torch_threads > host.cpus:
        log.warning(
            "%d workers x %d torch threads exceed %d cores: expect oversubscription (set DOGBREED_TORCH_THREADS)",
            workers, torch_threads, host.cpus,
        )  # fmt: skip
    # On CPU, one single-thread stream per core outruns one stream using every core (~20 % on 2 cores:
    # no synchronisation inside a pass, and one stream computes while the other's callers come back);
    # a lone request still gets all the threads.
    streams = env.streams or (1 if host.gpus else torch_threads)
    http_threads = env.http_threads or max(4, 2 * env.max_batch_size)
    return ServerPlan(workers=workers, torch_threads=torch_threads, streams=streams, http_threads=http_threads)


def gunicorn_options(env: ServingEnv, plan: ServerPlan, run_dir: Path) -> dict:
    return {
        # Only nginx connects, and it enforces the HTTP limits: gunicorn's are lifted, or a request nginx accepts
        # could get gunicorn's HTML error page.
        "bind": f"unix:{front.socket_path(run_dir)}",
        "limit_request_line": 0,
        "limit_request_fields": 32768,
        "limit_request_field_size": 0,
        "workers": plan.workers,
        "worker_class": "gthread",  # threads per worker, so concurrent requests can share a batch
        "threads": plan.http_threads,
        "timeout": env.timeout,  # gthread: worker heartbeat; request deadlines are the predictor's
        "graceful_timeout": GRACEFUL_TIMEOUT_S,
        "keepalive": front.UPSTREAM_KEEPALIVE_S,
        "preload_app": False,  # each worker loads its own model after fork (torch is not fork-safe)
        "worker_tmp_dir": "/dev/shm" if os.path.isdir("/dev/shm") else None,  # heartbeats off overlayfs
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "dogbreed-serve",
        "post_worker_init": lambda worker: _worker_ready(worker.pid, run_dir),
        "child_exit": lambda _server, worker: _worker_ended(worker.pid, run_dir),
    }


def _worker_ready(pid: int, run_dir: Path) -> None:
    log.info("worker %d ready", pid)
    _vouch(front.ready_marker(run_dir), pid)


def _worker_ended(pid: int, run_dir: Path) -> None:
    """In the master, whatever ended the worker (the OOM killer, a crash): while no other worker is ready, nginx
    answers 503 at once; it would otherwise pass /ping to a socket no worker accepts on until the replacement has
    loaded the model (seconds: SageMaker's ping gives up after 2)."""
    for marker in (front.ready_marker(run_dir), front.loaded_marker(run_dir)):
        _withdraw(marker, pid)


def _vouch(marker: Path, pid: int) -> None:
    """A worker vouches for the state nginx tests: its own marker first, then the shared one."""
    marker.with_name(f"{marker.name}.{pid}").touch()
    marker.touch()


def _withdraw(marker: Path, pid: int) -> None:
    """An ended worker's vouching is withdrawn; the shared marker goes when no other worker vouches. A worker that
    vouches meanwhile (its marker, then the shared one) finds the shared one gone, or sees it put back."""
    marker.with_name(f"{marker.name}.{pid}").unlink(missing_ok=True)
    if not _vouched(marker):
        marker.unlink(missing_ok=True)
        if _vouched(marker):
            marker.touch()


def _vouched(marker: Path) -> bool:
    return any(marker.parent.glob(f"{marker.name}.*"))


def load_wsgi_app(env: ServingEnv, plan: ServerPlan, run_dir: Path):
    """Runs in each worker before it accepts traffic: the model (and front.loaded_marker), or a 503 app that says
    why not."""
    from .serving.app import create_app

    try:
        from .serving.predictor import Predictor, PredictorConfig

        config = PredictorConfig.from_env(env, torch_threads=plan.torch_threads, streams=plan.streams)
        app = create_app(Predictor.load(env.model_dir, config), env)
        _vouch(front.loaded_marker(run_dir), os.getpid())
        return app
    except ArtifactError as exc:
        log.error("cannot serve: %s", exc)
        return create_app(None, env, unavailable_reason=str(exc))
    except Exception as exc:  # a bug or a resource problem: keep the traceback for the operator
        log.exception("cannot serve: loading the model from %s failed", env.model_dir)
        return create_app(None, env, unavailable_reason=f"loading the model failed: {exc!r}")


def _import_model_stack() -> None:
    """Import torch & co. once in the master: forked workers share the modules and boot in ~1 s.

    Only imports: no tensor work happens before fork, so no OpenMP pool is inherited.
    """
    started = time.perf_counter()
    import dogbreed.serving.predictor  # noqa: F401

    log.info("model stack imported in %.1f s", time.perf_counter() - started)


class GunicornServer(BaseApplication):
    """gunicorn as a library: options from the plan, the WSGI app built inside each worker."""

    def __init__(self, options: dict, load: Callable[[], object]):
        self._options, self._load = options, load
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self):
        return self._load()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """`serve` takes no arguments (SageMaker passes none); --help lists the environment variables it reads."""
    parser = argparse.ArgumentParser(
        prog="serve",
        description=__doc__.split("\n\n")[0],
        epilog="Environment (unset: the default):\n" + ServingEnv.variables_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """`serve`: validate the environment, then run nginx and the model server until SIGTERM or either fails."""
    parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    try:
        env = ServingEnv.from_environ()
        run_tmp = _run_tmp_dir()
    except UserError as exc:
        log.error("cannot start the model server: %s", exc)
        return 1
    with run_tmp as tmp:
        run_dir = Path(tmp)
        run_dir.chmod(0o755)  # nginx's workers run unprivileged and must reach the socket
        nginx_conf = run_dir / "nginx.conf"
        nginx_conf.write_text(front.config(front.FrontConfig(env.port, run_dir, env.max_payload_bytes, env.timeout)))
        model_env, malloc = hardware.malloc_env(env.malloc)
        log.info("the model server allocates with %s", malloc)
        return supervise(
            [
                Child("nginx", front.command(nginx_conf), signal.SIGQUIT),  # graceful: finish requests, then exit
                Child(
                    "model server", [sys.executable, "-m", "dogbreed.serve", str(run_dir)], signal.SIGTERM, model_env
                ),
            ]
        )


def _run_tmp_dir() -> tempfile.TemporaryDirectory:
    """The directory for nginx.conf, the socket and the markers; UserError when there is no writable one (a
    read-only root file system without a tmpfs)."""
    try:
        return tempfile.TemporaryDirectory(prefix="dogbreed-serve-")
    except OSError as exc:
        raise no_temp_dir(exc) from exc


@dataclass
class Child:
    name: str
    command: list[str]
    stop_signal: int
    env: dict[str, str] | None = None  # None: this process's
    process: subprocess.Popen | None = None


def supervise(children: list[Child]) -> int:
    """Start the children; on SIGTERM/SIGINT or when one exits, stop the rest in list order. 0 only after a stop."""
    stopping = False

    def on_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            log.info("%s: stopping gracefully", signal.Signals(signum).name)
            _signal(children[0])  # the front first: it still needs the model server for requests in flight

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    for child in children:
        child.process = subprocess.Popen(child.command, env=child.env)
    while all(child.process.poll() is None for child in children):
        time.sleep(0.1)
    if not stopping:
        ended = next(child for child in children if child.process.poll() is not None)
        log.error("%s exited with code %s: stopping the server", ended.name, ended.process.returncode)
    for child in children:
        _signal(child)
        try:
            child.process.wait(GRACEFUL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.error("%s did not stop within %d s: killing it", child.name, GRACEFUL_TIMEOUT_S)
            child.process.kill()
            child.process.wait()
    return 0 if stopping and all(child.process.returncode == 0 for child in children) else 1


def _signal(child: Child) -> None:
    if child.process is not None and child.process.poll() is None:
        child.process.send_signal(child.stop_signal)


def model_server(run_dir: Path) -> int:
    """gunicorn's master on the Unix socket in run_dir that nginx forwards to (main validated the environment);
    the one place the server is planned for this host."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    env = ServingEnv.from_environ()
    host = hardware.describe()
    plan = plan_server(env, host)
    log.info(
        "serving %s on port %d: %d worker(s) x %d torch threads in %d stream(s), %d request threads each "
        "(%d cores, %.1f GiB)",
        env.model_dir, env.port, plan.workers, plan.torch_threads, plan.streams, plan.http_threads, host.cpus,
        host.memory_bytes / 1024**3,
    )  # fmt: skip
    _import_model_stack()
    GunicornServer(gunicorn_options(env, plan, run_dir), lambda: load_wsgi_app(env, plan, run_dir)).run()
    return 0


if __name__ == "__main__":
    sys.exit(model_server(Path(sys.argv[1])))
