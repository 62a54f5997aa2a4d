"""Image preprocessing, defined once: training augmentation and the eval transform serving reuses."""

import math
from dataclasses import asdict, dataclass

import torch
from PIL import Image
from torchvision.transforms import v2 as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessConfig:
    """What serving must know to reproduce training's eval transform; saved with the model."""

    image_size: int = 224
    resize_size: int = 0  # 0: derived as image_size * 256 / 224, torchvision's ratio
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if not self.resize_size:
            object.__setattr__(self, "resize_size", round(self.image_size * 256 / 224))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PreprocessConfig":
        keys = ("image_size", "resize_size", "mean", "std")
        return cls(**{k: data[k] for k in keys if k in data})


class ClassificationPresetTrain:
    """Random-resized crop + flip (+ colour jitter) when augmenting, else the eval transform."""

    def __init__(self, *, config: PreprocessConfig, augment: bool = True):
        if augment:
            geometry = [
                T.RandomResizedCrop(config.image_size, antialias=True),
                T.RandomHorizontalFlip(),
                T.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
            ]
        else:
            geometry = [
                T.Resize(config.resize_size, antialias=True),
                T.CenterCrop(config.image_size),
            ]
        self.transforms = T.Compose(
            [T.PILToTensor(), *geometry, T.ToDtype(torch.float32, scale=True), T.Normalize(config.mean, config.std)]
        )

    def __call__(self, img):
        return self.transforms(img)


class ClassificationPresetEval:
    """Resize the short side, centre-crop, scale to [0, 1], normalise: training's validation view."""

    def __init__(self, *, config: PreprocessConfig):
        self.transforms = T.Compose(
            [
                T.PILToTensor(),
                T.Resize(config.resize_size, antialias=True),
                T.CenterCrop(config.image_size),
                T.ToDtype(torch.float32, scale=True),
                T.Normalize(config.mean, config.std),
            ]
        )

    def __call__(self, img):
        return self.transforms(img)


def decode_rgb(image: Image.Image, *, config: PreprocessConfig | None = None) -> Image.Image:
    """Decode a lazily opened image to RGB pixels, as torchvision's ImageFolder loader does.

    With config, a JPEG is decoded by libjpeg's DCT scaling (draft mode) straight to the smallest
    power-of-two reduction whose short side still covers config.resize_size, so the eval transform's
    antialiased resize starts from fewer pixels (a large photo decodes several times faster).
    """
    if config is not None and image.format == "JPEG":
        width, height = image.size
        scale = config.resize_size / min(width, height)
        if scale < 0.5:
            image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
    return image.convert("RGB")
