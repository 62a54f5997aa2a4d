"""Input channels → image datasets and loaders: split discovery, class checks, unreadable-image skipping."""

import hashlib
import logging
import os
import shutil
import unicodedata
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler, default_collate
from torchvision.transforms.functional import to_pil_image

from .archives import ARCHIVE_SUFFIXES, IGNORED_FOLDERS
from .contract.channels import COMBINED, SPLIT_CHANNELS, TEST, TRAIN, VALID_ALIASES
from .contract.hyperparams import Hyperparameters
from .errors import UserError
from .files import reading_input
from .formats import (
    IMAGE_EXTENSIONS,
    MAX_ASPECT_RATIO,
    CostlyFile,
    jpeg_arithmetic,
    named_as_image,
    open_image,
    too_elongated,
)
from .presets import decode_pixels, decode_rgb

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitPaths:
    """Where each split's class folders live; valid None: no validation split was given (load_splits holds one out)."""

    train: Path
    valid: Path | None
    test: Path | None = None


# Archives users upload that are not unpacked (archives.ARCHIVE_SUFFIXES are): named in the failure.
FOREIGN_ARCHIVES = (".7z", ".rar", ".gz", ".gzip", ".bz2", ".xz", ".zst", ".lz4", ".lz", ".z", ".cab", ".iso", ".dmg")
WRAPPER_DEPTH = 3  # lone folders find_splits looks through: s3://bucket/uploads/dogImages/train/...


@reading_input
def find_splits(channels: Mapping[str, Path]) -> SplitPaths:
    """Where the splits are, in the layouts users upload. The data comes from channel `train` (with optional
    `valid`/`validation`/`val` and `test` channels), or else from one `training` channel. That channel's
    folder (after any lone wrapper folder, e.g. dogImages/: dataset_root) holds either split folders
    train/ [valid/] [test/] (any case: Train/) or the class folders themselves. Without a validation split, valid is
    None. Two channels for one split (train and training, valid and validation) are refused: one would be dropped."""
    for aliases in ((TRAIN, COMBINED), VALID_ALIASES):
        if len(same := [name for name in aliases if name in channels]) > 1:
            raise UserError(
                f"channels {' and '.join(same)} were both given, but only one of them would be read: give the data "
                "of one split in one channel"
            )
    source = next((name for name in (TRAIN, COMBINED) if name in channels), None)
    if source is None:
        raise UserError(
            f"no training data: expected a 'train' channel (optionally 'valid' and 'test'), or one '{COMBINED}' "
            f"channel holding train/ [valid/] [test/] or the class folders; got channels {sorted(channels) or 'none'}"
        )
    root = dataset_root(channels[source])
    folders = _split_folders(root, source)
    others = sorted(set(channels) & set(SPLIT_CHANNELS) - {source})
    if not folders:  # class folders: the training set
        classes = {class_key(path.name) for path in subfolders(root)}
        folders = {TRAIN: root} | {name: dataset_root(channels[name], classes) for name in others}
    elif TRAIN not in folders:
        raise UserError(f"the '{source}' channel's folder {root} holds split folders {sorted(folders)} but no train/")
    elif others:
        raise UserError(
            f"the '{source}' channel's folder {root} holds the splits {sorted(folders)}, and channels {others} were "
            "given too: give the splits one way only"
        )
    valid = next((folders[name] for name in VALID_ALIASES if name in folders), None)
    return SplitPaths(train=folders[TRAIN], valid=valid, test=folders.get(TEST))


def _split_folders(root: Path, channel: str) -> dict[str, Path]:
    """root's split folders by lower-case name; UserError when two hold the same split (train/ and Train/, valid/
    and validation/): one would be dropped without a word. Other folders beside them are named in a warning."""
    inside = subfolders(root)
    folders = [path for path in inside if path.name.lower() in SPLIT_CHANNELS]
    for aliases in ((TRAIN,), VALID_ALIASES, (TEST,)):
        if len(same := [path.name for path in folders if path.name.lower() in aliases]) > 1:
            raise UserError(
                f"the '{channel}' channel's folder {root} holds {' and '.join(same)}, the same split twice: merge "
                "them into one folder"
            )
    if folders and (ignored := [path.name for path in inside if path not in folders]):
        log.warning(
            "ignored folder(s) %s in %s beside the split folders: only %s are read as splits",
            ", ".join(ignored), root, "/ ".join(SPLIT_CHANNELS) + "/",
        )  # fmt: skip
    return {path.name.lower(): path for path in folders}


def dataset_root(channel: Path, classes: Collection[str] = ()) -> Path:
    """A channel's folder, or the folder inside it while it holds nothing but one folder (non-image files aside):
    an upload's wrapper such as dogImages/, at most WRAPPER_DEPTH deep. A lone folder named as one of `classes`
    (train's, by class_key) is that class's, not a wrapper: a valid or test channel may hold one class only."""
    root = channel
    for _ in range(WRAPPER_DEPTH):
        inside = subfolders(root)
        lone = inside[0].name if len(inside) == 1 else None
        if lone is None or lone.lower() in SPLIT_CHANNELS or class_key(lone) in classes or _holds_images(root):
            break
        root = inside[0]
    return root


def subfolders(root: Path) -> list[Path]:
    """root's folders, sorted, without hidden ones (.ipynb_checkpoints) and IGNORED_FOLDERS; none if root is not one."""
    if not root.is_dir():
        return []
    return sorted(
        p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in IGNORED_FOLDERS
    )


def _holds_images(folder: Path) -> bool:
    return any(named_as_image(p.name) for p in folder.iterdir() if p.is_file())


UNREADABLE = "unreadable"
COSTLY = "too costly to decode (scans, segments, chunks or strips far beyond its pixels' need; serving refuses too)"
ELONGATED = f"elongated (aspect ratio over {MAX_ASPECT_RATIO}:1, which serving refuses too)"


def image_problem(path: Path) -> str | None:
    """Why an image file is not trained on: UNREADABLE (header, Pillow's verify, decompression bomb), COSTLY
    (formats.check_structure) or ELONGATED (the eval resize would scale a 20000x1 strip to gigabytes); None when it
    is fine."""
    try:
        with open_image(path.read_bytes()) as img:
            width, height = img.size
            img.verify()
    except CostlyFile:
        return COSTLY
    except Exception:  # PIL raises many types (OSError, SyntaxError, DecompressionBombError, ...)
        return UNREADABLE
    return ELONGATED if too_elongated(width, height) else None


def decode_file(path: Path) -> Image.Image:
    """An image file's RGB pixels (presets.decode_rgb, as serving decodes). A file formats.check_structure refuses
    (a JPEG of too many scans: each is one more pass over the image, every epoch) is a CostlyFile, a ValueError,
    before decoding."""
    data = path.read_bytes()
    with open_image(data) as img:
        if jpeg_arithmetic(data):  # Pillow cannot decode one over ~64 KB: torchvision does (presets.decode_pixels)
            return to_pil_image(decode_pixels(img, data))
        return decode_rgb(img)


class ImageList(Dataset):
    """(path, label) samples of one split, decoded to RGB and transformed on access.

    A file that passed the scan but fails to decode now (truncated after a sound header, changed since)
    yields None, which collate_decoded drops; it is flagged in `undecodable`, a shared-memory tensor that
    DataLoader worker processes write too, so the count in the log covers every worker.
    """

    def __init__(
        self,
        samples: list[tuple[Path, int]],
        transform: Callable | None = None,
        undecodable: torch.Tensor | None = None,
    ):
        self.samples = samples
        self.transform = transform
        self.undecodable = (
            torch.zeros(len(samples), dtype=torch.bool).share_memory_() if undecodable is None else undecodable
        )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        path, label = self.samples[index]
        try:
            image = decode_file(path)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            self._skip(index, exc)
            return None
        return (self.transform(image) if self.transform else image), label

    def _skip(self, index: int, exc: Exception) -> None:
        if not self.undecodable[index]:  # warn once per file, not once per epoch
            self.undecodable[index] = True
            count = int(self.undecodable.sum())
            log.warning(
                "skipped undecodable image %s (%s); %d skipped in its split so far", self.samples[index][0], exc, count
            )

    def with_transform(self, transform: Callable) -> "ImageList":
        return ImageList(self.samples, transform, self.undecodable)


def check_decoded(train: ImageList, class_names: list[str], undecodable: torch.Tensor) -> None:
    """Once every training image was read: UserError naming the classes none of whose images decoded (each passed
    the scan but failed when read: truncated after a sound header, pixels decode_rgb refuses), as such a class
    trains on no image. undecodable: train.undecodable, summed over the processes that each read a shard."""
    labels = torch.tensor([label for _, label in train.samples], dtype=torch.int64)
    failed = set(labels.tolist()) - set(labels[undecodable == 0].tolist())
    if failed:
        names = [class_names[label] for label in sorted(failed)]
        raise UserError(
            f"{len(names)} class(es) have no training image that decodes (every one was skipped as undecodable, "
            f"see the warnings above): {', '.join(names[:5])}; replace their images with readable ones"
        )


def collate_decoded(batch: list[tuple[torch.Tensor, int] | None]) -> list[torch.Tensor] | None:
    """default_collate over the samples that decoded; None when none of the batch did."""
    decoded = [sample for sample in batch if sample is not None]
    return default_collate(decoded) if decoded else None


def class_folders(root: Path) -> list[str]:
    if not root.is_dir():
        raise UserError(f"data path {root} does not exist or is not a directory")
    return [p.name for p in subfolders(root)]


def image_files(root: Path, name: str) -> tuple[list[Path], list[Path]]:
    """Files at any depth under the class folder root/name (none if it is missing), sorted, like ImageFolder: those
    named as images (IMAGE_EXTENSIONS), and the others. Symlinked directories are followed, each directory once (a
    symlink cycle ends), except one leading back into the split's other classes (_relabels): it is skipped with a
    warning. Names starting with '.' are skipped (._x.jpg, .ipynb_checkpoints/)."""
    folder, relabels, seen = root / name, _relabels(root, name), set()
    images, others = [], []
    if not _first_visit(folder, seen, relabels):
        return [], []
    for top, dirs, files in os.walk(folder, followlinks=True, onerror=_raise_denied):
        dirs[:] = [
            d
            for d in sorted(dirs)
            if not d.startswith(".") and d not in IGNORED_FOLDERS and _first_visit(Path(top, d), seen, relabels)
        ]
        for file in files:
            if not file.startswith("."):
                (images if named_as_image(file) else others).append(Path(top, file))
    return sorted(images), sorted(others)


def _raise_denied(exc: OSError) -> None:
    """os.walk's onerror: a folder the job may not read fails it (reading_input), not drops its images unseen."""
    if isinstance(exc, PermissionError):
        raise exc


def _relabels(root: Path, name: str) -> Callable[[Path, Path], bool]:
    """Whether a directory (and its real path) would give class `name` other classes' images, warning when it would:
    it holds the split's class folders (the split folder or an ancestor: `dirloop -> ..`) or the class folder
    itself (an ancestor of where a symlinked class folder leads), or it lies in the split outside the class folder."""
    split = root.resolve()
    own = split / name
    holders = {split, *split.parents, *own.resolve().parents}

    def relabels(directory: Path, real: Path) -> bool:
        if real not in holders and (not real.is_relative_to(split) or real.is_relative_to(own)):
            return False
        log.warning(
            "skipped folder %s: it leads to %s, which holds other classes' images (they would be labelled %s too); "
            "link only folders outside the split",
            directory, real, name,
        )  # fmt: skip
        return True

    return relabels


def _first_visit(directory: Path, seen: set[tuple[int, int]], relabels: Callable[[Path, Path], bool]) -> bool:
    """True the first time the directory (by device and inode, whatever the path or symlink) is met, unless it
    relabels other classes' images."""
    try:
        stat, real = directory.stat(), directory.resolve()
    except OSError:
        return False
    key = (stat.st_dev, stat.st_ino)
    if key in seen:
        return False
    seen.add(key)
    return not relabels(directory, real)


def scan_split(root: Path, class_names: list[str], split: str) -> ImageList:
    """All images under root/<class>/ at any depth, labelled by the class's index in class_names (train's order);
    those with an image_problem are skipped and counted in the log. In the train split every class needs an image:
    a class the model never sees is one it can never predict. Valid/test may lack classes (a warning): they are just
    not measured."""
    samples, skipped, others = [], {}, []
    folders = {class_key(folder): folder for folder in class_folders(root)}
    _warn_loose_images(root, split)
    for label, name in enumerate(class_names):
        images, not_images = image_files(root, folders.get(class_key(name), name))
        others += not_images
        for path in filter(Path.is_file, images):
            if (problem := image_problem(path)) is None:
                samples.append((path, label))
            else:
                skipped.setdefault(problem, []).append(path)
    for problem, paths in skipped.items():
        log.warning("skipped %d %s image(s) in %s split, e.g. %s", len(paths), problem, split, paths[0])
    if others:
        log.warning(
            "ignored %d file(s) in %s split not named as images we read (e.g. %s); images are found by extension: %s",
            len(others), split, others[0], " ".join(IMAGE_EXTENSIONS),
        )  # fmt: skip
    if not samples:
        raise UserError(f"no readable images in the {split} split at {root} (expected {root}/<class>/**/*.jpg)")
    empty = sorted(set(class_names) - {class_names[label] for _, label in samples})
    if split == TRAIN and empty:
        raise UserError(
            f"{len(empty)} class folder(s) in {root} hold no readable training image: {', '.join(empty[:5])}; "
            "add images (jpg, png, ...) or remove the folder in every split"
        )
    if empty:
        log.warning(
            "%s split at %s has no readable image of %d of the %d classes, so its metrics leave them out: %s",
            split, root, len(empty), len(class_names), ", ".join(empty[:5]),
        )  # fmt: skip
    log.info("%s split: %d images in %d classes from %s", split, len(samples), len(class_names) - len(empty), root)
    return ImageList(samples)


def _warn_loose_images(root: Path, split: str) -> None:
    if loose := [p.name for p in sorted(root.iterdir()) if p.is_file() and named_as_image(p.name)]:
        log.warning(
            "ignored %d image(s) directly in %s split folder %s (e.g. %s): only images in a class folder are read",
            len(loose), split, root, loose[0],
        )  # fmt: skip


def class_key(name: str) -> str:
    """A class folder's name as splits are matched by: its Unicode NFC form (macOS writes names decomposed: é as an
    e and a combining accent)."""
    return unicodedata.normalize("NFC", name)


def check_distinct(class_names: list[str], root: Path) -> None:
    """Train's class folders must be UTF-8 text (they are the labels serving answers in JSON) and differ by more than
    their Unicode form (they would show as one name in every report); folders differing only in case are different
    classes, with a warning."""
    if undecodable := [escaped(name) for name in class_names if escaped(name) != name]:
        raise UserError(
            f"class folder name(s) in {root} are not UTF-8 (the bytes shown as \\x..): {', '.join(undecodable[:5])}; "
            "the class names are the model's labels, which must be text: rename the folders in every split"
        )
    keys: dict[str, str] = {}
    for name in class_names:
        if (first := keys.setdefault(class_key(name), name)) != name:
            raise UserError(
                f"class folders {first!r} and {name!r} in {root} have the same name written in two Unicode forms "
                "(NFC and NFD, e.g. one from a zip made on macOS): merge them into one folder"
            )
    cased: dict[str, list[str]] = {}
    for name in class_names:
        cased.setdefault(class_key(name).casefold(), []).append(name)
    if same := [" and ".join(names) for names in cased.values() if len(names) > 1]:
        log.warning("class folders in %s differ only in case, so they are different classes: %s", root, "; ".join(same))


def escaped(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 (Python keeps them as lone surrogates, which no JSON encoder
    writes) shown as \\xe9."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def check_known_classes(class_names: list[str], folders: list[str], names: tuple[Path, Path]) -> None:
    """Every class folder of a split must be one of train's, by class_key (names: train's path, the split's)."""
    known = {class_key(name) for name in class_names}
    unknown = sorted(folder for folder in folders if class_key(folder) not in known)
    if unknown:
        cased = {class_key(name).casefold(): name for name in class_names}
        shown = [
            f"{folder} (train has {cased[key]})" if (key := class_key(folder).casefold()) in cased else folder
            for folder in unknown[:5]
        ]
        raise UserError(
            f"{len(unknown)} class folder(s) in {names[1]} are not in the train split {names[0]}: "
            f"{', '.join(shown)}; the model can never predict them: add them to train or remove them"
        )


def subset(dataset: ImageList, *, fraction: float, limit: int, seed: int) -> ImageList:
    """A seeded random share (and cap) of the samples, to train on less data; stratified: one image of each class
    first (of as many classes as the count allows, picked at random), the rest at random."""
    count = max(1, round(len(dataset) * fraction))
    count = min(count, limit) if limit else count
    if count >= len(dataset):
        return dataset
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    first_of_class: dict[int, int] = {}
    for index in order:
        first_of_class.setdefault(dataset.samples[index][1], index)
    firsts = set(list(first_of_class.values())[:count])
    chosen = sorted([*firsts, *[index for index in order if index not in firsts][: count - len(firsts)]])
    log.info("training on %d of %d images (train_fraction/max_train_images)", count, len(dataset))
    return ImageList([dataset.samples[i] for i in chosen], dataset.transform)


SHARED_MEMORY = Path("/dev/shm")  # where loader processes hand batches to the training process
PREFETCHED_BATCHES = 2  # DataLoader's prefetch_factor: batches each loader process keeps in flight


def loader_processes(requested: int, batch_bytes: int, processes: int, shared_memory: Path = SHARED_MEMORY) -> int:
    """num_workers, or fewer when their batches in flight would not fit this process's share of /dev/shm: a loader
    process that cannot allocate a batch fails the job, and Docker's default /dev/shm (64 MB, as docker-compose and
    the SDK's local mode run) holds fewer than the 4 batches of 19 MB that num_workers=2 at 224 px and batch_size=32
    keep in flight. Each batch is counted twice (the one being trained on, fragmentation)."""
    try:
        free = shutil.disk_usage(shared_memory).free // processes
    except OSError:  # no /dev/shm: torch shares through files elsewhere
        return requested
    per_worker = 2 * PREFETCHED_BATCHES * batch_bytes
    fits = min(requested, free // per_worker)
    if fits < requested:
        log.warning(
            "num_workers=%d would keep ~%d MB of batches in shared memory, but %s has %d MB free (per process): "
            "using %d loader process(es). Give the container more to load in parallel (docker run --shm-size 1g; "
            "shm_size in docker-compose)",
            requested, requested * per_worker >> 20, shared_memory, free >> 20, fits,
        )  # fmt: skip
    return fits


def make_loader(
    dataset: Dataset, *, batch_size: int, train: bool, num_workers: int, seed: int, shard: tuple[int, int] | None
) -> DataLoader:
    """Shuffled (training) or ordered loader; shard=(rank, world) gives each host its DistributedSampler slice.
    A training epoch of more than one batch never ends on a batch of one image (dropped, another each epoch):
    BatchNorm in training mode cannot normalise a single value per channel (fine_tune=all at image_size=32)."""
    sampler = None
    if shard is not None:
        sampler = DistributedSampler(dataset, num_replicas=shard[1], rank=shard[0], shuffle=train, seed=seed)
    images = len(sampler) if sampler is not None else len(dataset)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        drop_last=train and images > batch_size and images % batch_size == 1,
        shuffle=train and sampler is None,
        sampler=sampler,
        collate_fn=collate_decoded,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        prefetch_factor=PREFETCHED_BATCHES if num_workers else None,
        pin_memory=torch.cuda.is_available(),
        generator=torch.Generator().manual_seed(seed) if train else None,
    )


@dataclass(frozen=True)
class Splits:
    """The scanned datasets of one job, untransformed, and the class names in label order."""

    class_names: list[str]
    train: ImageList
    valid: ImageList
    test: ImageList | None


@reading_input
def load_splits(paths: SplitPaths, *, valid_fraction: float = Hyperparameters.valid_fraction) -> Splits:
    """Scan every split; train's sorted class folders are the labels, other splits may hold a subset of them.
    Without a validation split, valid_fraction of the training images are held out as one (hold_out)."""
    class_names = class_folders(paths.train)
    check_distinct(class_names, paths.train)
    if len(class_names) < 2:
        raise UserError(
            f"the train split at {paths.train} has {len(class_names)} class folder(s) {class_names}: a classifier "
            f"needs at least two (one folder per class: {paths.train}/<class>/*.jpg)"
            + "".join(f"; {found}" for found in found_instead(paths.train))
        )
    scanned = {}
    for split in ("train", "valid", "test"):
        root = getattr(paths, split)
        if root is not None:
            check_known_classes(class_names, class_folders(root), (paths.train, root))
            scanned[split] = scan_split(root, class_names, split)
    if paths.valid is None:
        scanned["train"], scanned["valid"] = hold_out(scanned["train"], valid_fraction, paths.train)
    return Splits(class_names, scanned["train"], scanned["valid"], scanned.get("test"))


def found_instead(root: Path) -> list[str]:
    """What a split folder without enough class folders holds instead (images, archives, a manifest, split folders
    nested too deep), each with how to lay the data out; ["<root> is empty"] when it holds nothing."""
    files = sorted(p for p in root.rglob("*") if not any(part.startswith(".") for part in p.relative_to(root).parts))
    images = [p.name for p in files if p.parent == root and p.is_file() and named_as_image(p.name)]
    packed = [p for p in files if p.is_file() and p.name.lower().endswith(ARCHIVE_SUFFIXES)]
    foreign = [p for p in files if p.is_file() and p.name.lower().endswith(FOREIGN_ARCHIVES) and p not in packed]
    manifests = [p for p in files if p.is_file() and p.suffix.lower() == ".manifest"]
    deeper = [p.parent for p in files if p.is_dir() and p.name.lower() == TRAIN]
    found = []
    if images:
        found.append(
            f"found {len(images)} image file(s) directly in {root} ({images[0]}, ...): put each class's images in "
            f"its own folder, e.g. {root}/001.Affenpinscher/"
        )
    if packed:
        found.append(
            f"found archive(s) not unpacked: {', '.join(map(str, packed[:3]))}; an archive is unpacked only when it "
            "lies directly in the channel's folder with no folder beside it"
        )
    if foreign:
        found.append(
            f"found {', '.join(p.name for p in foreign[:3])}: an archive format not unpacked; pack the data as one of "
            f"{' '.join(ARCHIVE_SUFFIXES)}"
        )
    if manifests:
        found.append(
            f"found {manifests[0]}: manifest files are not read; upload the images themselves, one folder per class"
        )
    if deeper:
        found.append(
            f"found a train/ split folder in {deeper[0]}, below more than {WRAPPER_DEPTH} wrapper folders: point the "
            "channel at that folder (or upload it with fewer wrapper folders)"
        )
    return found if files else [f"{root} is empty"]


def hold_out(train: ImageList, fraction: float, root: Path) -> tuple[ImageList, ImageList]:
    """(train, valid) from training images alone: in each class of two or more images, `fraction` of them (at least
    one, never all) are held out, picked by a hash of their path under root, so every host and every job on the
    same files holds out the same images, whatever the seed."""
    by_class: dict[int, list[tuple[Path, int]]] = {}
    for sample in train.samples:
        by_class.setdefault(sample[1], []).append(sample)
    kept, held = [], []
    for samples in by_class.values():
        samples.sort(key=lambda sample: hashlib.sha256(os.fsencode(sample[0].relative_to(root).as_posix())).digest())
        count = min(len(samples) - 1, max(1, round(len(samples) * fraction)))
        held += samples[:count]
        kept += samples[count:]
    if not held:
        raise UserError(f"no validation split, and no class in {root} has two images to hold one out for validation")
    log.info(
        "no validation split given: %d of the %d training images are held out to validate on (valid_fraction=%g, "
        "per class; %d class(es) of one image are not validated)",
        len(held), len(train), fraction, sum(len(samples) == 1 for samples in by_class.values()),
    )  # fmt: skip
    return ImageList(sorted(kept, key=_by_label)), ImageList(sorted(held, key=_by_label))


def _by_label(sample: tuple[Path, int]) -> tuple[int, Path]:
    return sample[1], sample[0]
