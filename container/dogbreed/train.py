"""SageMaker's training contract: env → hyperparameters → data → model → recipe → epochs → artifacts, one error
boundary."""

import argparse
import dataclasses
import errno
import logging
import math
import os
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DistributedSampler

from . import archives, data, quantize, recipes, reporting, selection
from .checkpoint import Best, Checkpoint, Checkpointer, StopFlag, interrupt_on_sigterm, signature, stop_on_sigterm
from .contract import metrics
from .contract.channels import PRETRAINED
from .contract.hyperparams import Hyperparameters
from .debugger import NullHook, create_hook, profile_dir, profiled_steps
from .distributed import ONE_PROCESS, Cluster, Local, cluster, is_master_host, local_processes
from .engine import Interrupted, Loop, make_loop
from .errors import UserError, describe
from .files import check_writable
from .hardware import choose_threads, malloc_in_use, set_torch_threads, usable_cpus
from .launcher import run_local_workers
from .model import (
    HeadConfig,
    build_model,
    cached_imagenet_weights_path,
    freeze,
    load_backbone,
    record_in_config,
    save_artifact,
)
from .presets import PreprocessConfig
from .recipes import Recipe
from .sm_env import Paths, TrainingEnv, paths_from_environ
from .supervisor import EXIT_INTERNAL_ERROR, EXIT_STOPPED, EXIT_USER_ERROR, configure_logging, report_failure

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """`train` takes no arguments (SageMaker passes none); --help lists the hyperparameters it reads."""
    parser = argparse.ArgumentParser(
        prog="train",
        description="SageMaker's training contract: /opt/ml/input (config, data channels) → /opt/ml/model.",
        epilog="Hyperparameters (input/config/hyperparameters.json, all strings):\n" + Hyperparameters.table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser.parse_args(argv)


def main(environ: Mapping[str, str] = os.environ, argv: Sequence[str] = ()) -> int:
    """Run one training job; the only place that turns failures into output/failure and an exit code."""
    parse_args(list(argv))
    configure_logging()
    paths = paths_from_environ(environ)
    try:
        with interrupt_on_sigterm():
            launch(environ)
    except Interrupted as exc:
        return report_failure(paths, _with_notes(f"training stopped by SIGTERM: {exc}", exc), EXIT_STOPPED)
    except UserError as exc:
        return report_failure(paths, _with_notes(str(exc), exc), EXIT_USER_ERROR)
    except Exception as exc:  # the error boundary
        log.error("training failed with:\n%s", traceback.format_exc())
        message, code = _unexpected(exc)
        return report_failure(paths, _with_notes(message, exc), code)
    _remove_stale_failure(paths)
    return 0


def _with_notes(message: str, exc: BaseException) -> str:
    """The failure text and what the job did about it (exc's notes, e.g. that the best epoch was delivered)."""
    return "; ".join([message, *getattr(exc, "__notes__", ())])


def _unexpected(exc: Exception) -> tuple[str, int]:
    """The failure text and exit code of an exception no layer handled. The host refusing a process or thread
    (EAGAIN) or memory (ENOMEM), e.g. threads=1024 with num_workers=64 on 2 cores, is the job's setting to change;
    anything else is our bug."""
    if isinstance(exc, OSError) and exc.errno in (errno.EAGAIN, errno.ENOMEM):
        return (
            f"the host refused the job another process, thread or memory ({describe(exc)}): lower num_workers (data "
            "loader processes per training process), threads (torch threads) or batch_size, or use a larger instance",
            EXIT_USER_ERROR,
        )
    return f"internal error in training ({type(exc).__name__}: {exc}); traceback in the job log", EXIT_INTERNAL_ERROR


def launch(environ: Mapping[str, str]) -> None:
    """Read and validate the job once; train in this process, or in processes_per_host local workers."""
    env = TrainingEnv.from_environ(environ)
    hps = Hyperparameters.from_strings(env.hyperparameters)
    log.info("hyperparameters: %s", hps.as_dict())
    log.info("heap allocator: %s", malloc_in_use())
    check_outputs(env)
    env = dataclasses.replace(env, channels=archives.unpack_channels(env.channels, env.paths.unpacked_dir))
    processes = local_processes(hps.processes_per_host, torch.cuda.device_count(), usable_cpus())
    if processes == 1:
        run(env, hps)
        return
    log.info("starting %d training processes per host: world size %d", processes, processes * len(env.hosts))
    run_local_workers(worker, (env, hps, processes), processes)


def worker(local_rank: int, env: TrainingEnv, hps: Hyperparameters, processes: int) -> None:
    """One of several training processes on this host (spawned); local ranks > 0 log warnings and errors only."""
    configure_logging(logging.INFO if local_rank == 0 else logging.WARNING)
    run(env, hps, Local(local_rank, processes))


def check_outputs(env: TrainingEnv) -> None:
    """Before any epoch: every directory this host will write must take a file (the master writes the model)."""
    paths = env.paths
    targets = {paths.output_dir: "the failure file", paths.output_data_dir: "training reports"}
    if is_master_host(env):
        targets.update({paths.model_dir: "the model", env.checkpoint_dir: "checkpoints"})
    for directory, what in targets.items():
        check_writable(directory, what)


@dataclass(frozen=True)
class Outcome:
    """What the master delivers: one metric row per epoch, the final metrics of the delivered (best) epoch, and the
    test confusion matrix (rows = true class; None without a test split or when untested)."""

    history: list[dict]
    final: dict
    confusion: torch.Tensor | None = None

    @property
    def cut_short(self) -> str | None:
        """Why the delivered model is not a finished job's (its metrics' "stopped" or "failed"), or None."""
        return self.final.get("stopped") or self.final.get("failed")


@dataclass
class Progress:
    """What the epochs of this job (earlier runs' included) have left so far: a stop or failure after one of them
    still delivers its best epoch."""

    history: list[dict]
    best: Best | None = None

    def outcome(
        self, select_by: str, tested: dict | None = None, confusion: torch.Tensor | None = None, **cut_short: str
    ) -> Outcome:
        """The best epoch's final metrics (its validation figures, the test split's on it when `tested`, why the
        job was cut short); logs the final metric line."""
        best = self.best
        values = {"valid_loss": best.row["valid_loss"], "valid_acc": best.row["valid_acc"], **(tested or {})}
        log.info(metrics.final_line(best.epoch, values))
        final = {"best_epoch": best.epoch, "select_by": select_by, "epochs": len(self.history), **cut_short}
        return Outcome(list(self.history), {**final, **values}, confusion)


STOPPED = "SIGTERM: the best epoch so far, untested; rerun the job to finish it"


def run(env: TrainingEnv, hps: Hyperparameters, local: Local = ONE_PROCESS) -> None:
    """The job, step by step; a stop or failure after an epoch still delivers the best epoch so far (salvage)."""
    with cluster(env, local) as node, stop_on_sigterm() as stop:
        torch.manual_seed(hps.seed)
        set_torch_threads(choose_threads(hps.threads, local.size))
        splits = data.load_splits(data.find_splits(env.channels), valid_fraction=hps.valid_fraction)
        check_same_data(node, splits)
        head = HeadConfig(len(splits.class_names), hps.hidden_units, hps.dropout)
        model = build_model(head)
        load_pretrained(model, env, hps)
        job = signature(splits.class_names, head, hps)
        checkpoints = Checkpointer(env.checkpoint_dir, job, model, freeze(model, hps.fine_tune), writes=node.is_master)
        resumed, best = node.broadcast(checkpoints.saved() if node.is_master else None)
        progress = Progress(list(resumed.history) if resumed else [], best)
        preprocess = PreprocessConfig(image_size=hps.image_size)
        delivery = Delivery(env.paths, model, head, splits, preprocess, hps, writes=node.is_master, stop=stop)
        should_stop = (lambda: node.any(stop())) if node.distributed else stop
        try:
            outcome = train(delivery, checkpoints, resumed, progress, env=env, node=node, should_stop=should_stop)
        except Exception as exc:
            delivery.salvage(checkpoints, progress, exc)
            raise
        if delivery.deliver(outcome).cut_short:
            raise Interrupted(
                f"stop requested while the int8 variant was made: the model, tested, delivered to "
                f"{env.paths.model_dir} without it; rerun the job to make it"
            )


def check_same_data(node: Cluster, splits: data.Splits) -> None:
    """Every process must hold the same dataset (each trains on its DistributedSampler share of it): hosts given
    different files (ShardedByS3Key) fell out of step in their first collective, with gloo's error or a crash."""
    held = node.gather((splits.class_names, len(splits.train), len(splits.valid)))
    if any(other != held[0] for other in held):
        shown = "; ".join(
            f"rank {rank}: {len(names)} classes, {train} training and {valid} validation images"
            for rank, (names, train, valid) in enumerate(held)
        )
        raise UserError(
            f"the hosts hold different data ({shown}): every host needs the whole dataset, so give the channels "
            "S3DistributionType FullyReplicated (the SDK's default), not ShardedByS3Key"
        )


def train(
    delivery: "Delivery",
    checkpoints: Checkpointer,
    resumed: Checkpoint | None,
    progress: Progress,
    *,
    env: TrainingEnv,
    node: Cluster,
    should_stop: Callable[[], bool],
) -> Outcome:
    """Choose the recipe, resume from the newest checkpoint, run the epochs, test the best epoch's model."""
    hps, model, class_names = delivery.hps, delivery.model.to(node.device), delivery.splits.class_names
    images = recipes.image_datasets(delivery.splits, delivery.preprocess, hps)
    recipe = recipes.choose(model, checkpoints.trained, images, hps=hps, node=node, should_stop=should_stop)
    if resumed is not None:
        checkpoints.restore(resumed.model)
    loop = make_loop(
        hps,
        recipe.module,
        recipe.trained,
        node,
        steps_per_epoch=len(recipe.train),
        should_stop=should_stop,
        optimizer_state=resumed.optimizer if resumed else None,
        epochs_done=resumed.epochs_done if resumed else 0,
    )
    hook = create_hook(env.debughook_config, recipe.module, loop.criterion)
    traces = profile_dir(env.paths.output_data_dir, hps.profile) if node.is_master else None
    epochs = Epochs(hps, recipe, loop, hook, checkpoints, class_names, traces, node, progress)
    try:
        epochs.fit(resumed.epochs_done if resumed else 0)
        return epochs.finish()
    finally:
        hook.close()


@dataclass(frozen=True)
class Delivery:
    """What the master delivers and where: the model artifact with its int8 variant (unless int8=false, or the job
    is cut short: SageMaker gives a stopped job 120 s) and the training reports."""

    paths: Paths
    model: nn.Module
    head: HeadConfig
    splits: data.Splits
    preprocess: PreprocessConfig
    hps: Hyperparameters
    writes: bool  # only the master writes model/ and output/data/
    stop: StopFlag  # this process's own: int8 is made by the master alone, no collective can ask the others

    def deliver(self, outcome: Outcome) -> Outcome:
        """Write the outcome (the master); returns it as delivered: stopped, when SIGTERM came while int8 was made."""
        if not self.writes:
            return outcome
        paths, splits = self.paths, self.splits
        save_artifact(
            paths.model_dir, self.model, class_names=splits.class_names, head=self.head, preprocess=self.preprocess,
            metrics=outcome.final,
        )  # fmt: skip
        outcome = self.int8(outcome)
        counts = Counter(splits.class_names[label] for _, label in splits.train.samples)
        reporting.write_reports(
            paths.output_data_dir, outcome.history, outcome.final, splits.class_names, outcome.confusion,
            train_counts=counts,
        )  # fmt: skip
        final = outcome.final
        log.info("model written to %s (epoch %d, by %s)", paths.model_dir, final["best_epoch"], final["select_by"])
        return outcome

    def int8(self, outcome: Outcome) -> Outcome:
        """The int8 variant beside the written artifact, or why there is none."""
        model_dir = self.paths.model_dir
        if outcome.cut_short or not self.hps.int8:
            quantize.save_int8(model_dir, None, {"passed": False, "skipped": _int8_skipped(outcome)})
            return outcome
        try:
            quantize.write_int8(
                model_dir, self.model, self.splits, self.preprocess, seed=self.hps.seed, should_stop=self.stop
            )
        except Interrupted:
            stopped = "SIGTERM while the int8 variant was made: tested, without int8; rerun the job to make it"
            outcome = dataclasses.replace(outcome, final={**outcome.final, "stopped": stopped})
            record_in_config(model_dir, "metrics", outcome.final)
        return outcome

    def salvage(self, checkpoints: Checkpointer, progress: Progress, exc: Exception) -> None:
        """After a stop or a failure (exc): the best epoch so far, untested, when there is one, its metrics saying
        "stopped" or "failed"; exc's notes say so. Its weights were copied when its epoch had ended and been
        validated, so the model is never half-trained; a failure to write it leaves exc the job's failure."""
        best = progress.best
        if best is None:
            return
        if not self.writes:
            exc.add_note(f"the best epoch's model so far (epoch {best.epoch}) delivered by the master (rank 0)")
            return
        checkpoints.restore(best.model)
        why = {"stopped": STOPPED} if isinstance(exc, Interrupted) else {"failed": f"{_failure(exc)}: untested"}
        try:
            self.deliver(progress.outcome(self.hps.select_by, **why))
        except Exception as failed:  # e.g. model/ on the full disk that failed the job
            log.exception("could not deliver the best epoch so far")
            exc.add_note(f"the best epoch so far (epoch {best.epoch}) could not be delivered ({failed})")
            return
        exc.add_note(
            f"the best epoch's model so far (epoch {best.epoch}) delivered to {self.paths.model_dir}, untested"
        )


def _int8_skipped(outcome: Outcome) -> str:
    if outcome.final.get("stopped"):
        return quantize.STOPPED
    if outcome.final.get("failed"):
        return "the job failed: fix the cause and rerun it to finish it"
    return "int8=false"


def _failure(exc: Exception) -> str:
    """A failure as the delivered model's metrics name it."""
    return str(exc) if isinstance(exc, UserError) else f"internal error ({type(exc).__name__}: {exc})"


@dataclass(frozen=True)
class Epochs:
    """The epochs of one process: train and validate each, keep the best, checkpoint, stop early or on SIGTERM.
    Every process validates with its own BatchNorm statistics, which differ slightly after the last training step:
    all take the master's figures, so all choose the same best epoch and stop after the same one."""

    hps: Hyperparameters
    recipe: Recipe
    loop: Loop
    hook: NullHook
    checkpoints: Checkpointer
    class_names: list[str]  # in label order
    profile_dir: Path | None  # profile=true: the master traces its first epoch here; None: no trace in this process
    node: Cluster
    progress: Progress  # the epochs so far, kept up to date for a stop or failure to deliver

    def fit(self, start: int) -> None:
        """Epochs after the `start` ones checkpointed; after each, the best model so far (when it changed) and a
        checkpoint; on SIGTERM, one more checkpoint, then Interrupted; stop early after `patience` epochs without
        improvement. Leaves the history and the best epoch in self.progress."""
        progress = self.progress
        for epoch in range(start + 1, self.hps.epochs + 1):
            if self.out_of_patience(progress.history):
                break
            try:
                row = self.epoch(epoch, self.profile_dir if epoch == start + 1 else None)
            except Interrupted:
                self.checkpoints.save(self.loop.optimizer, progress.history)
                done = len(progress.history)
                raise Interrupted(f"checkpoint saved after {done} complete epoch(s); rerun to resume") from None
            if epoch == start + 1:
                self.check_decoded()
            progress.history.append(row)
            if selection.better(row, progress.best.row if progress.best else None, self.hps.select_by):
                self.keep_best(row)
            self.checkpoints.save(self.loop.optimizer, progress.history)
        if progress.best is None:
            self.keep_best(progress.history[-1])

    def keep_best(self, row: dict) -> None:
        """This epoch is the one to deliver: kept in memory first (a failure to save it still delivers it)."""
        self.progress.best = self.checkpoints.best_of(row)
        self.checkpoints.keep(self.progress.best)

    def check_decoded(self) -> None:
        """After this process's first epoch, every training image was read once, by one process or another."""
        images = self.recipe.images
        data.check_decoded(images, self.class_names, self.loop.reduce(images.undecodable.int()))

    def out_of_patience(self, history: list[dict]) -> bool:
        hps = self.hps
        stale = selection.epochs_without_improvement(history, hps.select_by)
        if hps.patience and stale >= hps.patience:
            log.info(
                "early stop after epoch %d: %d epoch(s) without improvement (patience=%d)",
                len(history),
                stale,
                hps.patience,
            )
            return True
        return False

    def epoch(self, epoch: int, profile_dir: Path | None) -> dict:
        """Train one epoch (tracing a few steps into profile_dir, when given), validate, log the metric line."""
        train_loader, loop = self.recipe.train, self.loop
        if isinstance(train_loader.sampler, DistributedSampler):
            train_loader.sampler.set_epoch(epoch)
        started = time.monotonic()
        self.hook.train()
        with profiled_steps(profile_dir) as step:
            trained = loop.train_epoch(train_loader, step)
        self.hook.eval()
        valid = loop.evaluate(self.recipe.valid, "valid")
        values = {"train_loss": trained.loss, "train_acc": trained.acc}
        values.update(valid_loss=valid.loss, valid_acc=valid.acc)
        values = self.node.broadcast(values)  # one decision (best epoch, early stop) in every process: the master's
        log.info(metrics.epoch_line(epoch, values))
        check_finite(epoch, values, self.hps)
        return {"epoch": epoch, **values, "seconds": round(time.monotonic() - started, 3)}

    def finish(self) -> Outcome:
        """Load the best epoch's weights; its final metrics add the test split's on it, with the confusion matrix."""
        progress, select_by = self.progress, self.hps.select_by
        self.checkpoints.restore(progress.best.model)
        if self.recipe.test is None:
            return progress.outcome(select_by)
        self.hook.eval()
        confusion = torch.zeros(len(self.class_names), len(self.class_names), dtype=torch.int64)
        tested = self.loop.evaluate(self.recipe.test, "test", confusion)
        figures = self.node.broadcast({"test_loss": tested.loss, "test_acc": tested.acc})
        return progress.outcome(select_by, figures, confusion)


def check_finite(epoch: int, values: dict[str, float], hps: Hyperparameters) -> None:
    """A loss that is nan or inf means training diverged (its weights are, or soon will be, no numbers): UserError
    before the epoch is checkpointed or kept as the best, so no such model is delivered. Every process holds the
    same figures (the reduced training loss, the master's validation loss), so all stop together."""
    diverged = [f"{key}={value}" for key, value in values.items() if not math.isfinite(value)]
    if diverged:
        raise UserError(
            f"training diverged: the loss became non-finite at epoch {epoch} ({', '.join(diverged)}); lower lr "
            f"(now {hps.lr:g} with optimizer={hps.optimizer}), or check the training data"
        )


def _remove_stale_failure(paths: Paths) -> None:
    """A successful run (e.g. resumed after a spot interruption) leaves no failure file of an earlier one."""
    if paths.failure_file.exists():
        paths.failure_file.unlink()
        log.info("removed %s left by an earlier run of this job", paths.failure_file)


def pretrained_weights_file(env: TrainingEnv) -> Path:
    """The state_dict to start from: a file in the 'pretrained' channel (names starting with '.' skipped, as in data
    channels: macOS's ._resnet50.pth beside resnet50.pth), else the image's ImageNet cache."""
    channel = env.channels.get(PRETRAINED)
    if channel is not None:
        files = sorted(
            p
            for p in channel.rglob("*")
            if p.is_file() and p.suffix.lower() in WEIGHT_SUFFIXES and not p.name.startswith(".")
        )
        if len(files) != 1:
            raise UserError(
                f"the '{PRETRAINED}' channel at {channel} must hold exactly one ResNet50 state_dict file "
                f"({', '.join(WEIGHT_SUFFIXES)}); found {[str(f) for f in files] or 'none'}"
            )
        return files[0]
    cached = cached_imagenet_weights_path()
    if not cached.is_file():
        raise UserError(
            f"pretrained=true but no ResNet50 weights were found: not in the image's cache ({cached}; build the image "
            f"with PRETRAINED_WEIGHTS=imagenet) and no '{PRETRAINED}' channel. Add a '{PRETRAINED}' "
            "channel holding a ResNet50 state_dict (.pt/.pth), or set pretrained=false to train from random init"
        )
    return cached


def load_pretrained(model: nn.Module, env: TrainingEnv, hps: Hyperparameters) -> None:
    if hps.pretrained:
        load_backbone(model, pretrained_weights_file(env))
    else:
        log.info("pretrained=false: backbone starts from random initialisation")
