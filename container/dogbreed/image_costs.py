"""What decoding an image file costs beyond its pixel count: the limits training's loader and serving's codecs share
(torch-free, as the codecs are)."""

# Progressive encoders write about 10 scans; each scan is one more pass over every coefficient of the image, so a
# 59-byte scan repeated decodes for 15 ms per copy at 36 MP: 6 MB of them would hold a core for 25 minutes.
MAX_JPEG_SCANS = 100


def jpeg_scans(data: bytes) -> int:
    """Start-of-scan markers in a JPEG file: entropy-coded data never holds FF DA (a data FF is stuffed as FF 00)."""
    return data.count(b"\xff\xda")
