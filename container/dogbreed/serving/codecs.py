"""Content types of /invocations: request bodies → images, class probabilities → response bodies.

Decoders and encoders are dicts keyed by media type; nothing here imports torch or Flask (multipart bodies are
parsed by Werkzeug, Flask's HTTP library).

Request bodies (Content-Type; parameters such as charset are ignored)
  image/<any subtype> (image/jpeg, image/png, image/*, ...), application/x-image: one image, its format
      sniffed from the bytes (not trusted from the header), one of IMAGE_FORMATS. Any Pillow mode decodes to
      8-bit RGB (16-bit grayscale scaled; signed, 32-bit and float images refused: presets.decode_rgb). An unreadable
      body declared as a format we do not read (image/heic) is a 415; otherwise a 400.
  application/json: base64-encoded image files, one or many, in any of these shapes
      {"instances": [{"b64": "<base64>"}, {"b64": "<base64>"}]}   (TF-Serving / Vertex style; also
      {"image_bytes": {"b64": "<base64>"}} and {"content": "<base64>"} as instances)
      {"instances": ["<base64>", ...]}      {"images": ["<base64>", ...]}
      {"image": "<base64>"}                 ["<base64>", ...]        an instance alone: {"b64": "<base64>"}
      A "data:image/...;base64," prefix, line breaks, the URL-safe alphabet (- and _) and missing "=" padding
      are accepted.
  application/jsonlines (also x-jsonlines, jsonl, x-ndjson): one JSON document per line, each in any of the
      shapes above (batch transform's SplitType=Line); images in line order, blank lines skipped.
  application/x-npy: a NumPy .npy file (never unpickled) of dtype uint8 and shape HxWx3 (one RGB image)
      or NxHxWx3 (N images).
  application/octet-stream (what the SageMaker SDK's default Predictor sends), or no Content-Type at all (Python
      requests' default for a bytes body; RFC 9110 section 8.3): a .npy file when the body starts with its magic
      bytes, JSON as above when it starts with { or [, else one image file as for image/<any subtype>.
  multipart/form-data (an HTML form's upload: curl -F image=@dog.jpg, Python requests' files=, a browser's
      <input type=file>): each file part is one image file, in the order of the parts (a file input left empty
      is skipped); the form's other fields are ignored.
  application/x-www-form-urlencoded (what curl --data-binary @dog.jpg sends without -H): read as
      application/octet-stream when the body is such a file; a real form's fields are a 415 that says how to
      send the file.

Responses (Accept; absent or */* means application/json)
  application/json: one list of class probabilities per image, in request order, so that with the
      SageMaker SDK's JSONDeserializer `np.argmax(response, 1) + 1` and `np.argmax(response[0]) + 1` are
      1-based breed numbers (index order = class folder order: 001.Affenpinscher → 1):
      [[p_1, ..., p_C], ...]
  application/json;verbose=true, or custom attribute verbose=true or top_k=K (default K: 5): labelled
      {"predictions": [{"class": 1, "label": "001.Affenpinscher", "breed": "Affenpinscher",
                        "probability": 0.93, "top_k": [{"class": 1, "label": ..., "breed": ...,
                                                        "probability": 0.93}, ...]}, ...]}
  application/jsonlines: one line per image: its list of probabilities, or with verbose/top_k its labelled
      prediction (the SDK's JSONLinesDeserializer; batch transform's AssembleWith=Line).
  application/x-npy: float32 array N x C of probabilities.
  text/csv (or text/*): one line of C comma-separated probabilities per image (not with verbose/top_k: 406).

X-Amzn-SageMaker-Custom-Attributes: "key=value" pairs separated by "," or ";", or a JSON object: top_k=<1..C>,
verbose=true|false. Unknown keys are ignored.

Errors: 415 unsupported Content-Type (a form's fields without a file say to send the file itself), 406 unsupported
Accept, 400 undecodable body, 413 when a request would cost far more than its bytes, checked from the headers
before any pixel is decoded: an image over the
pixel limit or the aspect-ratio limit (the eval resize would blow it up), a file whose structure would (JPEG scans
or header segments, PNG chunks, TIFF strips or tiles: formats.check_structure), all images together over the
request's pixel limit, or more than MAX_IMAGES_PER_REQUEST images; JSON of more arrays and objects than
JSON_CONTAINERS_PER_IMAGE per image, counted before it is parsed; a form of more than MAX_FORM_PARTS parts, or of
more than MAX_FORM_HEADER_BYTES of preamble and part headers, refused before they are parsed. The message names the
limit. Pillow's
decompression-bomb guard is handled here only (guard_decompression_bombs, pillow_errors): a bomb met while
opening or, in the predictor, decoding is a 413.
"""

import base64
import binascii
import dataclasses
import functools
import io
import itertools
import json
import math
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import orjson
from PIL import Image
from PIL.Jpeg2KImagePlugin import Jpeg2KImageFile
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Event, Field, File, MultipartDecoder, NeedData, Preamble, State

from .. import formats
from ..errors import NotAcceptable, PayloadTooLarge, ServingError, UnsupportedMediaType
from ..formats import IMAGE_FORMATS, JPEG2000_COST, MAX_ASPECT_RATIO, CostlyFile, jpeg2000_levels, too_elongated
from ..sm_env import DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_MAX_REQUEST_PIXELS, MAX_BATCH_SIZE

MAX_IMAGES_PER_REQUEST = MAX_BATCH_SIZE  # so one forward pass may hold a whole request
DEFAULT_TOP_K = 5
JSON = "application/json"
JSON_LINES = "application/jsonlines"  # SageMaker's name (batch transform, the SDK's JSONLinesDeserializer)
JSON_LINES_TYPES = (JSON_LINES, "application/x-jsonlines", "application/jsonl", "application/x-ndjson")
CSV = "text/csv"
NPY = "application/x-npy"
NPY_MAGIC = b"\x93NUMPY"
UTF8_BOM = b"\xef\xbb\xbf"  # before a JSON document, as some Windows tools write it
OCTET_STREAM = "application/octet-stream"
DATA_SERIALIZER = "file-path/raw-bytes"  # the SageMaker SDK's DataSerializer: a file's bytes, as octet-stream
FORM_DATA = "multipart/form-data"
FORM_URLENCODED = "application/x-www-form-urlencoded"
# A batch transform's JSON Lines request (MultiRecord packs records up to MaxPayloadInMB): served in requests' worth
# (record_chunks), so that at ~24 img/s (fp32 on 2 vCPUs) the longest still answers within the 60 s server timeout.
MAX_BATCH_RECORDS = 1024
MAX_FORM_PARTS = MAX_IMAGES_PER_REQUEST + 64  # each file part is an image; a few text fields may come beside them
# A form's preamble and part headers, in all. Werkzeug parses part headers in Python, ~1 µs a line: one part of
# 800 000 header lines (4.9 MB) cost 0.55-0.87 s, and its preamble search took 0.3 s for 6 MB. curl, browsers and
# requests send no preamble and 100-400 bytes of headers a part (320 parts with 255-character filenames: 105 KB).
# The body is fed to the parser FORM_FEED_BYTES at a time, so it parses at most the sum of the two: 160 KB of 3-byte
# header lines, the worst, cost ~30 ms.
MAX_FORM_HEADER_BYTES = 128 * 1024
FORM_FEED_BYTES = 32 * 1024
# A JSON request's arrays and objects, counted as its '[' and '{' bytes before json.loads builds any (base64 holds
# neither). The accepted shapes need at most 2 per image ({"image_bytes": {"b64": …}}) and 2 around them; the rest
# is room for a client's own fields. A serving worker's json.loads builds ~1.4 M empty containers a second, and the
# cyclic GC rescans them: a 6 MB body of 2 M empty lists cost 1.5-2.4 s before the image count refused it, where
# 16 x 256 = 4096 of them cost ~3 ms.
JSON_CONTAINERS_PER_IMAGE = 16


@dataclass(frozen=True)
class EncodedImage:
    """An image file from a request: its bytes, and Pillow's lazy view of them (format, mode and size read from the
    header and checked; no pixel decoded yet)."""

    data: bytes
    opened: Image.Image
    label: str | None = None  # how errors name it (a JSON Lines record: "line 3"); None: by its place in the request


# An image as decoders hand it over: an EncodedImage, or an HxWx3 uint8 array. The predictor decodes and
# preprocesses it (presets.decode_pixels).
Image_ = EncodedImage | np.ndarray


@dataclass(frozen=True)
class DecodeLimits:
    """The work one request may cause, checked from image headers before any pixel is decoded."""

    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS  # per image (width x height): DOGBREED_MAX_IMAGE_PIXELS
    max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS  # all images of a request: DOGBREED_MAX_REQUEST_PIXELS
    max_aspect_ratio: float = MAX_ASPECT_RATIO  # bounds the resized image to ratio x resize_size² pixels


def guard_decompression_bombs() -> None:
    """Make Pillow's DecompressionBombWarning an error too (process-wide; call once at start-up)."""
    warnings.simplefilter("error", Image.DecompressionBombWarning)


OBJECT_REPR = re.compile(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>")


def reason(exc: Exception) -> str:
    """A library's exception as a client may read it: its type and message, without the memory addresses of objects
    it names (Pillow's "<_io.BytesIO object at 0x7f...>", numpy's "<ast.Call object at 0x...>")."""
    return f"{type(exc).__name__}: {OBJECT_REPR.sub('', str(exc))}"


@contextmanager
def pillow_errors(where: str, unreadable: Callable[[Exception], ServingError] | None = None) -> Iterator[None]:
    """Pillow opening or decoding `where`: a decompression bomb or a file whose structure would cost far more than
    its bytes (formats.CostlyFile) is a 413 (here only, for opening and decoding alike); any other exception, of the
    many types Pillow raises for hostile or corrupt input, unreadable(exc) or else a 400 saying `where` cannot be
    decoded."""
    try:
        yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLarge(f"{where} refused as a decompression bomb: {exc}") from None
    except CostlyFile as exc:
        raise PayloadTooLarge(f"{where} is {exc}") from None
    except Exception as exc:
        if unreadable is not None:
            raise unreadable(exc) from None
        raise ServingError(f"{where} cannot be decoded ({reason(exc)})") from None


def check_size(width: int, height: int, limits: DecodeLimits, where: str = "image") -> None:
    """Refuse an image whose pixels or resized size would cost far more than its bytes (413 names the limit)."""
    if width < 1 or height < 1:
        raise ServingError(f"{where} has an empty size {width}x{height}")
    if width * height > limits.max_pixels:
        raise PayloadTooLarge(f"{where} is {width}x{height} pixels; the limit is {limits.max_pixels} pixels")
    if too_elongated(width, height, limits.max_aspect_ratio):
        raise PayloadTooLarge(
            f"{where} is {width}x{height} pixels: an aspect ratio over the limit of {limits.max_aspect_ratio:g}:1"
        )


def check_request(sizes: list[tuple[int, int]], limits: DecodeLimits) -> None:
    """Refuse a request with no images, too many, or more pixels in all than the request limit."""
    _check_count(len(sizes))
    total = sum(width * height for width, height in sizes)
    if total > limits.max_request_pixels:
        raise PayloadTooLarge(
            f"the request's {len(sizes)} image(s) hold {total} pixels; the limit is {limits.max_request_pixels}"
        )


def _check_count(count: int, limit: int = MAX_IMAGES_PER_REQUEST) -> None:
    """Refuse a request with no images or more than `limit` (checked before any is decoded)."""
    if count == 0:
        raise ServingError("the request holds no images")
    if count > limit:
        raise PayloadTooLarge(f"{count} images in one request; at most {limit}")


def open_image(data: bytes, limits: DecodeLimits, where: str = "image", media_type: str = "") -> EncodedImage:
    """Open an image file lazily: its structure checked (formats.check_structure), its format and size identified,
    oversize refused before decoding."""
    with pillow_errors(where, lambda exc: _unreadable(where, media_type, exc)):
        image = formats.open_image(data)
    check_size(*image.size, limits, where)
    if isinstance(image, Jpeg2KImageFile):
        check_jpeg2000(image.size, data, limits, where)
    return EncodedImage(data, image)


def check_jpeg2000(size: tuple[int, int], data: bytes, limits: DecodeLimits, where: str = "image") -> None:
    """Refuse a JPEG 2000 whose smallest resolution level holds more than max_pixels / JPEG2000_COST pixels: the
    predictor decodes it at the level its resize needs (presets.decode_pixels), no smaller than that one."""
    halvings = jpeg2000_levels(data)
    width, height = (-(-side >> halvings) for side in size)
    if width * height > (limit := limits.max_pixels // JPEG2000_COST):
        raise PayloadTooLarge(
            f"{where} is a JPEG 2000 of {size[0]}x{size[1]} pixels whose smallest resolution level is "
            f"{width}x{height}; the limit for JPEG 2000 is {limit} pixels there (1/{JPEG2000_COST} of other formats': "
            "it decodes slower)"
        )


def _unreadable(where: str, media_type: str, exc: Exception) -> ServingError:
    formats = ", ".join(IMAGE_FORMATS)
    kind, _, declared = media_type.partition("/")
    if kind == "image" and declared not in READABLE_SUBTYPES:  # e.g. image/heic: a format we do not read
        return UnsupportedMediaType(f"Content-Type {media_type}: this server reads only {formats} images")
    return ServingError(f"cannot identify a {formats} image in {where} ({reason(exc)})")


def decode_image(body: bytes, limits: DecodeLimits, media_type: str = "") -> list[Image_]:
    image = open_image(body, limits, "the request body", media_type)
    check_request([image.opened.size], limits)
    return [image]


URL_SAFE_TO_STANDARD = str.maketrans("-_", "+/")  # base64url (RFC 4648 section 5), as browsers' JS libraries write it


def _b64(text: object, where: str) -> bytes:
    if not isinstance(text, str):
        raise ServingError(f"{where}: expected a base64 string, got {type(text).__name__}")
    if text[:5].lower() == "data:":  # RFC 2397: the scheme is case-insensitive
        text = text.partition(",")[2]
    text = re.sub(r"\s+", "", text).translate(URL_SAFE_TO_STANDARD)
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)  # padding is often left out
    except (binascii.Error, ValueError) as exc:
        raise ServingError(f"{where}: invalid base64 ({exc})") from None
    if not data:
        raise ServingError(f"{where}: empty image")
    return data


INSTANCE_KEYS = frozenset({"b64", "image_bytes", "content"})  # an instance object's keys (_instance)


def _json_items(doc: object) -> list[object]:
    """The instances of a JSON request, in order, whichever documented shape it has (each an _instance: mapped once
    their count is checked)."""
    if isinstance(doc, dict):
        if "instances" in doc:
            items = doc["instances"]
        elif "images" in doc:
            items = doc["images"]
        elif "image" in doc:
            items = [doc["image"]]
        elif INSTANCE_KEYS.intersection(doc):  # one instance on its own, as a JSON Lines record often is
            items = [doc]
        else:
            raise ServingError(f'JSON object needs "instances", "images", "image" or one of {sorted(INSTANCE_KEYS)}')
    else:
        items = doc
    if isinstance(items, str):
        items = [items]
    if not isinstance(items, list):
        raise ServingError(f"expected a list of base64 images, got {type(items).__name__}")
    return items


def _instance(item: object) -> object:
    """An instance's base64 text: the item itself, or {"b64": …}, TF Serving's {"image_bytes": {"b64": …}} or
    Vertex AI's {"content": …}; anything else is handed on for _b64 to refuse."""
    if isinstance(item, dict):
        item = item.get("image_bytes", item)  # one level only: a hostile nesting cannot recurse
    if isinstance(item, dict):
        return next((item[key] for key in ("b64", "content") if key in item), item)
    return item


def _parse_json(text: bytes, where: str = "") -> object:
    _check_json_containers(text, MAX_IMAGES_PER_REQUEST, f"JSON{where}")
    try:
        return json.loads(text.removeprefix(UTF8_BOM))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ServingError(f"malformed JSON{where}: {exc}") from None


def _check_json_containers(text: bytes, images: int, what: str, advice: str = "") -> None:
    """Refuse JSON of more arrays and objects than `images` images' worth (JSON_CONTAINERS_PER_IMAGE), from a count
    of its bytes, before any is built."""
    containers, limit = text.count(b"[") + text.count(b"{"), JSON_CONTAINERS_PER_IMAGE * images
    if containers > limit:
        raise PayloadTooLarge(
            f"{what} holds {containers} arrays and objects ('[' and '{{'); at most {limit} "
            f"({JSON_CONTAINERS_PER_IMAGE} per image, for up to {images} images){advice}"
        )


def _open_images(count: int, images: Iterable[EncodedImage], limits: DecodeLimits) -> list[Image_]:
    """A request's images, opened one by one once their count is checked, then refused together if their pixels
    pass the request's limit."""
    _check_count(count)
    opened = list(images)
    check_request([image.opened.size for image in opened], limits)
    return opened


def _open_base64_images(items: list[object], limits: DecodeLimits) -> list[Image_]:
    opened = (open_image(_b64(_instance(item), f"image {i}"), limits, f"image {i}") for i, item in enumerate(items))
    return _open_images(len(items), opened, limits)  # the count before any base64 is decoded


def decode_json(body: bytes, limits: DecodeLimits, media_type: str = JSON) -> list[Image_]:
    return _open_base64_images(_json_items(_parse_json(body)), limits)


def decode_json_lines(body: bytes, limits: DecodeLimits, media_type: str = JSON_LINES) -> list[Image_]:
    """One image per line, each line in any of decode_json's shapes (batch transform's SplitType=Line packs several
    lines into a request), so that answer line N is record N's; blank lines are skipped."""
    lines = _json_lines(body)
    return _open_images(len(lines), (_record(number, line, limits) for number, line in enumerate(lines, 1)), limits)


def json_lines_records(body: bytes, limits: DecodeLimits) -> list[Image_ | ServingError]:
    """decode_json_lines for a batch transform job: up to MAX_BATCH_RECORDS records, each served on its own terms (a
    record that cannot be, 400 or 413, is its error, in its place), in requests' worth (record_chunks)."""
    lines = _json_lines(body, MAX_BATCH_RECORDS, " (lower the transform's MaxPayloadInMB)")
    _check_count(len(lines), MAX_BATCH_RECORDS)
    return [_record_or_error(number, line, limits) for number, line in enumerate(lines, 1)]


def record_chunks(images: list[EncodedImage], limits: DecodeLimits) -> Iterator[list[EncodedImage]]:
    """Consecutive runs of a batch request's records that one request may hold: at most MAX_IMAGES_PER_REQUEST
    images and max_request_pixels in all."""
    chunk: list[EncodedImage] = []
    pixels = 0
    for image in images:
        size = image.opened.size[0] * image.opened.size[1]
        if chunk and (len(chunk) == MAX_IMAGES_PER_REQUEST or pixels + size > limits.max_request_pixels):
            yield chunk
            chunk, pixels = [], 0
        chunk.append(image)
        pixels += size
    if chunk:
        yield chunk


def _json_lines(body: bytes, limit: int = MAX_IMAGES_PER_REQUEST, advice: str = "") -> list[bytes]:
    """The non-blank lines, found lazily and counted before any is parsed: a body of a million lines costs no more
    than reading `limit` of them; nor one of millions of arrays (_check_json_containers, over all lines)."""
    _check_json_containers(body, limit, "the JSON Lines body", advice)
    lines = list(itertools.islice(re.finditer(rb"\S[^\n]*", body), limit + 1))
    if len(lines) > limit:
        raise PayloadTooLarge(f"more than {limit} JSON Lines records in one request (one image each){advice}")
    return [line[0] for line in lines]


def _record(number: int, line: bytes, limits: DecodeLimits) -> EncodedImage:
    items = _json_items(_parse_json(line, f" in line {number}"))
    if len(items) != 1:
        raise ServingError(f"line {number} holds {len(items)} images: a JSON Lines record is one image")
    image = open_image(_b64(_instance(items[0]), f"line {number}"), limits, f"line {number}")
    return dataclasses.replace(image, label=f"line {number}")


def _record_or_error(number: int, line: bytes, limits: DecodeLimits) -> EncodedImage | ServingError:
    try:
        return _record(number, line, limits)
    except ServingError as exc:
        return exc


def decode_npy(body: bytes, limits: DecodeLimits, media_type: str = NPY) -> list[Image_]:
    """uint8 HxWx3 or NxHxWx3; the header is validated before np.load allocates anything."""
    stream = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read_header:
            raise ValueError(f".npy format version {version} is not supported (use 1.0 or 2.0)")
        shape, _, dtype = read_header[version](stream)
    except ValueError as exc:
        raise ServingError(f"not a .npy array: {reason(exc)}") from None
    if dtype != np.uint8 or len(shape) not in (3, 4) or shape[-1] != 3 or min(shape) < 1:
        raise ServingError(f"expected a uint8 array of shape HxWx3 or NxHxWx3, got {dtype} {shape}")
    if (data := len(body) - stream.tell()) != math.prod(shape):
        problem = "truncated" if data < math.prod(shape) else "extra bytes after the array in"
        raise ServingError(f"{problem} .npy: shape {shape} needs {math.prod(shape)} bytes of data, got {data}")
    count, (height, width) = (shape[0] if len(shape) == 4 else 1), shape[-3:-1]
    check_size(width, height, limits, "the array's image")
    check_request([(width, height)] * count, limits)
    array = np.load(io.BytesIO(body), allow_pickle=False)
    return list(array) if array.ndim == 4 else [array]


def decode_octet_stream(body: bytes, limits: DecodeLimits, media_type: str = OCTET_STREAM) -> list[Image_]:
    """Untyped bytes, read as what they are (_sniffed): an array, a JSON document or one image file."""
    return _sniffed(body)(body, limits, media_type)


def _sniffed(body: bytes) -> Callable[[bytes, DecodeLimits, str], list[Image_]]:
    """The decoder of untyped bytes: a .npy array by its magic bytes, JSON by { or [ first (after blanks or a UTF-8
    BOM; no image format starts so), else an image file."""
    if body.startswith(NPY_MAGIC):
        return decode_npy
    if body.removeprefix(UTF8_BOM).lstrip()[:1] in (b"{", b"["):
        return decode_json
    return decode_image


SEND_THE_FILE = "send the image file itself as the body (curl --data-binary @dog.jpg -H 'Content-Type: image/jpeg')"


def decode_form_urlencoded(body: bytes, limits: DecodeLimits, media_type: str = FORM_URLENCODED) -> list[Image_]:
    """curl --data-binary @dog.jpg without -H declares the file a form: read it as untyped bytes when it is a file
    decode_octet_stream reads; a body it cannot read (a form's fields) is a 415 with the how-to, but a JSON document
    or .npy array keeps its own 400 (what is wrong in it)."""
    decode = _sniffed(body)
    try:
        return decode(body, limits, media_type)
    except ServingError as exc:
        if exc.status != 400 or decode is not decode_image:
            raise
        raise UnsupportedMediaType(f"a form's fields ({FORM_URLENCODED}) hold no image file: {SEND_THE_FILE}") from None


def decode_form_data(body: bytes, limits: DecodeLimits, media_type: str = FORM_DATA, *, boundary: str) -> list[Image_]:
    """An HTML form's upload: each non-empty file part is one image file (its format sniffed), in order."""
    files = [(name, part_type, data) for name, part_type, data in _form_files(body, boundary) if data]
    if not files:
        raise ServingError(
            f"the form holds no image file: upload it as a file field (curl -F image=@dog.jpg) or {SEND_THE_FILE}"
        )
    opened = (open_image(data, limits, f"form file {i} ({name!r})", kind) for i, (name, kind, data) in enumerate(files))
    return _open_images(len(files), opened, limits)


def _form_files(body: bytes, boundary: str) -> list[tuple[str, str, bytes]]:
    """(filename, declared media type, bytes) of each file part of a multipart/form-data body, in order."""
    files: list[tuple[str, str, list[bytes]]] = []
    chunks: list[bytes] | None = None  # the current part's, when it is a file
    try:
        for event in _form_events(body, boundary):
            if isinstance(event, File):
                chunks = []
                files.append((event.filename, media_type_of(event.headers.get("Content-Type", "")), chunks))
            elif isinstance(event, Field):
                chunks = None
            elif isinstance(event, Data) and chunks is not None:
                chunks.append(event.data)
    except RequestEntityTooLarge:
        raise PayloadTooLarge(f"more than {MAX_FORM_PARTS} parts in one form") from None
    except ValueError as exc:
        raise ServingError(f"malformed {FORM_DATA} body ({exc})") from None
    return [(name, part_type, b"".join(chunks)) for name, part_type, chunks in files]


def _form_events(body: bytes, boundary: str) -> Iterator[Event]:
    """Werkzeug's events for a whole multipart body, up to its Epilogue (a part cut short is an error, not a wait for
    more). The body is fed FORM_FEED_BYTES at a time, so that a preamble and part headers over MAX_FORM_HEADER_BYTES
    in all are refused before the parser reads on."""
    decoder = MultipartDecoder(boundary.encode("latin-1"), max_parts=MAX_FORM_PARTS)
    headers = 0  # bytes the Preamble, File and Field events consumed
    pieces = (body[start : start + FORM_FEED_BYTES] for start in range(0, len(body), FORM_FEED_BYTES))
    for piece in itertools.chain(pieces, [None]):
        decoder.receive_data(piece)
        while True:
            held = len(decoder.buffer)
            event = decoder.next_event()
            if isinstance(event, (Preamble, File, Field)):
                headers += held - len(decoder.buffer)
            unparsed = len(decoder.buffer) if decoder.state in (State.PREAMBLE, State.PART) else 0
            if headers + unparsed > MAX_FORM_HEADER_BYTES:
                raise PayloadTooLarge(
                    f"a form's preamble and part headers of more than {MAX_FORM_HEADER_BYTES} bytes in all "
                    "(a file part's headers take a few hundred)"
                )
            if isinstance(event, NeedData):
                break
            yield event
            if isinstance(event, Epilogue):
                return


# RFC 2046 section 5.1.1: 1 to 70 of these characters, not ending in a space (what curl, browsers and requests send).
BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")


def _form_data_decoder(content_type: str) -> Callable[[bytes, DecodeLimits, str], list[Image_]]:
    boundary = parse_options_header(content_type)[1].get("boundary")
    if not boundary:
        raise ServingError(f"Content-Type {FORM_DATA} needs its boundary parameter (as curl -F and browsers send it)")
    if not BOUNDARY.fullmatch(boundary):
        raise ServingError(f"the {FORM_DATA} boundary {boundary!r} is not 1-70 of the characters RFC 2046 allows")
    return functools.partial(decode_form_data, boundary=boundary)


DECODERS: dict[str, Callable[[bytes, DecodeLimits, str], list[Image_]]] = {
    "image/*": decode_image,  # any image/<subtype>: the format is sniffed from the bytes
    "application/x-image": decode_image,
    JSON: decode_json,
    **dict.fromkeys(JSON_LINES_TYPES, decode_json_lines),
    NPY: decode_npy,
    OCTET_STREAM: decode_octet_stream,
    DATA_SERIALIZER: decode_octet_stream,
    FORM_URLENCODED: decode_form_urlencoded,
    FORM_DATA: decode_form_data,  # with the request's boundary (decoder_for)
}
# image/<subtype> values naming a format we read; an unreadable body declared as another (image/heic) is a 415.
READABLE_SUBTYPES = frozenset(
    "* jpeg jpg pjpeg png apng webp avif gif bmp x-ms-bmp tiff jp2 jpx "  # noqa: SIM905
    "x-portable-anymap x-portable-pixmap x-tga x-targa mpo".split()
)


def media_type_of(content_type: str) -> str:
    """The media type of a Content-Type header, lower-case, parameters dropped."""
    return content_type.split(";", maxsplit=1)[0].strip().lower()


def decoder_for(content_type: str) -> Callable[[bytes, DecodeLimits, str], list[Image_]]:
    """The decoder of a Content-Type header (parameters included: a form's boundary)."""
    # No Content-Type (Python requests' default for a bytes body): RFC 9110 section 8.3 lets the server take the body
    # as application/octet-stream, whose bytes are sniffed.
    media_type = media_type_of(content_type) or OCTET_STREAM
    key = "image/*" if media_type.startswith("image/") and media_type != "image/" else media_type
    if key not in DECODERS:
        raise UnsupportedMediaType(f"Content-Type {media_type} is not supported; use one of {', '.join(DECODERS)}")
    return _form_data_decoder(content_type) if key == FORM_DATA else DECODERS[key]


# ---------------------------------------------------------------------------------------- responses


@dataclass(frozen=True)
class ResponseFormat:
    media_type: str = JSON
    top_k: int | None = None  # set: labelled JSON with this many classes per image


def parse_custom_attributes(header: str | None) -> dict[str, str]:
    """X-Amzn-SageMaker-Custom-Attributes as key=value pairs, or a JSON object ({"top_k": 3}); anything else in it
    is ignored (the header is opaque to SageMaker: other tools may put their own data in it)."""
    if (header or "").lstrip().startswith("{"):
        try:
            doc = json.loads(header)
        except (ValueError, RecursionError):
            doc = None
        if isinstance(doc, dict):
            return {str(key).strip().lower(): json.dumps(value).strip('"') for key, value in doc.items()}
    pairs = (part.partition("=") for part in re.split(r"[,;]", header or ""))
    return {key.strip().lower(): value.strip() for key, sep, value in pairs if sep and key.strip()}


def _parse_accept(header: str) -> list[tuple[str, dict[str, str]]]:
    """Media ranges ordered by q (stable); q=0 ranges dropped. Empty list elements are ignored (RFC 9110 section
    5.6.1.2): a header of none (",", blanks) is as if absent, "*/*" (section 12.5.1)."""
    ranges = []
    for part in header.split(","):
        media_type, *params = (p.strip() for p in part.split(";"))
        options = {k.strip().lower(): v.strip() for k, _, v in (p.partition("=") for p in params)}
        if media_type:
            ranges.append((_quality(options.pop("q", "1")), media_type.lower(), options))
    if not ranges:
        return [("*/*", {})]
    ranges.sort(key=lambda r: -r[0])
    return [(media_type, options) for quality, media_type, options in ranges if quality > 0]


def _quality(text: str) -> float:
    """An Accept weight (RFC 9110's qvalue, 0 to 1): one out of range is clamped; one that is no number (q=abc, q=nan)
    counts as 1, as if the range had none."""
    try:
        quality = float(text)
    except ValueError:
        return 1.0
    return 1.0 if math.isnan(quality) else min(max(quality, 0.0), 1.0)


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
    labelled = None
    for media_type, options in _parse_accept(accept or ""):
        verbose = options.get("verbose", "").lower() == "true"  # application/json;verbose=true
        labelled = min(DEFAULT_TOP_K, num_classes) if verbose and top_k is None else top_k
        if media_type in ("*/*", "application/*", JSON):
            return ResponseFormat(JSON, labelled)
        if media_type in JSON_LINES_TYPES:
            return ResponseFormat(JSON_LINES, labelled)
        if labelled is None and media_type == NPY:  # labelled predictions (top_k, verbose) are no array
            return ResponseFormat(NPY, None)
        if labelled is None and media_type in (CSV, "text/*"):  # nor CSV
            return ResponseFormat(CSV, None)
    if labelled:
        raise NotAcceptable(
            f"Accept {accept}: labelled predictions (top_k, verbose) are written as {JSON} or {JSON_LINES}"
        )
    raise NotAcceptable(
        f"Accept {accept} is not supported; use {JSON}, {JSON};verbose=true, {JSON_LINES}, {NPY} or {CSV}"
    )


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
                "probability": row[i],  # a float32, written as its shortest exact text
            }
            for i in best
        ]
        predictions.append({**ranked[0], "top_k": ranked})
    return {"predictions": predictions}


def encode_json(probabilities: np.ndarray, class_names: list[str], top_k: int | None) -> bytes:
    """float32 probabilities as their shortest text that reads back exactly (orjson: 2.6 µs per 133-class row, and
    1.7 KB, where json.dumps of tolist() took 58 µs of the request thread's GIL for 2.9 KB of float64 digits)."""
    document = _labelled(probabilities, class_names, top_k) if top_k else np.ascontiguousarray(probabilities)
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)


def encode_json_lines(probabilities: np.ndarray, class_names: list[str], top_k: int | None) -> bytes:
    """One line per image: its probability list, or its labelled prediction (as encode_json's, one per line)."""
    rows = _labelled(probabilities, class_names, top_k)["predictions"] if top_k else np.ascontiguousarray(probabilities)
    return b"".join(orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n" for row in rows)


def encode_json_lines_records(
    answers: list[np.ndarray | ServingError], class_names: list[str], top_k: int | None
) -> bytes:
    """encode_json_lines of each record's answer (its probabilities), a refused record's {"error", "status"} line."""
    served = [answer for answer in answers if not isinstance(answer, ServingError)]
    probabilities = np.stack(served) if served else np.empty((0, len(class_names)), np.float32)
    rows = iter(encode_json_lines(probabilities, class_names, top_k).splitlines(keepends=True))
    return b"".join(
        orjson.dumps({"error": str(answer), "status": answer.status}) + b"\n"
        if isinstance(answer, ServingError)
        else next(rows)
        for answer in answers
    )


def encode_csv(probabilities: np.ndarray, class_names: list[str], top_k: int | None) -> bytes:
    """One line of C comma-separated probabilities per image (the SDK's CSVDeserializer reads them)."""
    return b"".join(
        orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1] + b"\n"
        for row in np.ascontiguousarray(probabilities)
    )


def encode_npy(probabilities: np.ndarray, class_names: list[str], top_k: int | None) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, probabilities.astype(np.float32), allow_pickle=False)
    return buffer.getvalue()


ENCODERS: dict[str, Callable[[np.ndarray, list[str], int | None], bytes]] = {
    JSON: encode_json,
    JSON_LINES: encode_json_lines,
    NPY: encode_npy,
    CSV: encode_csv,
}


def encode(probabilities: np.ndarray, class_names: list[str], response: ResponseFormat) -> bytes:
    """N x C probabilities → the response body in the negotiated format."""
    return ENCODERS[response.media_type](probabilities, class_names, response.top_k)
