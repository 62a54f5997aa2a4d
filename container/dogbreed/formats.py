"""The image files we read, and what decoding one may cost beyond its pixel count: shared by training's loader and
serving's codecs (torch-free, as the codecs are)."""

import io
import re
from collections import deque
from collections.abc import Iterator

import numpy as np
from PIL import Image, TiffImagePlugin
from PIL.TiffImagePlugin import (
    COMPRESSION,
    IMAGELENGTH,
    IMAGEWIDTH,
    PLANAR_CONFIGURATION,
    ROWSPERSTRIP,
    SAMPLESPERPIXEL,
    STRIPOFFSETS,
    TILELENGTH,
    TILEOFFSETS,
    TILEWIDTH,
)

# Raster formats we decode, in training and serving alike. Pillow's other plugins stay unreachable (EPS would run
# Ghostscript; PDF is write-only; MPEG is video); a file is identified by its bytes, never by its name. Each of these
# readers only reads headers when opened, so every size check runs before a pixel is decoded: not ICO, whose reader
# decodes its largest picture on open (a 155 KB icon holding a 1x80000000 PNG took 1.7 s and 650 MB to refuse).
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "AVIF", "GIF", "BMP", "DIB", "TIFF", "JPEG2000", "PPM", "TGA")
# Training finds its images by these names (.jpg, .jfif, .png, .tif, .avif, ...: each Pillow registers for them).
IMAGE_EXTENSIONS = tuple(sorted(ext for ext, fmt in Image.registered_extensions().items() if fmt in IMAGE_FORMATS))

# The eval resize scales the short side to resize_size: a 400000x1 strip would grow 70x (serving refuses it, training
# skips it).
MAX_ASPECT_RATIO = 20


def named_as_image(name: str) -> bool:
    """Whether a file name has one of IMAGE_EXTENSIONS, in any case."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def too_elongated(width: int, height: int, max_ratio: float = MAX_ASPECT_RATIO) -> bool:
    """Whether the long side is over max_ratio times the short one."""
    return max(width, height) > max_ratio * min(width, height)


# Progressive encoders write about 10 scans; each scan is one more pass over every coefficient of the image, so a
# 59-byte scan repeated decodes for 15 ms per copy at 36 MP: 6 MB of them would hold a core for 25 minutes.
MAX_JPEG_SCANS = 100


def jpeg_scans(data: bytes) -> int:
    """Start-of-scan markers in a JPEG file: entropy-coded data never holds FF DA (a data FF is stuffed as FF 00).
    Counted by numpy: bytes.count takes 4x as long on a JPEG, whose many FF bytes each start a partial match (90 µs
    for a 110 KB photo, twice per served image: check_structure, presets.decode_footprint)."""
    octets = np.frombuffer(data, np.uint8)
    return int(np.count_nonzero((octets[1:] == 0xDA) & (octets[:-1] == 0xFF)))


class CostlyFile(ValueError):
    """An image file whose structure, not its pixel count, would make opening or decoding it cost far more than its
    bytes: refused before Pillow reads it (serving answers 413, training skips the file)."""


def open_image(data: bytes) -> Image.Image:
    """Pillow's lazy view of an image file of IMAGE_FORMATS (header read, no pixel decoded), once check_structure
    has passed it: the one way training and serving open a file."""
    check_structure(data)
    return Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)


def check_structure(data: bytes) -> None:
    """Refuse (CostlyFile) a JPEG, PNG or TIFF whose scans, segments, chunks or strips are far more than an ordinary
    file's: Pillow walks each in Python, holding the GIL, so their number, not the pixels, sets the cost. Each check
    reads the bytes with C-speed searches or at most its limit's worth of Python steps."""
    if data.startswith(JPEG_SOI):
        if (scans := jpeg_scans(data)) > MAX_JPEG_SCANS:
            raise CostlyFile(f"a JPEG of {scans} scans; the limit is {MAX_JPEG_SCANS}")
        deque(_jpeg_markers(data), maxlen=0)
    elif data.startswith(PNG_SIGNATURE):
        _check_png_chunks(data)
    elif data[:4] in TiffImagePlugin.PREFIXES:
        _check_tiff(data)


JPEG_SOI = b"\xff\xd8\xff"  # what Pillow identifies a JPEG (or MPO) by
JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOFn; not DHT, JPG, DAC
JPEG_STANDALONE = frozenset({0x00, 0x01, *range(0xD0, 0xD9)})  # no length: FF00 (a stuffed byte), TEM, RSTn, SOI
JPEG_MARKER = re.compile(rb"\xff+(.)", re.DOTALL)  # any fill bytes (FF) and the marker's code
# Pillow reads a JPEG's header (SOI to the first scan) in Python: ~0.8 us per segment, ~0.35 us per fill or stray
# byte between them (1.5 M empty comment segments took 1.9 s, 6 MB of FF fill bytes 3.2 s). A camera's header holds
# 10-30 segments (a 1 MB ICC profile: 16 more) and no fill bytes; these limits cost Pillow ~1 ms each.
MAX_JPEG_SEGMENTS = 1000
MAX_JPEG_STRAY_BYTES = 4096


def _jpeg_markers(data: bytes) -> Iterator[int]:
    """The markers of a JPEG's header, SOI to the first scan (SOS), found by their segments' lengths, so no byte of
    a payload (EXIF, comments) is read as one; CostlyFile past MAX_JPEG_SEGMENTS or MAX_JPEG_STRAY_BYTES."""
    position, segments, stray = 2, 0, 0
    while found := JPEG_MARKER.search(data, position):
        marker = found[1][0]
        stray += found.end() - 2 - position + 2 * (marker == 0)
        segments += marker != 0
        _check_jpeg_header(segments, stray)
        if marker in (0xD9, 0xDA):  # EOI, SOS: Pillow's walk ends
            return
        yield marker
        length = 0 if marker in JPEG_STANDALONE else int.from_bytes(data[found.end() : found.end() + 2], "big")
        position = found.end() + length
    _check_jpeg_header(segments, stray + len(data) - position)  # Pillow reads what no marker follows byte by byte


def _check_jpeg_header(segments: int, stray: int) -> None:
    if segments > MAX_JPEG_SEGMENTS:
        raise CostlyFile(f"a JPEG of more than {MAX_JPEG_SEGMENTS} segments before its image data (the limit)")
    if stray > MAX_JPEG_STRAY_BYTES:
        raise CostlyFile(f"a JPEG of more than {MAX_JPEG_STRAY_BYTES} fill or stray bytes in its header (the limit)")


# SOF9-11 and SOF13-15: arithmetic entropy coding (decoded by torchvision: presets.decode_pixels).
ARITHMETIC_FRAMES = frozenset({0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def jpeg_arithmetic(data: bytes) -> bool:
    """Whether a JPEG's frame is arithmetic-coded (its first SOFn marker; check_structure bounds the walk)."""
    if not data.startswith(JPEG_SOI):
        return False
    return next((marker for marker in _jpeg_markers(data) if marker in JPEG_FRAMES), None) in ARITHMETIC_FRAMES


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Pillow reads a PNG's chunks in Python, ~2 us each: 500 000 empty ones (6 MB) took 1.0 s to open, as many empty
# IDATs 0.9 s to decode. libpng writes 8 KB IDATs (a 6 MB photo: ~750 chunks); 65536 chunks cost Pillow ~0.13 s and
# this walk ~0.03 s.
MAX_PNG_CHUNKS = 65536


def _check_png_chunks(data: bytes) -> None:
    """Refuse a PNG of more than MAX_PNG_CHUNKS chunks before IEND, walked by their lengths."""
    position, chunks = len(PNG_SIGNATURE), 0
    while position + 8 <= len(data) and data[position + 4 : position + 8] != b"IEND":
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise CostlyFile(f"a PNG of more than {MAX_PNG_CHUNKS} chunks (the limit)")
        position += 12 + int.from_bytes(data[position : position + 4], "big")


# Pillow reads a TIFF directory's entries in Python, ~8 us each, more than once: a 6 MB BigTIFF of 300 000 entries
# took 9.5 s. A camera's or scanner's directory holds 15-100; 4096 cost ~40 ms.
MAX_TIFF_ENTRIES = 4096
# Pillow decodes an uncompressed TIFF strip by strip (or tile by tile) in Python, ~4 us each, and makes one per
# offset listed, wrapping past the bottom of the image (libtiff, which decodes compressed ones, reads no more than the
# geometry holds): a 5.8 MB file listing one 500x499 strip 700 000 times took 8 s and 80 MB; 640 000 1x1 tiles of an
# 800x800 image 2.4 s. Photos hold one strip or tile per 8-64 KB (a 40 MP one, planar, one row per strip: 22 000);
# 65536 cost ~0.25 s.
MAX_TIFF_BLOCKS = 65536


def _check_tiff(data: bytes) -> None:
    """Refuse a TIFF whose first image (the one Pillow opens) has over MAX_TIFF_ENTRIES directory entries, lists more
    strips or tiles than MAX_TIFF_BLOCKS, or, uncompressed, than its geometry holds (_tiff_blocks)."""
    ifd = _tiff_directory(data)
    kind, offsets = ("strips", ifd.get(STRIPOFFSETS)) if STRIPOFFSETS in ifd else ("tiles", ifd.get(TILEOFFSETS, ()))
    listed = len(offsets) if isinstance(offsets, tuple) else 1
    if ifd.get(COMPRESSION, 1) == 1 and listed > (allowed := max(_tiff_blocks(ifd), 1)):
        width, height = ifd.get(IMAGEWIDTH), ifd.get(IMAGELENGTH)
        raise CostlyFile(f"a TIFF listing {listed} {kind} where its {width}x{height} pixels hold {allowed}")
    if listed > MAX_TIFF_BLOCKS:
        raise CostlyFile(f"a TIFF of {listed} {kind}; the limit is {MAX_TIFF_BLOCKS}")


def _tiff_directory(data: bytes) -> TiffImagePlugin.ImageFileDirectory_v2:
    """A TIFF's first directory, read by Pillow's own parser as Image.open reads it, once the entries it would read
    (as many as its count says, 2 bytes or BigTIFF's 8, and the file holds) are within MAX_TIFF_ENTRIES."""
    big = data[2] == 0x2B
    ifd = TiffImagePlugin.ImageFileDirectory_v2(data[:16] if big else data[:8])
    count, size = (8, 20) if big else (2, 12)  # the count's bytes, an entry's
    declared = int.from_bytes(data[ifd.next : ifd.next + count], "little" if data.startswith(b"II") else "big")
    if (entries := min(declared, (len(data) - ifd.next - count) // size)) > MAX_TIFF_ENTRIES:
        raise CostlyFile(f"a TIFF of {entries} directory entries; the limit is {MAX_TIFF_ENTRIES}")
    stream = io.BytesIO(data)
    stream.seek(ifd.next)
    ifd.load(stream)
    return ifd


def _tiff_blocks(ifd: TiffImagePlugin.ImageFileDirectory_v2) -> int:
    """The strips or tiles a TIFF directory's geometry holds: ceil(height / rows per strip), or
    ceil(width / tile width) x ceil(height / tile length), per plane (one per sample when planar)."""
    width, height = ifd.get(IMAGEWIDTH, 0), ifd.get(IMAGELENGTH, 0)
    if STRIPOFFSETS in ifd:
        across, down = 1, _ceil(height, ifd.get(ROWSPERSTRIP, height))
    else:
        across, down = _ceil(width, ifd.get(TILEWIDTH, width)), _ceil(height, ifd.get(TILELENGTH, 0))
    planes = ifd.get(SAMPLESPERPIXEL, 1) if ifd.get(PLANAR_CONFIGURATION, 1) == 2 else 1
    return planes * across * down


def _ceil(size: int, block: int) -> int:
    return -(-size // max(block, 1))


J2K_START = b"\xff\x4f\xff\x51"  # SOC, SIZ: a JPEG 2000 codestream's start, alone or in a JP2 file's jp2c box
# openjpeg decodes JPEG 2000 at 80-160 ns a pixel, 4-8 times a PNG's 20 and 10 a JPEG's 14 (a 6000x6000 file of one
# resolution level, 780 KB: 3.0 s; a 12 MP lossy photo's, 1.8 MB: 1.9 s): decoded at its smallest resolution level,
# one may hold this many times fewer pixels than the other formats (serving: codecs.open_image).
JPEG2000_COST = 8


def jpeg2000_levels(data: bytes) -> int:
    """A JPEG 2000 codestream's wavelet decomposition levels, from its main header's COD segment (found by a search
    after SIZ): how many times openjpeg can halve its resolution while decoding (Pillow's reduce); 0 without one.
    A component or tile that declares fewer (COC, a tile-part COD: rare) fails to decode so reduced."""
    siz = data.find(J2K_START) + 2
    if siz < 2:
        return 0
    cod = data.find(b"\xff\x52", siz + 2 + int.from_bytes(data[siz + 2 : siz + 4], "big"))
    return data[cod + 9] if 0 <= cod < len(data) - 9 else 0  # FF52, Lcod, Scod, SGcod (4 bytes), then the levels
