"""formats.check_structure: files whose scans, segments, chunks or strips would cost far more than their bytes are
refused from their headers, before Pillow walks them; ordinary files of every kind still open."""

import io

import pytest
from PIL import Image
from serving_requests import (
    encode,
    jpeg,
    jpeg_with_header,
    many_scans_jpeg,
    photo,
    png_chunk,
    png_with_chunks,
    raw_tiff,
)

from dogbreed import formats
from dogbreed.formats import CostlyFile

COMMENT = b"\xff\xfe\x00\x02"  # an empty COM segment
MAX_BLOCKS = formats.MAX_TIFF_BLOCKS

HOSTILE = {
    "TIFF strips listed over again": (raw_tiff((64, 64), (64, 1), copies=20), "listing 1280 strips where its 64x64"),
    "TIFF tiles listed over again": (raw_tiff((64, 64), (16, 16), tiled=True, copies=2), "listing 32 tiles where"),
    "TIFF of 1x1 tiles": (raw_tiff((257, 256), (1, 1), tiled=True), f"of 65792 tiles; the limit is {MAX_BLOCKS}"),
    "TIFF directory of many entries": (b"II*\x00\x08\x00\x00\x00\x01\x10" + bytes(12 * 4097 + 4), "of 4097 directory"),
    "BigTIFF directory of many entries, cut short": (
        b"II+\x00\x08\x00\x00\x00" + (16).to_bytes(8, "little") + (2**60).to_bytes(8, "little") + bytes(20 * 4097),
        f"of 4097 directory entries; the limit is {formats.MAX_TIFF_ENTRIES}",  # what Pillow would read
    ),
    "JPEG header of empty segments": (jpeg_with_header(COMMENT * 1001), "more than 1000 segments"),
    "JPEG header of fill bytes": (jpeg_with_header(b"\xff" * 5000), "more than 4096 fill or stray bytes"),
    "JPEG header of stray bytes": (jpeg_with_header(COMMENT + b"\x00" * 5000), "more than 4096 fill or stray bytes"),
    "JPEG of many scans": (many_scans_jpeg(200), f"a JPEG of 210 scans; the limit is {formats.MAX_JPEG_SCANS}"),
    "PNG of empty ancillary chunks": (png_with_chunks(before=png_chunk(b"abCd") * 65537), "more than 65536 chunks"),
    "PNG of empty IDATs": (png_with_chunks(after=png_chunk(b"IDAT") * 65537), "more than 65536 chunks"),
}  # fmt: skip


@pytest.mark.parametrize("name", HOSTILE)
def test_a_costly_structure_is_refused_before_pillow_reads_the_file(name, monkeypatch):
    data, message = HOSTILE[name]
    monkeypatch.setattr(formats.Image, "open", lambda *args, **kwargs: pytest.fail("Pillow opened the file"))
    with pytest.raises(CostlyFile, match=message):
        formats.open_image(data)


def tiff_pages(*pages: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    pages[0].save(buffer, "TIFF", save_all=True, append_images=list(pages[1:]), **options)
    return buffer.getvalue()


ORDINARY = {
    "progressive JPEG": encode(photo(size=(400, 300)), "JPEG", progressive=True),
    "JPEG with EXIF, a 300 KB ICC profile and comments": jpeg_with_header(
        COMMENT * 30, encode(photo(), "JPEG", exif=Image.Exif(), icc_profile=b"\x01" * 300_000)
    ),
    "JPEG with a few fill bytes": jpeg_with_header(b"\xff" * 16),
    "PNG with text chunks": png_with_chunks(before=png_chunk(b"tEXt", b"Title\x00dog") * 20),
    "multi-page TIFF": tiff_pages(photo(), photo(1)),
    "LZW TIFF": tiff_pages(photo(size=(640, 480)), compression="tiff_lzw"),
    "TIFF of one row per strip": raw_tiff((300, 200), (300, 1)),
    "tiled TIFF": raw_tiff((300, 200), (64, 64), tiled=True),
}


@pytest.mark.parametrize("name", ORDINARY)
def test_ordinary_files_open_and_decode(name):
    image = formats.open_image(ORDINARY[name])
    image.load()
    assert min(image.size) > 0


def test_jpeg_arithmetic_reads_the_frame_not_payload_bytes_and_walks_no_further_than_the_limits():
    data = jpeg()
    assert not formats.jpeg_arithmetic(jpeg_with_header(b"\xff\xfe\x00\x04\xff\xc9"))  # SOF9 inside a comment
    arithmetic = data[:2] + data[2:].replace(b"\xff\xc0", b"\xff\xc9", 1)
    assert formats.jpeg_arithmetic(arithmetic)
    assert not formats.jpeg_arithmetic(encode(photo(), "PNG"))
    with pytest.raises(CostlyFile):
        formats.jpeg_arithmetic(jpeg_with_header(COMMENT * 1001))
