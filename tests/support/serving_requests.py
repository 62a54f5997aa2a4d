"""Request bodies for /invocations, shared by the unit, integration and container serving tests (no torch here).

Generated photos in every accepted format, the corpus of bad requests with the status each must get,
and a raw-socket request that is still being sent while the server is told to stop.
"""

import base64
import gzip
import io
import json
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable

import numpy as np
from PIL import Image

from local_test.make_sample_data import make_image


def photo(index: int = 0, size: tuple[int, int] = (120, 90), seed: int = 0) -> Image.Image:
    """A synthetic dog-breed-dataset photo; make_image knows six class looks."""
    return make_image(index % 6, np.random.default_rng(seed), size)


def encode(image: Image.Image, fmt: str = "JPEG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def jpeg(index: int = 0, seed: int = 0, size: tuple[int, int] = (120, 90)) -> bytes:
    return encode(photo(index, size, seed), "JPEG", quality=90)


def png(index: int = 0, seed: int = 0) -> bytes:
    return encode(photo(index, seed=seed), "PNG")


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)  # tests build hostile bodies too
    return buffer.getvalue()


def npy_header(*, shape: tuple[int, ...], descr: str = "|u1") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def instances(*images: bytes) -> bytes:
    return json.dumps({"instances": [{"b64": b64(i)} for i in images]}).encode()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height: refusable before a single pixel is allocated."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def padded_jpeg(total_bytes: int) -> bytes:
    """A valid JPEG followed by filler up to total_bytes (decoders stop at the end-of-image marker)."""
    data = jpeg(size=(500, 375))
    return data + b"\0" * (total_bytes - len(data))


MIB = 1024 * 1024


def strip_png(width: int, height: int = 1) -> bytes:
    """A real, tiny (~1 KB) PNG of width x height black pixels: cheap to send, costly to resize."""
    return encode(Image.new("L", (width, height)), "PNG")


def many_scans_jpeg(extra_scans: int, size: tuple[int, int] = (64, 64)) -> bytes:
    """A progressive JPEG whose last scan is repeated: each copy is a few bytes and one more pass over the image."""
    data = encode(Image.new("RGB", size, (120, 90, 60)), "JPEG", progressive=True)
    last_scan = data[data.rindex(b"\xff\xda") : -2]  # up to the end-of-image marker
    return data[:-2] + last_scan * extra_scans + b"\xff\xd9"


def jpeg_with_header(extra: bytes, data: bytes | None = None) -> bytes:
    """A JPEG (by default jpeg()'s) with `extra` (segments, fill bytes) right after its start-of-image marker."""
    data = data or jpeg()
    return data[:2] + extra + data[2:]


def png_with_chunks(before: bytes = b"", after: bytes = b"") -> bytes:
    """A 16x16 PNG with chunks (png_chunk) inserted before its image data and after it (before IEND)."""
    data = encode(Image.new("RGB", (16, 16), (120, 90, 60)), "PNG")
    idat, iend = data.index(b"IDAT") - 4, data.index(b"IEND") - 4
    return data[:idat] + before + data[idat:iend] + after + data[iend:]


def png_chunk(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def raw_tiff(size: tuple[int, int], block: tuple[int, int], *, tiled: bool = False, copies: int = 1) -> bytes:
    """An uncompressed 8-bit grayscale TIFF cut into blocks (strips: block width = image width) listed `copies`
    times over: the offsets of a hostile file repeat its blocks, which Pillow decodes one by one."""
    (width, height), (block_width, block_height) = size, block
    count = -(-width // block_width) * -(-height // block_height)
    listed, block_bytes = count * copies, block_width * block_height
    layout = (
        [(322, block_width), (323, block_height), (324, None), (325, None)]
        if tiled
        else [(273, None), (278, block_height), (279, None)]
    )
    tags = sorted([(256, width), (257, height), (258, 8), (259, 1), (262, 1), (277, 1), *layout])
    offsets_at = 8 + 2 + 12 * len(tags) + 4
    counts_at = offsets_at + 4 * listed
    pixels_at = counts_at + 4 * listed
    arrays = {273: offsets_at, 324: offsets_at, 279: counts_at, 325: counts_at}
    entries = b"".join(
        struct.pack("<HHII", tag, 4, listed, arrays[tag]) if tag in arrays else struct.pack("<HHII", tag, 4, 1, value)
        for tag, value in tags
    )
    offsets = [pixels_at + block_bytes * (i % count) for i in range(listed)]
    return (
        b"II*\x00" + struct.pack("<IH", 8, len(tags)) + entries + b"\x00" * 4
        + struct.pack(f"<{listed}I", *offsets) + struct.pack(f"<{listed}I", *[block_bytes] * listed)
        + b"\x80" * (block_bytes * count)
    )  # fmt: skip


def flat_png(width: int, height: int) -> bytes:
    """A real PNG of one colour: a few KB to send, width x height pixels to decode."""
    return encode(Image.new("RGB", (width, height), (120, 90, 60)), "PNG")


def form(*files: tuple[str, bytes, str], fields: dict[str, str] | None = None) -> tuple[dict, bytes]:
    """(headers, body) of a multipart/form-data upload as curl -F and Python requests' files= send it: each file is
    (filename, bytes, declared Content-Type), in a field named "image", after the text fields."""
    from urllib3 import encode_multipart_formdata

    parts = [*(fields or {}).items(), *(("image", (name, data, kind)) for name, data, kind in files)]
    body, content_type = encode_multipart_formdata(parts)
    return {"Content-Type": content_type}, body


def heic_like() -> bytes:
    """The start of an ISO-BMFF HEIC file (ftyp box, brand heic): a format this server does not read."""
    return struct.pack(">I", 24) + b"ftypheic" + b"\0\0\0\0" + b"mif1heic" + b"\0" * 64


def bad_requests() -> list[tuple[str, dict, bytes, int]]:
    """(name, headers, body, expected status): every error class of /invocations."""
    good, pickled, icon = jpeg(), npy(np.array([object()], dtype=object)), encode(photo(size=(64, 64)), "ICO")
    huge_npy = npy_header(shape=(99_999, 99_999, 3)) + b"\0" * 64
    upload = form(("a.jpg", good, "image/jpeg"), ("b.png", png(), "image/png"))
    jpg, js, xnpy = (
        {"Content-Type": "image/jpeg"},
        {"Content-Type": "application/json"},
        {"Content-Type": "application/x-npy"},
    )
    return [
        ("content-type text/csv", {"Content-Type": "text/csv"}, b"1,2,3", 415),
        ("content-type missing, not an image", {}, b"hello", 400),  # sniffed as application/octet-stream
        ("form fields, no file (curl -d)", {"Content-Type": "application/x-www-form-urlencoded"}, b"name=rex&x=1", 415),
        ("multipart without its boundary", {"Content-Type": "multipart/form-data"}, good, 400),
        ("multipart of text fields only", *form(fields={"name": "rex"}), 400),
        (
            "multipart boundary in RFC 2231 form, not ASCII",
            {"Content-Type": "multipart/form-data; boundary*=UTF-8''%E2%82%AC"},
            "--\u20ac\r\nContent-Disposition: form-data; name=a; filename=a.jpg\r\n\r\n".encode() + good,
            400,
        ),
        ("multipart boundary of 71 bytes", {"Content-Type": "multipart/form-data; boundary=" + "b" * 71}, good, 400),
        ("multipart cut short", upload[0], upload[1][: len(upload[1]) // 2], 400),
        ("multipart of 400 parts", *form(*[("a.jpg", good, "image/jpeg")] * 400), 413),
        (
            "multipart part of 40 000 header lines (refused before they are parsed)",
            {"Content-Type": "multipart/form-data; boundary=XyZ"},
            b'--XyZ\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
            + b"X: a\r\n" * 40_000
            + b"\r\n"
            + good
            + b"\r\n--XyZ--\r\n",
            413,
        ),
        ("multipart file declared image/heic", *form(("a.heic", heic_like(), "image/heic")), 415),
        ("multipart file not an image", *form(("a.jpg", b"hello", "image/jpeg")), 400),
        ("gzip content-encoding", {**js, "Content-Encoding": "gzip"}, gzip.compress(instances(good)), 415),
        ("identity, gzip content-encoding", {**js, "Content-Encoding": "identity, gzip"}, gzip.compress(b"{}"), 415),
        (
            "accept text/csv with top_k",
            {**jpg, "Accept": "text/csv", "X-Amzn-SageMaker-Custom-Attributes": "top_k=3"},
            good,
            406,
        ),
        ("accept application/xml", {**jpg, "Accept": "application/xml, text/html;q=0.5"}, good, 406),
        ("empty jpeg body", jpg, b"", 400),
        ("empty json body", js, b"", 400),
        ("garbage as jpeg", jpg, b"this is not an image at all", 400),
        ("icon (Pillow decodes ICO as it opens it: not read)", {"Content-Type": "image/x-icon"}, icon, 415),
        ("icon as octet-stream", {"Content-Type": "application/octet-stream"}, icon, 400),
        ("garbage as octet-stream", {"Content-Type": "application/octet-stream"}, b"\x93NUMPY or not", 400),
        ("truncated jpeg", jpg, good[: len(good) // 2], 400),
        ("truncated png", {"Content-Type": "image/png"}, png()[:200], 400),
        ("corrupt jpeg data", jpg, good[:300] + bytes(range(256)) * 4, 400),
        ("jpeg of 2000 scans (each one more pass over the image)", jpg, many_scans_jpeg(2000), 413),
        ("malformed json", js, b'{"instances": [', 400),
        ("json not utf-8", js, b'{"image": "\xff\xfe"}', 400),
        ("json nested too deep", js, b"[" * 3000 + b"]" * 3000, 400),
        ("json of 100 000 nested arrays (counted before parsing)", js, b"[" * 100_000 + b"]" * 100_000, 413),
        ("json of 10 000 empty lists (counted before parsing)", js, b"[" + b"[]," * 9_999 + b"[]]", 413),
        ("json unknown shape", js, b'{"pictures": []}', 400),
        ("json instances not a list", js, b'{"instances": 7}', 400),
        ("json instance not a string", js, b'{"instances": [{"b64": 7}]}', 400),
        ("json bad base64", js, b'{"image": "not base64!!"}', 400),
        ("json base64 of non-image", js, json.dumps({"image": b64(b"hello world")}).encode(), 400),
        ("json no images", js, b'{"instances": []}', 400),
        ("json too many images", js, json.dumps({"images": [b64(good)] * 257}).encode(), 413),
        ("npy float32", xnpy, npy(np.zeros((8, 8, 3), np.float32)), 400),
        ("npy HxW", xnpy, npy(np.zeros((8, 8), np.uint8)), 400),
        ("npy HxWx4", xnpy, npy(np.zeros((8, 8, 4), np.uint8)), 400),
        ("npy pickled object", xnpy, pickled, 400),
        ("npy garbage", xnpy, b"\x93NUMPY garbage", 400),
        ("npy truncated", xnpy, npy(np.zeros((8, 8, 3), np.uint8))[:-10], 400),
        ("npy header claims 30 GB", xnpy, huge_npy, 400),
        ("png decompression bomb", {"Content-Type": "image/png"}, png_header_only(30_000, 30_000), 413),
        ("png over pixel limit", {"Content-Type": "image/png"}, png_header_only(8_000, 6_000), 413),
        ("png 400000x1 strip (resize would grow it 70x)", {"Content-Type": "image/png"}, strip_png(400_000), 413),
        ("png 40000000x1 header", {"Content-Type": "image/png"}, png_header_only(40_000_000, 1), 413),
        ("npy 1x100000x3 strip", xnpy, npy(np.zeros((1, 100_000, 3), np.uint8)), 413),
        ("json 100 png strips 20000x1", js, json.dumps({"images": [b64(strip_png(20_000))] * 100}).encode(), 413),
        ("json 3 pngs of 36 MP: over the request limit", js, instances(*[png_header_only(6000, 6000)] * 3), 413),
        ("npy negative dimension", xnpy, npy_header(shape=(-1, 8, 3)) + b"\0" * 64, 400),
        ("npy zero-size batch", xnpy, npy_header(shape=(0, 8, 8, 3)), 400),
        ("image/heic body", {"Content-Type": "image/heic"}, heic_like(), 415),
        ("heic bytes declared image/jpeg", jpg, heic_like(), 400),
        ("32-bit integer tiff", {"Content-Type": "image/tiff"}, encode(Image.new("I", (64, 48)), "TIFF"), 400),
        ("float tiff", {"Content-Type": "image/tiff"}, encode(Image.new("F", (64, 48)), "TIFF"), 400),
        (
            "eps (ghostscript never runs)",
            {"Content-Type": "image/*"},
            b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 9 9\n",
            400,
        ),
        ("custom attribute top_k=abc", {**jpg, "X-Amzn-SageMaker-Custom-Attributes": "top_k=abc"}, good, 400),
        ("custom attribute top_k=0", {**jpg, "X-Amzn-SageMaker-Custom-Attributes": "top_k=0"}, good, 400),
    ]


def malformed_http() -> list[tuple[str, bytes, int]]:
    """(name, raw request, expected status): HTTP the app never sees; the front answers each in JSON."""
    post = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
    chunked = post + b"Transfer-Encoding: chunked\r\n\r\n"
    return [
        ("bad request line", b"GARBAGE\r\n\r\n", 400),
        ("invalid chunk size", chunked + b"ZZZ\r\nabc\r\n0\r\n\r\n", 400),
        ("chunk longer than its size", chunked + b"3\r\nabcdef\r\n0\r\n\r\n", 400),
        ("header line of 9 KB", b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
        ("request line of 9 KB", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        ("HTTP/2.0 request line", b"GET /ping HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        ("Transfer-Encoding gzip", post + b"Transfer-Encoding: gzip\r\n\r\n", 501),
        ("Content-Length 7 MB", post + b"Content-Length: 7000000\r\n\r\nabc", 413),
        ("two Content-Lengths", post + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
        ("nginx's own error page", b"GET /_error/500 HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        ("TRACE", b"TRACE /invocations HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    ]


def raw_exchange(host: str, port: int, request: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes and read the response (as a client does: without closing its side first)."""
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(request)
        return _read_http_response(conn)


def cut_short(host: str, port: int, request: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes, close the sending side (the body ends early), return whatever the server sends."""
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(request)
        conn.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
        return answer


def status_and_json(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


class SlowClients:
    """count connections that send a request's headers one byte every `interval` seconds, never finishing."""

    def __init__(self, host: str, port: int, count: int, interval: float = 0.5):
        self.conns = [socket.create_connection((host, port), timeout=10) for _ in range(count)]
        self.interval, self.sent, self.closed_by_server = interval, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drip, daemon=True)

    def _drip(self) -> None:
        header = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nX-Slow: " + b"a" * 1000
        while not self._stop.wait(self.interval):
            byte = header[self.sent % len(header) : self.sent % len(header) + 1]
            for conn in list(self.conns):
                try:
                    conn.sendall(byte)
                except OSError:
                    self.conns.remove(conn)
                    self.closed_by_server += 1
            self.sent += 1

    def __enter__(self) -> "SlowClients":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for conn in self.conns:
            conn.close()


def in_flight_request(host: str, port: int, body: bytes, stop: Callable[[], None]) -> bytes:
    """POST body as image/jpeg, call stop() while the server is reading it, finish sending; the raw response."""
    head = f"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n\r\n"
    with socket.create_connection((host, port), timeout=30) as conn:
        conn.sendall(head.encode() + body[:100])
        time.sleep(0.5)  # the worker is now reading this request
        stop()
        time.sleep(1)
        conn.sendall(body[100:])
        return _read_http_response(conn)


def _read_http_response(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data  # closed without a (complete) response
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    )
    while len(rest) < length:
        rest += conn.recv(65536)
    return head + b"\r\n\r\n" + rest
