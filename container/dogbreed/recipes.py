"""The two ways a job trains, chosen in choose(): the model on images, or the head on backbone features
computed once."""

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from . import data
from .contract.hyperparams import CACHED_FEATURES, Hyperparameters, setting
from .distributed import Cluster
from .engine import extract_features
from .errors import UserError
from .presets import ClassificationPresetEval, ClassificationPresetTrain, PreprocessConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Datasets:
    """One dataset per split, ready for a loader (images through their transforms, or cached features)."""

    train: Dataset
    valid: Dataset
    test: Dataset | None


@dataclass(frozen=True)
class Recipe:
    """What a run trains and on what. The loop runs `module` forward and the debugger hooks it; `trained` are the
    modules in train mode each epoch, whose state checkpoints and the best epoch keep; `images` are the training
    images, whose undecodable ones are known once the first epoch (or the feature pass) has read them all."""

    module: nn.Module
    trained: list[nn.Module]
    images: data.ImageList
    train: DataLoader
    valid: DataLoader
    test: DataLoader | None


@dataclass(frozen=True)
class Batching:
    """How this process batches a dataset: the hyperparameters' batch size, seed and loader processes; its shard
    of the training set (every process evaluates the whole validation and test sets)."""

    hps: Hyperparameters
    shard: tuple[int, int] | None
    processes: int = 1  # training processes on this host, sharing its /dev/shm

    def loader(self, dataset: Dataset, *, train: bool) -> DataLoader:
        return data.make_loader(
            dataset,
            batch_size=self.hps.batch_size,
            train=train,
            shard=self.shard if train else None,
            seed=self.hps.seed,
            num_workers=0 if isinstance(dataset, TensorDataset) else self.image_loader_processes,
        )  # cached features: loader processes would only add IPC

    @functools.cached_property
    def image_loader_processes(self) -> int:
        """num_workers for batches of images, as many as /dev/shm holds (decided, and warned about, once)."""
        batch_bytes = self.hps.batch_size * 3 * self.hps.image_size**2 * 4  # float32 images
        return data.loader_processes(self.hps.num_workers, batch_bytes, self.processes)

    def loaders(self, datasets: Datasets) -> tuple[DataLoader, DataLoader, DataLoader | None]:
        test = self.loader(datasets.test, train=False) if datasets.test is not None else None
        return self.loader(datasets.train, train=True), self.loader(datasets.valid, train=False), test


def image_datasets(splits: data.Splits, preprocess: PreprocessConfig, hps: Hyperparameters) -> Datasets:
    """The training images (train_fraction, max_train_images) through the training transform (augment), the
    validation and test images through the evaluation transform. The subset keeps an image of every class (a class
    the model never sees it can never predict): UserError when it is smaller than the number of classes."""
    train = data.subset(splits.train, fraction=hps.train_fraction, limit=hps.max_train_images, seed=hps.seed)
    if len(train) < len(splits.class_names):
        raise UserError(
            f"train_fraction={hps.train_fraction:g} and max_train_images={hps.max_train_images} leave {len(train)} "
            f"training image(s) for {len(splits.class_names)} classes: every class needs one, so raise them to keep "
            f"at least {len(splits.class_names)} images"
        )
    evaluate = ClassificationPresetEval(config=preprocess)
    return Datasets(
        train=train.with_transform(ClassificationPresetTrain(config=preprocess, augment=hps.augment)),
        valid=splits.valid.with_transform(evaluate),
        test=splits.test.with_transform(evaluate) if splits.test else None,
    )


def choose(
    model: nn.Module,
    trained: list[nn.Module],
    images: Datasets,
    *,
    hps: Hyperparameters,
    node: Cluster,
    should_stop: Callable[[], bool],
) -> Recipe:
    """The one place that decides how this job trains (contract.hyperparams.CACHED_FEATURES); the log says which
    and why. `trained` are the modules fine_tune unfroze."""
    batching = Batching(hps, node.shard, node.local_processes)
    blockers = hps.why_not_cached_features()
    if blockers:
        log.info("recipe: the model on images, the backbone runs at every step (%s)", ", ".join(blockers))
        return on_images(model, trained, images, batching)
    settings = ", ".join(setting(key, value) for key, value in CACHED_FEATURES.items())
    log.info("recipe: the head on cached features (%s): computing backbone features once", settings)
    return on_cached_features(
        model, images, batching, device=node.device, should_stop=should_stop, precision=hps.feature_precision
    )


def on_images(model: nn.Module, trained: list[nn.Module], images: Datasets, batching: Batching) -> Recipe:
    """The whole model runs forward on every batch of images; the `trained` modules learn, the rest stays frozen."""
    return Recipe(model, trained, images.train, *batching.loaders(images))


def on_cached_features(
    model: nn.Module,
    images: Datasets,
    batching: Batching,
    *,
    device: torch.device,
    should_stop: Callable[[], bool],
    precision: str,
) -> Recipe:
    """The frozen backbone runs once over every split; only the head (model.fc) runs, and trains, on its features."""

    def features(dataset: Dataset, split: str) -> TensorDataset:
        loader = batching.loader(dataset, train=False)
        return extract_features(model, loader, device, should_stop, precision, split=split)

    test = features(images.test, "test") if images.test is not None else None
    cached = Datasets(features(images.train, "train"), features(images.valid, "valid"), test)
    return Recipe(model.fc, [model.fc], images.train, *batching.loaders(cached))
