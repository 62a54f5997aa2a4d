"""Image preprocessing, defined once: training augmentation and the eval transform serving reuses."""

import math
from dataclasses import asdict, dataclass

import numpy as np
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
    """Decode a lazily opened image to 8-bit RGB pixels, for training and serving alike.

    Pillow's convert("RGB") clips wider modes: a 16-bit grayscale PNG ("I;16") would become all white.
    So 16-bit grayscale is scaled to 8 bits (65535 → 255); 32-bit integer ("I") and float ("F") images carry
    no brightness range to scale from and are refused (ValueError) rather than guessed. With config, a JPEG
    is decoded by libjpeg's DCT scaling (draft mode) straight to the smallest power-of-two reduction whose
    short side still covers config.resize_size, so the eval transform's resize starts from fewer pixels.
    """
    if config is not None and image.format == "JPEG":
        width, height = image.size
        scale = config.resize_size / min(width, height)
        if scale < 0.5:
            image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
    if image.mode.startswith("I;16"):
        gray = np.asarray(image).astype(np.float32) / 257
        return Image.fromarray(np.rint(gray).astype(np.uint8)).convert("RGB")
    if image.mode in ("I", "F"):
        kind = "32-bit integer" if image.mode == "I" else "floating-point"
        raise ValueError(f"{kind} pixels (mode {image.mode}) have no defined brightness range; use 8 or 16 bits")
    return image.convert("RGB")
