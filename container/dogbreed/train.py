"""SageMaker's training contract: env → hyperparameters → data → model → loop → artifacts, one error boundary."""

import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

from . import data, quantize, reporting, selection
from .checkpoint import Best, Checkpoint, load_best, load_latest, save_best, save_checkpoint, stop_on_sigterm
from .contract import metrics
from .contract.channels import PRETRAINED
from .contract.hyperparams import Hyperparameters
from .debugger import NullHook, create_hook, profiled_steps
from .distributed import ONE_PROCESS, Cluster, Local, cluster, local_processes
from .engine import Interrupted, Loop, SmoothedCrossEntropyLoss, cosine_with_warmup, extract_features
from .errors import UserError
from .files import check_writable, describe
from .hardware import choose_threads, set_torch_threads, usable_cpus
from .launcher import run_local_workers
from .model import HeadConfig, build_model, cached_imagenet_weights_path, load_backbone, save_artifact
from .presets import ClassificationPresetEval, ClassificationPresetTrain, PreprocessConfig
from .sm_env import Paths, TrainingEnv, paths_from_environ

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
EXIT_USER_ERROR, EXIT_INTERNAL_ERROR, EXIT_STOPPED = 1, 2, 143  # 143 = 128 + SIGTERM


def main(environ: Mapping[str, str] = os.environ) -> int:
    """Run one training job; the only place that turns failures into output/failure and an exit code."""
    configure_logging()
    paths = paths_from_environ(environ)
    try:
        launch(environ)
    except Interrupted as exc:
        return _fail(paths, f"training stopped by SIGTERM: {exc}", EXIT_STOPPED)
    except UserError as exc:
        return _fail(paths, str(exc), EXIT_USER_ERROR)
    except Exception as exc:  # the error boundary: anything else is our bug
        log.error("internal error:\n%s", traceback.format_exc())
        cause = f"{type(exc).__name__}: {exc}"
        return _fail(paths, f"internal error in training ({cause}); traceback in the job log", EXIT_INTERNAL_ERROR)
    _remove_stale_failure(paths)
    return 0


def launch(environ: Mapping[str, str]) -> None:
    """Read and validate the job once; train in this process, or in processes_per_host local workers."""
    env = TrainingEnv.from_environ(environ)
    hps = Hyperparameters.from_strings(env.hyperparameters)
    log.info("hyperparameters: %s", hps.as_dict())
    check_outputs(env)
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
    if env.is_master:
        targets.update({paths.model_dir: "the model", checkpoint_dir(env): "checkpoints"})
    for directory, what in targets.items():
        check_writable(directory, what)


def checkpoint_dir(env: TrainingEnv) -> Path:
    return env.checkpoint_dir or env.paths.default_checkpoint_dir


def run(env: TrainingEnv, hps: Hyperparameters, local: Local = ONE_PROCESS) -> None:
    """The job, step by step."""
    with cluster(env, local) as node, stop_on_sigterm() as stop:
        torch.manual_seed(hps.seed)
        set_torch_threads(choose_threads(hps.threads, local.size))
        splits = data.load_splits(data.find_splits(env.channels))
        head = HeadConfig(len(splits.class_names), hps.hidden_units, hps.dropout)
        model = build_model(head)
        load_pretrained(model, env, hps)
        trainable = freeze(model, hps.fine_tune)
        should_stop = (lambda: node.any(stop())) if node.distributed else stop
        job = Job(env, hps, node, model.to(node.device), head, splits.class_names, should_stop)
        job.train(splits, trainable)


def configure_logging(level: int = logging.INFO) -> None:
    """INFO lines (metric lines included) to stdout, where SageMaker's metric regexes read them."""
    package = logging.getLogger(__package__)
    package.setLevel(level)
    if not package.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        package.addHandler(handler)


def _fail(paths: Paths, message: str, code: int) -> int:
    """Write output/failure (SageMaker shows its first 1024 characters as FailureReason); if even that cannot
    be written, the log says why and the exit code still reports the failure."""
    log.error("training failed: %s", message)
    try:
        paths.output_dir.mkdir(parents=True, exist_ok=True)
        paths.failure_file.write_text(message + "\n")
    except OSError as exc:
        log.error(
            "cannot write %s (%s): the failure reason above is only in this log", paths.failure_file, describe(exc)
        )
    return code


def _remove_stale_failure(paths: Paths) -> None:
    """A successful run (e.g. resumed after a spot interruption) leaves no failure file of an earlier one."""
    if paths.failure_file.exists():
        paths.failure_file.unlink()
        log.info("removed %s left by an earlier run of this job", paths.failure_file)


def pretrained_weights_file(env: TrainingEnv) -> Path:
    """The state_dict to start from: a file in the 'pretrained' channel, else the image's ImageNet cache."""
    channel = env.channels.get(PRETRAINED)
    if channel is not None:
        files = sorted(p for p in channel.rglob("*") if p.is_file() and p.suffix.lower() in WEIGHT_SUFFIXES)
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


def freeze(model: nn.Module, fine_tune: str) -> list[nn.Module]:
    """Freeze all but the modules fine_tune trains (head; + ResNet's last stage; all); returns those."""
    trainable = {"head": [model.fc], "last_stage": [model.layer4, model.fc], "all": [model]}[fine_tune]
    model.requires_grad_(False)
    for module in trainable:
        module.requires_grad_(True)
    return trainable


def trained_state(model: nn.Module, trained: list[nn.Module]) -> dict[str, torch.Tensor]:
    """The state of the modules that train: all a checkpoint needs, as a rerun rebuilds the frozen rest
    identically (2 MB instead of ResNet50's 94 MB per epoch for fine_tune=head, synced to S3 by SageMaker)."""
    prefixes = tuple(f"{name}." if name else "" for name, module in model.named_modules() if module in trained)
    return {key: value for key, value in model.state_dict().items() if key.startswith(prefixes)}


def make_optimizer(hps: Hyperparameters, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if hps.optimizer == "sgd":
        return torch.optim.SGD(params, lr=hps.lr, momentum=hps.momentum, weight_decay=hps.weight_decay)
    kind = torch.optim.AdamW if hps.optimizer == "adamw" else torch.optim.Adam
    return kind(params, lr=hps.lr, weight_decay=hps.weight_decay)


def lr_schedule(hps: Hyperparameters, steps_per_epoch: int) -> Callable[[int], float] | None:
    """The learning rate per training step (lr_schedule, warmup_epochs); None: the optimizer's constant lr."""
    if hps.lr_schedule == "none":
        return None
    warmup = round(hps.warmup_epochs * steps_per_epoch)
    return cosine_with_warmup(hps.lr, hps.epochs * steps_per_epoch, warmup)


@dataclass
class Loaders:
    """The data one run iterates, and the module that consumes it (the whole model, or the head on features)."""

    train: DataLoader
    valid: DataLoader
    test: DataLoader | None
    module: nn.Module
    train_modules: list[nn.Module]


@dataclass
class Job:
    """One training job's fixed inputs; train() runs it from data to artifacts."""

    env: TrainingEnv
    hps: Hyperparameters
    node: Cluster
    model: nn.Module
    head: HeadConfig
    class_names: list[str]
    should_stop: Callable[[], bool]

    @property
    def preprocess(self) -> PreprocessConfig:
        return PreprocessConfig(image_size=self.hps.image_size)

    @property
    def signature(self) -> dict:
        hps = self.hps  # the frozen weights are rebuilt from these on resume, so they must match too
        return {
            "class_names": self.class_names,
            "head": asdict(self.head),
            "fine_tune": hps.fine_tune,
            "pretrained": hps.pretrained,
            "seed": hps.seed,
        }

    def train(self, splits: data.Splits, trainable: list[nn.Module]) -> None:
        loaders = self.loaders(splits, trainable)
        resumed, best = self.node.broadcast(self.saved_state() if self.node.is_master else None)
        loop = self.make_loop(loaders, resumed)
        hook = create_hook(self.env.debughook_config, loaders.module, loop.criterion)
        try:
            history, best = self.fit(loop, loaders, hook, resumed, best)
            final, confusion = self.finish(loop, loaders, hook, history, best)
        finally:
            hook.close()
        if self.node.is_master:
            save_artifact(
                self.env.paths.model_dir,
                self.model,
                class_names=self.class_names,
                head=self.head,
                preprocess=self.preprocess,
                metrics=final,
            )
            quantize.write_int8(self.env.paths.model_dir, self.model, splits, self.preprocess, self.hps.seed)
            reporting.write_reports(self.env.paths.output_data_dir, history, final, self.class_names, confusion)
            log.info("model written to %s (epoch %d, by %s)", self.env.paths.model_dir, best.epoch, self.hps.select_by)

    @property
    def checkpoint_dir(self) -> Path:
        return checkpoint_dir(self.env)

    def saved_state(self) -> tuple[Checkpoint | None, Best | None]:
        """The newest checkpoint and, when resuming, the best epoch found by earlier runs."""
        resumed = load_latest(self.checkpoint_dir, self.signature)
        best = load_best(self.checkpoint_dir, self.signature) if resumed else None
        if resumed and best is None:
            log.warning("no best model from the earlier run(s): the best is chosen among the epochs from here on")
        return resumed, best

    def loaders(self, splits: data.Splits, trainable: list[nn.Module]) -> Loaders:
        """Transforms and loaders; head-only training without augmentation runs the backbone just once."""
        hps = self.hps
        train_set = data.subset(
            splits.train, fraction=hps.train_fraction, limit=hps.max_train_images, seed=hps.seed
        ).with_transform(ClassificationPresetTrain(config=self.preprocess, augment=hps.augment))
        evaluate = ClassificationPresetEval(config=self.preprocess)
        sets: dict[str, Dataset | None] = {
            "train": train_set,
            "valid": splits.valid.with_transform(evaluate),
            "test": splits.test.with_transform(evaluate) if splits.test else None,
        }
        module, train_modules = self.model, trainable
        if hps.cache_features and hps.fine_tune == "head" and not hps.augment:
            log.info("fine_tune=head, augment=false: computing backbone features once (cache_features=true)")
            sets = {name: self.features(dataset) if dataset else None for name, dataset in sets.items()}
            module, train_modules = self.model.fc, [self.model.fc]
        return Loaders(
            train=self.loader(sets["train"], train=True),
            valid=self.loader(sets["valid"], train=False),
            test=self.loader(sets["test"], train=False) if sets["test"] else None,
            module=module,
            train_modules=train_modules,
        )

    def loader(self, dataset: Dataset, *, train: bool) -> DataLoader:
        shard = self.node.shard if train else None  # every host evaluates the whole validation/test set
        in_memory = isinstance(dataset, TensorDataset)  # cached features: loader processes would only add IPC
        return data.make_loader(
            dataset,
            batch_size=self.hps.batch_size,
            train=train,
            shard=shard,
            seed=self.hps.seed,
            num_workers=0 if in_memory else self.hps.num_workers,
        )

    def features(self, dataset: Dataset) -> Dataset:
        loader, hps = self.loader(dataset, train=False), self.hps
        return extract_features(self.model, loader, self.node.device, self.should_stop, hps.feature_precision)

    def make_loop(self, loaders: Loaders, resumed: Checkpoint | None) -> Loop:
        if resumed is not None:
            self.model.load_state_dict(resumed.model, strict=False)  # frozen parts come from pretrained/seed
        module, hps = loaders.module, self.hps
        trained = DistributedDataParallel(module) if self.node.distributed else module
        optimizer = make_optimizer(hps, [p for p in self.model.parameters() if p.requires_grad])
        if resumed is not None:
            optimizer.load_state_dict(resumed.optimizer)
        scaler = torch.amp.GradScaler("cuda") if self.node.device.type == "cuda" else None
        steps_per_epoch = len(loaders.train)
        return Loop(
            model=trained,
            criterion=SmoothedCrossEntropyLoss(label_smoothing=hps.label_smoothing),
            optimizer=optimizer,
            device=self.node.device,
            train_modules=loaders.train_modules,
            eval_model=module,
            should_stop=self.should_stop,
            reduce=self.node.sum,
            scaler=scaler,
            lr_at=lr_schedule(hps, steps_per_epoch),
            steps_done=(resumed.epochs_done if resumed else 0) * steps_per_epoch,
        )

    def fit(
        self, loop: Loop, loaders: Loaders, hook: NullHook, resumed: Checkpoint | None, best: Best | None
    ) -> tuple[list[dict], Best]:
        """Epochs from the checkpoint's next one; after each, the best model so far (when it changed) and a
        checkpoint; on SIGTERM, one more checkpoint, then stop; stop early after `patience` epochs without
        improvement. Returns the history and the best epoch."""
        history = list(resumed.history) if resumed else []
        start = resumed.epochs_done if resumed else 0
        for epoch in range(start + 1, self.hps.epochs + 1):
            if self.out_of_patience(history):
                break
            try:
                profile = self.hps.profile and self.node.is_master and epoch == start + 1  # one trace.json writer
                row = self.epoch(loop, loaders, hook, epoch, profile=profile)
            except Interrupted:
                self.checkpoint(loop, history)
                raise Interrupted(f"checkpoint saved after {len(history)} complete epoch(s); rerun to resume") from None
            history.append(row)
            if selection.better(row, best.row if best else None, self.hps.select_by):
                best = self.keep_best(loop, row)
            self.checkpoint(loop, history)
        return history, best or self.keep_best(loop, history[-1])

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

    def keep_best(self, loop: Loop, row: dict) -> Best:
        """A copy of the trained modules' state after this epoch; the master also saves it beside the checkpoints."""
        state = {key: value.detach().clone() for key, value in trained_state(self.model, loop.train_modules).items()}
        best = Best(epoch=row["epoch"], row=row, model=state, signature=self.signature)
        if self.node.is_master:
            save_best(self.checkpoint_dir, best)
        return best

    def epoch(self, loop: Loop, loaders: Loaders, hook: NullHook, epoch: int, *, profile: bool) -> dict:
        if isinstance(loaders.train.sampler, DistributedSampler):
            loaders.train.sampler.set_epoch(epoch)
        started = time.monotonic()
        hook.train()
        with profiled_steps(profile, self.env.paths.output_data_dir / "profile") as step:
            trained = loop.train_epoch(loaders.train, step)
        hook.eval()
        valid = loop.evaluate(loaders.valid)
        values = {"train_loss": trained.loss, "train_acc": trained.acc}
        values.update(valid_loss=valid.loss, valid_acc=valid.acc)
        log.info(metrics.epoch_line(epoch, values))
        return {"epoch": epoch, **values, "seconds": round(time.monotonic() - started, 3)}

    def checkpoint(self, loop: Loop, history: list[dict]) -> None:
        if self.node.is_master:
            state = Checkpoint(
                epochs_done=len(history),
                model=trained_state(self.model, loop.train_modules),
                optimizer=loop.optimizer.state_dict(),
                history=history,
                signature=self.signature,
            )
            save_checkpoint(self.checkpoint_dir, state)

    def finish(
        self, loop: Loop, loaders: Loaders, hook: NullHook, history: list[dict], best: Best
    ) -> tuple[dict, torch.Tensor | None]:
        """Load the best epoch's weights; final metrics are its validation figures and the test split's on it
        (with the test confusion matrix, rows = true class)."""
        self.model.load_state_dict(best.model, strict=False)
        final = {"best_epoch": best.epoch, "select_by": self.hps.select_by, "epochs": len(history)}
        values = {key: best.row[key] for key in ("valid_loss", "valid_acc")}
        confusion = None
        if loaders.test is not None:
            hook.eval()
            confusion = torch.zeros(len(self.class_names), len(self.class_names), dtype=torch.int64)
            tested = loop.evaluate(loaders.test, confusion)
            values.update(test_loss=tested.loss, test_acc=tested.acc)
        log.info(metrics.final_line(best.epoch, values))
        return {**final, **values}, confusion
