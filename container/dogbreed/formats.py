"""The image files we read, and what decoding one may cost beyond its pixel count: shared by training's loader and
serving's codecs (torch-free, as the codecs are)."""

from PIL import Image

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
    """Start-of-scan markers in a JPEG file: entropy-coded data never holds FF DA (a data FF is stuffed as FF 00)."""
    return data.count(b"\xff\xda")


# SOF9-11 and SOF13-15: arithmetic entropy coding (decoded by torchvision: presets.decode_pixels).
ARITHMETIC_FRAMES = frozenset({0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def jpeg_arithmetic(data: bytes) -> bool:
    """Whether a JPEG's frame is arithmetic-coded: its segments walked from SOI to the first frame marker (SOFn), by
    their lengths, so no byte of a segment's payload (EXIF, comments) is read as a marker."""
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # not DHT, JPG, DAC: a frame
            return marker in ARITHMETIC_FRAMES
        else:
            position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return False
