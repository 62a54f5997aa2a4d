"""Image preprocessing, defined once: training augmentation and the eval transform serving reuses."""

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import ExifTags, Image
from PIL.Jpeg2KImagePlugin import Jpeg2KImageFile
from PIL.JpegImagePlugin import JpegImageFile
from PIL.TiffImagePlugin import BITSPERSAMPLE, SAMPLEFORMAT
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import v2 as T
from torchvision.transforms.v2 import functional as F

from .formats import jpeg2000_levels, jpeg_arithmetic, jpeg_scans

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
        if not augment:
            self.transforms = ClassificationPresetEval(config=config)
            return
        self.transforms = T.Compose(
            [
                T.PILToTensor(),
                T.RandomResizedCrop(config.image_size, antialias=True),
                T.RandomHorizontalFlip(),
                T.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
                T.ToDtype(torch.float32, scale=True),
                T.Normalize(config.mean, config.std),
            ]
        )

    def __call__(self, img):
        return self.transforms(img)


class ClassificationPresetEval:
    """Resize the short side, centre-crop, scale to [0, 1], normalise: training's validation view, and serving's.

    Takes a Pillow image or 8-bit RGB pixels as a 3 x H x W uint8 tensor; returns 3 x S x S float32 whose memory
    is pixel-major (channels_last, as the served model reads it). Direct calls rather than a v2 Compose, as it runs
    once per request: (x - 255 mean) / (255 std) over rows of pixels, with each channel's constants tiled along the
    row, is one vectorised pass where a per-channel normalise of pixel-major memory is not.
    """

    def __init__(self, *, config: PreprocessConfig):
        self.config = config
        self._row_mean = (torch.tensor(config.mean) * 255).repeat(config.image_size)
        self._row_scale = (1 / (torch.tensor(config.std) * 255)).repeat(config.image_size)

    def __call__(self, img: Image.Image | torch.Tensor) -> torch.Tensor:
        pixels = F.pil_to_tensor(img) if isinstance(img, Image.Image) else img
        size = self.config.image_size
        crop = F.center_crop(F.resize(pixels, [self.config.resize_size], antialias=True), [size])
        rows = crop.permute(1, 2, 0).reshape(size, size * 3)  # a view when the pixels are pixel-major, as decoded
        return torch.sub(rows, self._row_mean).mul_(self._row_scale).view(size, size, 3).permute(2, 0, 1)


def decode_rgb(image: Image.Image, *, config: PreprocessConfig | None = None) -> Image.Image:
    """Decode a lazily opened image to 8-bit RGB pixels, upright, for training and serving alike.

    Upright: a phone photo's EXIF Orientation (rotated or mirrored sensor data) is applied, as photo viewers do.
    Pillow's convert("RGB") clips wider modes: a 16-bit grayscale PNG ("I;16") would become all white.
    So 16-bit grayscale (PNG, TIFF, PGM) is scaled to 8 bits (65535 → 255); signed and 32-bit integer ("I") and float
    ("F") images carry no brightness range to scale from and are refused (ValueError) rather than guessed. With
    config, a JPEG is decoded by libjpeg's DCT scaling (draft mode) straight to the smallest power-of-two reduction
    whose short side still covers config.resize_size, so the eval transform's resize starts from fewer pixels.
    """
    if (size := _draft_size(image, config)) is not None:
        image.draft("RGB", size)
    rgb = _rgb(image)  # decodes; a TIFF's loader turns it upright itself and drops its Orientation tag
    upright = ORIENTATIONS.get(image.getexif().get(ExifTags.Base.Orientation, 1))  # so read only after decoding
    return rgb.transpose(upright) if upright is not None else rgb


# EXIF Orientation → the transposition that makes the pixels upright (EXIF 2.32, as ImageOps.exif_transpose).
ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _sixteen_bit_gray(image: Image.Image) -> bool:
    """16-bit grayscale, 0..65535: Pillow's I;16 modes, and a PGM of more than 8 bits, which Pillow reads as mode I
    rescaled from its maxval to 0..65535."""
    return image.mode.startswith("I;16") or (image.mode == "I" and image.format == "PPM")


def _unscaled_kind(image: Image.Image) -> str:
    """What a mode I or F image's pixels are: floating-point, or integers of a TIFF's BitsPerSample and SampleFormat
    (Pillow reads signed 16-bit ones as mode I too), else 32-bit ones."""
    if image.mode == "F":
        return "floating-point"
    tags = getattr(image, "tag_v2", {})  # a TIFF's
    signed = tags.get(SAMPLEFORMAT, (1,))[0] == 2
    return f"{'signed ' if signed else ''}{tags.get(BITSPERSAMPLE, (32,))[0]}-bit integer"


def _rgb(image: Image.Image) -> Image.Image:
    if _sixteen_bit_gray(image):
        gray = np.asarray(image).astype(np.float32) / 257
        return Image.fromarray(np.rint(gray).astype(np.uint8)).convert("RGB")
    if image.mode in ("I", "F"):
        raise ValueError(
            f"{_unscaled_kind(image)} pixels (mode {image.mode}) have no defined brightness range; use unsigned 8 or "
            "16 bits"
        )
    if image.mode == "RGB":  # convert would copy the decoded pixels
        image.load()
        return image
    return image.convert("RGB")


def decode_pixels(image: Image.Image, data: bytes, *, config: PreprocessConfig | None = None) -> torch.Tensor:
    """decode_rgb's pixels as a 3 x H x W uint8 tensor (pixel-major), from a lazily opened image and its file's bytes.

    A JPEG (RGB, grayscale or CMYK) that draft mode would not reduce is decoded by torchvision.io.decode_jpeg
    instead: the same libjpeg-turbo decode, bit for bit (tests/unit/test_presets.py), straight into a tensor, without
    Pillow's three copies of the pixels (tobytes in 64 KB pieces, join, array) under the GIL. So is an
    arithmetic-coded one, drafted or not: Pillow feeds libjpeg-turbo the file in pieces, and its arithmetic decoding
    cannot resume after one (a photo over ~64 KB fails), torchvision gives it the whole file. If
    torchvision refuses the file, Pillow decodes it or raises the error its callers handle. With config, a JPEG 2000
    is decoded at the reduced resolution its eval resize needs (_jpeg2000_reduce), as a JPEG in draft mode.
    """
    whole = _draft_size(image, config) is None or jpeg_arithmetic(data)
    if isinstance(image, JpegImageFile) and image.mode in ("RGB", "L", "CMYK") and whole:
        try:
            encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
            return decode_jpeg(encoded, mode=ImageReadMode.RGB, apply_exif_orientation=True)
        except RuntimeError:
            pass
    if isinstance(image, Jpeg2KImageFile):
        image.reduce = _jpeg2000_reduce(image, data, config)
    return F.pil_to_tensor(decode_rgb(image, config=config))


def decoded_size(image: Image.Image, data: bytes, *, config: PreprocessConfig | None = None) -> tuple[int, int]:
    """The size decode_pixels decodes a lazily opened image (and its file's bytes) at: its own, a large JPEG's draft
    reduction (Pillow's rule: the largest of 8, 4, 2 that keeps both sides at least the size asked for), or a large
    JPEG 2000's reduced resolution."""
    width, height = image.size
    if (wanted := _draft_size(image, config)) is not None:
        scale = min(width // wanted[0], height // wanted[1])
        reduction = next(r for r in (8, 4, 2, 1) if scale >= r)
        return -(-width // reduction), -(-height // reduction)
    halvings = _jpeg2000_reduce(image, data, config)
    return -(-width >> halvings), -(-height >> halvings)


def _jpeg2000_reduce(image: Image.Image, data: bytes, config: PreprocessConfig | None) -> int:
    """How many times a JPEG 2000 is halved while decoding (Pillow's reduce, the analogue of JPEG's draft mode): as
    many as its resolution levels allow while the short side still covers config's resize, and Pillow's rounding of
    the reduced size (half up) matches openjpeg's (up), else the decode fails (1001 / 4: 250 against 251); 0 for
    other images."""
    if config is None or not isinstance(image, Jpeg2KImageFile):
        return 0
    most = min((min(image.size) // config.resize_size).bit_length() - 1, jpeg2000_levels(data))
    fits = (r for r in range(most, 0, -1) if all((side + (1 << r >> 1)) >> r == -(-side >> r) for side in image.size))
    return next(fits, 0)


def decode_footprint(image: Image.Image, data: bytes, *, config: PreprocessConfig | None = None) -> int:
    """What decoding a lazily opened image holds in memory, in pixels of decoded_size: its decoded pixels, but for a
    JPEG of more than one scan (progressive, or one scan per component) libjpeg's buffer of the whole image's DCT
    coefficients, 2 bytes per sample at full size whatever draft mode asks for (16 progressive 40 MP JPEGs of
    880 KB each, decoded at once, took a worker from 0.8 to 4.5 GB)."""
    if isinstance(image, JpegImageFile) and jpeg_scans(data) > 1:
        return 2 * image.size[0] * image.size[1]
    if jpeg_arithmetic(data):  # decoded whole (decode_pixels)
        return image.size[0] * image.size[1]
    width, height = decoded_size(image, data, config=config)
    return width * height


def _draft_size(image: Image.Image, config: PreprocessConfig | None) -> tuple[int, int] | None:
    """The size to ask draft mode for: a JPEG at least twice as large as config's resize needs, else None."""
    if config is None or not isinstance(image, JpegImageFile):  # JPEG, and MPO: a camera's JPEG + more pictures
        return None
    width, height = image.size
    scale = config.resize_size / min(width, height)
    return (math.ceil(width * scale), math.ceil(height * scale)) if scale < 0.5 else None
