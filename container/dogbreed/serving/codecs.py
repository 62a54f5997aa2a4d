"""Content types of /invocations: request bodies → images, class probabilities → response bodies.

Decoders and encoders are dicts keyed by media type; nothing here imports torch or Flask.

Request bodies (Content-Type; parameters such as charset are ignored)
  image/jpeg, image/png, application/x-image, image/* (webp, bmp, gif, tiff):
      one image in any format Pillow reads (the format is sniffed, not trusted from the header).
  application/json: base64-encoded image files, one or many, in any of these shapes
      {"instances": [{"b64": "<base64>"}, {"b64": "<base64>"}]}   (TF-Serving / Vertex style)
      {"instances": ["<base64>", ...]}      {"images": ["<base64>", ...]}
      {"image": "<base64>"}                 ["<base64>", ...]
      A "data:image/...;base64," prefix and line breaks inside the base64 text are accepted.
  application/x-npy: a NumPy .npy file (never unpickled) of dtype uint8 and shape HxWx3 (one RGB image)
      or NxHxWx3 (N images).

Responses (Accept; absent or */* means application/json)
  application/json: one list of class probabilities per image, in request order, so that with the
      SageMaker SDK's JSONDeserializer `np.argmax(response, 1) + 1` and `np.argmax(response[0]) + 1` are
      1-based breed numbers (index order = class folder order: 001.Affenpinscher → 1):
      [[p_1, ..., p_C], ...]
  application/json;verbose=true, or custom attribute verbose=true or top_k=K (default K: 5): labelled
      {"predictions": [{"class": 1, "label": "001.Affenpinscher", "breed": "Affenpinscher",
                        "probability": 0.93, "top_k": [{"class": 1, "label": ..., "breed": ...,
                                                        "probability": 0.93}, ...]}, ...]}
  application/x-npy: float32 array N x C of probabilities.

X-Amzn-SageMaker-Custom-Attributes: "key=value" pairs separated by "," or ";": top_k=<1..C>,
verbose=true|false. Unknown keys are ignored.

Errors: 415 unsupported Content-Type, 406 unsupported Accept, 400 undecodable body, 413 an image
larger than the pixel limit or more than MAX_IMAGES_PER_REQUEST images.
"""

import base64
import binascii
import io
import json
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import NotAcceptable, PayloadTooLarge, ServingError, UnsupportedMediaType

MAX_IMAGES_PER_REQUEST = 256
DEFAULT_TOP_K = 5
JSON = "application/json"
NPY = "application/x-npy"

# An image as decoders hand it over: a lazily opened Pillow image (header checked, pixels not yet
# decoded) or an HxWx3 uint8 array. The predictor decodes and preprocesses it.
Image_ = Image.Image | np.ndarray


@dataclass(frozen=True)
class DecodeLimits:
    max_pixels: int  # per image, checked from the header before any pixel is decoded


def guard_decompression_bombs() -> None:
    """Make Pillow's DecompressionBombWarning an error too (process-wide; call once at start-up)."""
    warnings.simplefilter("error", Image.DecompressionBombWarning)


def open_image(data: bytes, limits: DecodeLimits) -> Image.Image:
    """Open an image file lazily: identify the format and size, refuse oversize before decoding."""
    try:
        image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLarge(f"image refused as a decompression bomb: {exc}") from None
    except Exception as exc:  # Pillow raises many types for hostile input; all mean "not an image"
        raise ServingError(f"cannot identify an image in the request body ({type(exc).__name__}: {exc})") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise ServingError(f"image has an empty size {width}x{height}")
    if width * height > limits.max_pixels:
        raise PayloadTooLarge(f"image is {width}x{height} pixels; the limit is {limits.max_pixels} pixels")
    return image


def decode_image(body: bytes, limits: DecodeLimits) -> list[Image_]:
    return [open_image(body, limits)]


def _b64(text: object, where: str) -> bytes:
    if not isinstance(text, str):
        raise ServingError(f"{where}: expected a base64 string, got {type(text).__name__}")
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        data = base64.b64decode(re.sub(r"\s+", "", text), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ServingError(f"{where}: invalid base64 ({exc})") from None
    if not data:
        raise ServingError(f"{where}: empty image")
    return data


def _json_items(doc: object) -> list[object]:
    """The base64 strings of a JSON request, in order, whichever documented shape it has."""
    if isinstance(doc, dict):
        if "instances" in doc:
            items = doc["instances"]
        elif "images" in doc:
            items = doc["images"]
        elif "image" in doc:
            items = [doc["image"]]
        else:
            raise ServingError('JSON object needs "instances", "images" or "image"')
    else:
        items = doc
    if isinstance(items, str):
        items = [items]
    if not isinstance(items, list):
        raise ServingError(f"expected a list of base64 images, got {type(items).__name__}")
    return [item["b64"] if isinstance(item, dict) and "b64" in item else item for item in items]


def decode_json(body: bytes, limits: DecodeLimits) -> list[Image_]:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ServingError(f"malformed JSON: {exc}") from None
    items = _json_items(doc)
    _check_count(len(items))
    return [open_image(_b64(item, f"image {i}"), limits) for i, item in enumerate(items)]


def decode_npy(body: bytes, limits: DecodeLimits) -> list[Image_]:
    """uint8 HxWx3 or NxHxWx3; the header is validated before np.load allocates anything."""
    stream = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read_header:
            raise ValueError(f".npy format version {version} is not supported (use 1.0 or 2.0)")
        shape, _, dtype = read_header[version](stream)
    except ValueError as exc:
        raise ServingError(f"not a .npy array: {exc}") from None
    if dtype != np.uint8 or len(shape) not in (3, 4) or shape[-1] != 3 or 0 in shape:
        raise ServingError(f"expected a uint8 array of shape HxWx3 or NxHxWx3, got {dtype} {shape}")
    if int(np.prod(shape)) != len(body) - stream.tell():
        raise ServingError(f"truncated .npy: shape {shape} needs {int(np.prod(shape))} bytes of data")
    height, width = shape[-3], shape[-2]
    if height * width > limits.max_pixels:
        raise PayloadTooLarge(f"image is {width}x{height} pixels; the limit is {limits.max_pixels} pixels")
    _check_count(shape[0] if len(shape) == 4 else 1)
    array = np.load(io.BytesIO(body), allow_pickle=False)
    return list(array) if array.ndim == 4 else [array]


def _check_count(count: int) -> None:
    if count == 0:
        raise ServingError("the request holds no images")
    if count > MAX_IMAGES_PER_REQUEST:
        raise PayloadTooLarge(f"{count} images in one request; at most {MAX_IMAGES_PER_REQUEST}")


DECODERS: dict[str, Callable[[bytes, DecodeLimits], list[Image_]]] = {
    "image/jpeg": decode_image,
    "image/jpg": decode_image,
    "image/png": decode_image,
    "image/webp": decode_image,
    "image/bmp": decode_image,
    "image/gif": decode_image,
    "image/tiff": decode_image,
    "application/x-image": decode_image,
    JSON: decode_json,
    NPY: decode_npy,
}


def decoder_for(content_type: str) -> Callable[[bytes, DecodeLimits], list[Image_]]:
    media_type = content_type.split(";", maxsplit=1)[0].strip().lower()
    if media_type not in DECODERS:
        shown = media_type or "(none)"
        raise UnsupportedMediaType(f"Content-Type {shown} is not supported; use one of {', '.join(DECODERS)}")
    return DECODERS[media_type]


# ---------------------------------------------------------------------------------------- responses


@dataclass(frozen=True)
class ResponseFormat:
    media_type: str = JSON
    top_k: int | None = None  # set: labelled JSON with this many classes per image


def parse_custom_attributes(header: str | None) -> dict[str, str]:
    """X-Amzn-SageMaker-Custom-Attributes as key=value pairs; anything else in it is ignored."""
    pairs = (part.partition("=") for part in re.split(r"[,;]", header or ""))
    return {key.strip().lower(): value.strip() for key, sep, value in pairs if sep and key.strip()}


def _parse_accept(header: str) -> list[tuple[str, dict[str, str]]]:
    """Media ranges ordered by q (stable); q=0 ranges dropped."""
    ranges = []
    for part in header.split(","):
        media_type, *params = (p.strip() for p in part.split(";"))
        options = {k.strip().lower(): v.strip() for k, _, v in (p.partition("=") for p in params)}
        try:
            quality = float(options.pop("q", "1"))
        except ValueError:
            quality = 1.0
        if media_type and quality > 0:
            ranges.append((quality, media_type.lower(), options))
    ranges.sort(key=lambda r: -r[0])
    return [(media_type, options) for _, media_type, options in ranges]


def _top_k(attributes: dict[str, str], num_classes: int) -> int | None:
    raw = attributes.get("top_k")
    if raw is None:
        return DEFAULT_TOP_K if attributes.get("verbose", "").lower() == "true" else None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ServingError(f"custom attribute top_k={raw!r}: expected a positive integer")
    return min(value, num_classes)


def negotiate(accept: str | None, custom_attributes: str | None, num_classes: int) -> ResponseFormat:
    """Pick the response format from Accept and the custom attributes; NotAcceptable lists the options."""
    top_k = _top_k(parse_custom_attributes(custom_attributes), num_classes)
    for media_type, options in _parse_accept(accept or "*/*"):
        if media_type in ("*/*", "application/*", JSON):
            if options.get("verbose", "").lower() == "true" and top_k is None:
                top_k = min(DEFAULT_TOP_K, num_classes)
            return ResponseFormat(JSON, top_k)
        if media_type == NPY:
            return ResponseFormat(NPY, None)
    raise NotAcceptable(f"Accept {accept} is not supported; use {JSON}, {JSON};verbose=true or {NPY}")


def breed_name(label: str) -> str:
    """'001.Affenpinscher' → 'Affenpinscher'; 'Afghan_hound' → 'Afghan hound'."""
    prefix, dot, rest = label.partition(".")
    name = rest if dot and prefix.isdigit() else label
    return name.replace("_", " ")


def _labelled(probabilities: np.ndarray, class_names: list[str], top_k: int) -> dict:
    predictions = []
    for row in probabilities:
        best = np.argsort(-row, kind="stable")[:top_k]
        ranked = [
            {
                "class": int(i) + 1,
                "label": class_names[i],
                "breed": breed_name(class_names[i]),
                "probability": float(row[i]),
            }
            for i in best
        ]
        predictions.append({**ranked[0], "top_k": ranked})
    return {"predictions": predictions}


def encode_json(probabilities: np.ndarray, class_names: list[str], top_k: int | None) -> bytes:
    if top_k:
        return json.dumps(_labelled(probabilities, class_names, top_k)).encode()
    return json.dumps(probabilities.tolist()).encode()


def encode_npy(probabilities: np.ndarray, class_names: list[str], top_k: int | None) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, probabilities.astype(np.float32), allow_pickle=False)
    return buffer.getvalue()


ENCODERS: dict[str, Callable[[np.ndarray, list[str], int | None], bytes]] = {JSON: encode_json, NPY: encode_npy}


def encode(probabilities: np.ndarray, class_names: list[str], response: ResponseFormat) -> bytes:
    """N x C probabilities → the response body in the negotiated format."""
    return ENCODERS[response.media_type](probabilities, class_names, response.top_k)
