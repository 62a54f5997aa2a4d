"""Codecs without a model: request shapes, content negotiation, custom attributes, bomb guards."""

import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image
from serving_requests import (
    b64,
    encode,
    form,
    heic_like,
    instances,
    jpeg,
    many_scans_jpeg,
    npy,
    photo,
    png,
    png_chunk,
    png_header_only,
    png_with_chunks,
    raw_tiff,
)

from dogbreed import formats
from dogbreed.errors import NotAcceptable, PayloadTooLarge, ServingError, UnsupportedMediaType
from dogbreed.formats import IMAGE_FORMATS
from dogbreed.serving import codecs

LIMITS = codecs.DecodeLimits(max_pixels=40_000_000)


@pytest.mark.parametrize(
    "doc",
    [
        {"instances": [{"b64": "A"}, {"b64": "B"}]},
        {"instances": ["A", "B"]},
        {"instances": [{"image_bytes": {"b64": "A"}}, {"content": "B"}]},  # TF Serving's and Vertex AI's
        {"images": ["A", "B"]},
        ["A", "B"],
    ],
)
def test_json_shapes_keep_order(doc):
    images = {"A": jpeg(0, size=(40, 30)), "B": jpeg(1, size=(50, 30))}
    body = json.dumps(doc).replace('"A"', json.dumps(b64(images["A"]))).replace('"B"', json.dumps(b64(images["B"])))
    decoded = codecs.decoder_for("application/json")(body.encode(), LIMITS)
    assert [image.opened.size for image in decoded] == [(40, 30), (50, 30)]


def test_json_lines_records_in_order_blank_lines_skipped():
    images = [jpeg(i, size=(40 + 10 * i, 30)) for i in range(4)]
    lines = [
        json.dumps({"b64": b64(images[0])}),
        "",
        json.dumps([b64(images[1])]) + "\r",
        "   ",
        json.dumps({"instances": [{"b64": b64(images[2])}]}),
        json.dumps(b64(images[3])),
    ]
    decoded = codecs.decoder_for("application/jsonlines")("\n".join(lines).encode(), LIMITS)
    assert [image.opened.size[0] for image in decoded] == [40, 50, 60, 70]


def test_a_json_lines_record_is_one_image_so_answer_lines_match_records():
    two = json.dumps([b64(jpeg(0)), b64(jpeg(1))]).encode()
    with pytest.raises(ServingError, match="line 2 holds 2 images: a JSON Lines record is one image"):
        codecs.decode_json_lines(json.dumps(b64(jpeg(0))).encode() + b"\n" + two, LIMITS)


def test_json_lines_records_keep_each_refusal_in_its_place():
    records = codecs.json_lines_records(
        b'"%s"\n{"b64": 7}\n"%s"' % (b64(jpeg(0)).encode(), b64(png()).encode()), LIMITS
    )
    assert [type(record).__name__ for record in records] == ["EncodedImage", "ServingError", "EncodedImage"]
    assert "line 2" in str(records[1]) and records[2].label == "line 3"  # how the predictor names it, too
    too_many = b"\n".join([b"{}"] * (codecs.MAX_BATCH_RECORDS + 1))
    with pytest.raises(PayloadTooLarge, match="lower the transform's MaxPayloadInMB"):
        codecs.json_lines_records(too_many, LIMITS)


def test_a_batch_requests_records_are_served_in_requests_worth():
    """A batch transform's MultiRecord request may hold more records, or more pixels, than one request may: it is
    served in consecutive runs within both limits (it was one 413 line for every record)."""
    image = codecs.open_image(jpeg(0), LIMITS)
    pixels = image.opened.size[0] * image.opened.size[1]
    two_per_run = codecs.DecodeLimits(max_request_pixels=2 * pixels)
    assert [len(run) for run in codecs.record_chunks([image] * 5, two_per_run)] == [2, 2, 1]
    runs = list(codecs.record_chunks([image] * (codecs.MAX_IMAGES_PER_REQUEST + 3), LIMITS))
    assert [len(run) for run in runs] == [codecs.MAX_IMAGES_PER_REQUEST, 3]


def test_json_lines_errors_name_the_line_and_the_count_is_bounded_before_parsing():
    with pytest.raises(ServingError, match="malformed JSON in line 2"):
        codecs.decode_json_lines(json.dumps(b64(jpeg(0))).encode() + b'\n{"b64": \n', LIMITS)
    with pytest.raises(ServingError, match="no images"):
        codecs.decode_json_lines(b"\n \n\t\n", LIMITS)
    too_many = b"\n".join([b"not even JSON"] * (codecs.MAX_IMAGES_PER_REQUEST + 1))
    with pytest.raises(PayloadTooLarge, match="JSON Lines records"):
        codecs.decode_json_lines(too_many, LIMITS)


@pytest.mark.parametrize(
    ("body", "containers"),
    [
        (b"[" + b"[]," * 1_999_999 + b"[]]", 2_000_001),  # 6 MB: 2 M empty lists
        (b"[" + b",".join([b"[" * 900 + b"]" * 900] * 3000) + b"]", 2_700_001),  # 3000 lists 900 deep
        (b'{"instances": [' + b"{}," * 999_999 + b"{}]}", 1_000_002),
    ],
    ids=["2M empty lists", "3000 x 900-deep lists", "1M empty instances"],
)
def test_json_of_millions_of_arrays_is_refused_from_a_count_before_it_is_parsed(body, containers):
    """Parsed, these were "N images in one request; at most 256" after 1.5-2.4 s of building lists."""
    message = rf"^JSON holds {containers} arrays and objects \('\[' and '\{{'\); at most 4096 \(16 per image"
    with pytest.raises(PayloadTooLarge, match=message):
        codecs.decode_json(body, LIMITS)
    lines = b"\n".join([b'{"b64": "x"}', body])
    with pytest.raises(PayloadTooLarge, match=r"^the JSON Lines body holds"):
        codecs.decode_json_lines(lines, LIMITS)
    with pytest.raises(PayloadTooLarge, match=r"^the JSON Lines body holds .*lower the transform's MaxPayloadInMB"):
        codecs.json_lines_records(lines, LIMITS)


def test_json_at_the_image_limit_passes_in_its_roomiest_shape_with_a_clients_own_fields():
    """Each image in TF Serving's shape with a key and a list beside it: 4 arrays and objects, 2 more around all."""
    image = {"image_bytes": {"b64": b64(jpeg(size=(16, 12)))}, "key": "dog-1", "boxes": [[0, 0, 16, 12]]}
    body = json.dumps({"instances": [image] * codecs.MAX_IMAGES_PER_REQUEST, "parameters": {}}).encode()
    assert len(codecs.decode_json(body, LIMITS)) == codecs.MAX_IMAGES_PER_REQUEST
    one_more = json.dumps({"instances": [image] * (codecs.MAX_IMAGES_PER_REQUEST + 1)}).encode()
    with pytest.raises(PayloadTooLarge, match=r"^257 images in one request; at most 256$"):
        codecs.decode_json(one_more, LIMITS)
    with pytest.raises(PayloadTooLarge, match=r"^3000000 images in one request; at most 256$"):  # scalars: cheap
        codecs.decode_json(b"[" + b"0," * 2_999_999 + b"0]", LIMITS)
    record = json.dumps({"instances": [image]}).encode()
    assert len(codecs.decode_json_lines(b"\n".join([record] * codecs.MAX_IMAGES_PER_REQUEST), LIMITS)) == 256
    records = codecs.json_lines_records(b"\n".join([record] * codecs.MAX_BATCH_RECORDS), LIMITS)
    assert [type(record).__name__ for record in records] == ["EncodedImage"] * codecs.MAX_BATCH_RECORDS


def test_a_batch_record_of_too_many_arrays_is_refused_in_its_place():
    good = json.dumps({"b64": b64(jpeg(size=(16, 12)))}).encode()
    records = codecs.json_lines_records(b"\n".join([good, b"[" * 5000 + b"]" * 5000, good]), LIMITS)
    assert [type(record).__name__ for record in records] == ["EncodedImage", "PayloadTooLarge", "EncodedImage"]
    assert str(records[1]).startswith("JSON in line 2 holds 5000 arrays and objects")


def test_json_single_image_with_data_url_and_line_breaks():
    text = b64(jpeg())
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    (image,) = codecs.decode_json(json.dumps({"image": "data:image/jpeg;base64," + wrapped}).encode(), LIMITS)
    assert image.opened.format == "JPEG"


def test_npy_batch_and_single():
    arrays = np.stack([np.asarray(photo(i)) for i in range(3)])
    assert len(codecs.decode_npy(npy(arrays), LIMITS)) == 3
    (single,) = codecs.decode_npy(npy(arrays[0]), LIMITS)
    assert single.shape == arrays[0].shape and single.dtype == np.uint8


def test_content_type_parameters_and_case_are_ignored():
    assert codecs.decoder_for("Image/JPEG; charset=binary") is codecs.decode_image
    with pytest.raises(UnsupportedMediaType, match="text/plain"):
        codecs.decoder_for("text/plain")


def test_pixel_limit_is_checked_from_the_header():
    with pytest.raises(PayloadTooLarge, match="8000x6000"):
        codecs.decode_image(png_header_only(8000, 6000), LIMITS)


def test_every_format_read_is_opened_from_its_headers_alone():
    """The size checks run between opening and decoding: a reader that decodes on open (Pillow's ICO) would spend
    the whole decode before any check. Opened, every format we read holds no pixels yet (Pillow's core image, _im,
    is made by load())."""
    readable = [fmt for fmt in IMAGE_FORMATS if fmt in Image.SAVE]
    assert len(readable) >= 9
    for fmt in [*readable, "ICO"]:
        opened = Image.open(io.BytesIO(encode(photo(size=(64, 48)).convert("RGB"), fmt)))
        assert (opened._im is None) == (fmt != "ICO"), fmt


def test_an_icon_is_not_read_and_says_so():
    icon = encode(photo(size=(64, 64)), "ICO")
    with pytest.raises(UnsupportedMediaType, match="image/x-icon"):
        codecs.decoder_for("image/x-icon")(icon, LIMITS, "image/x-icon")
    with pytest.raises(ServingError, match="cannot identify a JPEG, PNG"):
        codecs.decode_image(icon, LIMITS)


def test_pillow_bomb_warning_is_an_error():
    codecs.guard_decompression_bombs()
    # Above Pillow's own MAX_IMAGE_PIXELS (warning) but below its hard limit (error); our cap set higher.
    pixels = Image.MAX_IMAGE_PIXELS + 1000
    with pytest.raises(PayloadTooLarge, match="decompression bomb"):
        codecs.decode_image(png_header_only(pixels // 10_000 + 1, 10_000), codecs.DecodeLimits(max_pixels=10**12))


@pytest.mark.parametrize(
    ("accept", "attributes", "expected"),
    [
        (None, None, codecs.ResponseFormat("application/json", None)),
        ("*/*", None, codecs.ResponseFormat("application/json", None)),
        ("application/json", "top_k=3", codecs.ResponseFormat("application/json", 3)),
        ("application/json;verbose=true", None, codecs.ResponseFormat("application/json", 5)),
        ("application/json", "verbose=true", codecs.ResponseFormat("application/json", 5)),
        ("application/json", "top_k=500", codecs.ResponseFormat("application/json", 133)),
        ("text/html, application/x-npy;q=0.9", None, codecs.ResponseFormat("application/x-npy", None)),
        ("application/x-npy;q=0.5, application/json", None, codecs.ResponseFormat("application/json", None)),
        ("application/json", "trace=abc; top_k=2, something-opaque", codecs.ResponseFormat("application/json", 2)),
        ("application/json", '{"top_k": 3, "trace": [1]}', codecs.ResponseFormat("application/json", 3)),
        ("application/json", '{"verbose": true}', codecs.ResponseFormat("application/json", 5)),
        ("application/json", "{not json, top_k=2", codecs.ResponseFormat("application/json", 2)),
        ("application/jsonlines", None, codecs.ResponseFormat("application/jsonlines", None)),
        ("application/x-ndjson;verbose=true", None, codecs.ResponseFormat("application/jsonlines", 5)),
        ("text/csv", None, codecs.ResponseFormat("text/csv", None)),
        ("text/*", None, codecs.ResponseFormat("text/csv", None)),  # a wildcard of a family we write
        ("text/csv, application/json;q=0.5", "top_k=2", codecs.ResponseFormat("application/json", 2)),
        # RFC 9110: empty list elements are ignored, so a header of none is as if absent
        (",", None, codecs.ResponseFormat("application/json", None)),
        ("   ", None, codecs.ResponseFormat("application/json", None)),
        (" , ;q=0.5,", "top_k=2", codecs.ResponseFormat("application/json", 2)),
        (",text/csv,,", None, codecs.ResponseFormat("text/csv", None)),
        # a weight that is no number counts as none (1); one out of 0..1 is clamped
        ("application/json;q=nan", None, codecs.ResponseFormat("application/json", None)),
        ("application/x-npy;q=0.5, text/csv;q=abc", None, codecs.ResponseFormat("text/csv", None)),
        ("text/csv;q=2, application/json;q=0.9", None, codecs.ResponseFormat("text/csv", None)),
        ("text/csv;q=-1, application/json;q=0.1", None, codecs.ResponseFormat("application/json", None)),
    ],
)
def test_negotiate(accept, attributes, expected):
    assert codecs.negotiate(accept, attributes, 133) == expected


def test_negotiate_refusals():
    for accept, attributes in [
        ("text/csv", "top_k=3"),
        ("text/csv;verbose=true", None),
        ("application/x-npy", "top_k=3"),
    ]:
        with pytest.raises(NotAcceptable, match=r"labelled predictions \(top_k, verbose\) are written as"):
            codecs.negotiate(accept, attributes, 133)
    with pytest.raises(NotAcceptable, match="text/csv"):
        codecs.negotiate("application/xml", None, 133)
    for accept in ("application/json;q=0", "application/json;q=0, ,", "*/*;q=-inf"):  # none acceptable: not absent
        with pytest.raises(NotAcceptable, match=f"^Accept {re.escape(accept)} is not supported"):
            codecs.negotiate(accept, None, 133)
    with pytest.raises(ServingError, match="top_k"):
        codecs.negotiate("application/json", "top_k=-1", 133)


def test_breed_names():
    assert codecs.breed_name("001.Affenpinscher") == "Affenpinscher"
    assert codecs.breed_name("002.Afghan_hound") == "Afghan hound"
    assert codecs.breed_name("poodle") == "poodle"


def test_labelled_encoding_ranks_classes():
    probabilities = np.array([[0.1, 0.7, 0.2]], dtype=np.float32)
    names = ["001.A", "002.B", "003.C"]
    doc = json.loads(codecs.encode(probabilities, names, codecs.ResponseFormat("application/json", 2)))
    (prediction,) = doc["predictions"]
    assert (prediction["class"], prediction["breed"]) == (2, "B")
    assert [entry["class"] for entry in prediction["top_k"]] == [2, 3]


@pytest.mark.parametrize("content_type", ["application/octet-stream", ""])
def test_octet_stream_or_no_content_type_is_sniffed_as_npy_json_or_an_image(content_type):
    """The SageMaker SDK's default Predictor sends application/octet-stream; Python requests sends no Content-Type
    for a bytes body."""
    decode = codecs.decoder_for(content_type)
    (image,) = decode(jpeg(), LIMITS)
    assert image.opened.format == "JPEG"
    (array,) = decode(npy(np.asarray(photo())), LIMITS)
    assert array.shape == np.asarray(photo()).shape
    first, second = decode(b"  " + instances(jpeg(), png()), LIMITS)
    assert (first.opened.format, second.opened.format) == ("JPEG", "PNG")
    with pytest.raises(ServingError, match="cannot identify"):
        decode(b"not an image", LIMITS)
    with pytest.raises(ServingError, match="malformed JSON"):
        decode(b"[not json", LIMITS)


def test_base64_in_the_url_safe_alphabet_or_without_padding_is_accepted():
    data = next(d for seed in range(100) if "=" in b64(d := jpeg(seed=seed)) and {"+", "/"} <= set(b64(d)))
    text = base64.urlsafe_b64encode(data).decode().rstrip("=")  # - and _ for + and /, no padding
    (image,) = codecs.decode_json(json.dumps({"image": text}).encode(), LIMITS)
    assert image.data == data


def test_a_form_upload_gives_its_files_in_order_and_skips_text_fields_and_empty_file_inputs():
    """curl -F, requests' files= and browsers: each file part is an image, whatever the field names."""
    headers, body = form(("a.jpg", jpeg(), "image/jpeg"), ("empty", b"", "application/octet-stream"),
                         ("b.png", png(), "application/octet-stream"), fields={"note": "a dog"})  # fmt: skip
    first, second = codecs.decoder_for(headers["Content-Type"])(body, LIMITS, codecs.FORM_DATA)
    assert (first.data, second.data) == (jpeg(), png())
    assert (first.opened.format, second.opened.format) == ("JPEG", "PNG")


@pytest.mark.parametrize(
    ("files", "error", "message"),
    [
        ([], ServingError, "the form holds no image file: upload it as a file field"),
        ([("a.txt", b"hello", "text/plain")], ServingError, "cannot identify .* in form file 0 \\('a.txt'\\)"),
        ([("a.heic", heic_like(), "image/heic")], UnsupportedMediaType, "image/heic: this server reads only JPEG"),
        ([("a.jpg", jpeg(), "image/jpeg")] * 257, PayloadTooLarge, "257 images in one request; at most 256"),
        ([("a.jpg", jpeg(), "image/jpeg")] * 400, PayloadTooLarge, "more than 320 parts in one form"),
    ],
)
def test_a_form_without_readable_images_is_refused_with_the_reason(files, error, message):
    headers, body = form(*files, fields={"note": "a dog"})
    with pytest.raises(error, match=message):
        codecs.decoder_for(headers["Content-Type"])(body, LIMITS, codecs.FORM_DATA)


def test_a_malformed_form_is_a_400_before_any_image_is_opened():
    headers, body = form(("a.jpg", jpeg(), "image/jpeg"))
    with pytest.raises(ServingError, match="malformed multipart/form-data body"):
        codecs.decoder_for(headers["Content-Type"])(body[: len(body) // 2], LIMITS, codecs.FORM_DATA)
    with pytest.raises(ServingError, match="needs its boundary parameter"):
        codecs.decoder_for("multipart/form-data")


def raw_form(parts: list[bytes], preamble: bytes = b"") -> bytes:
    """A multipart/form-data body (boundary XyZ) of one JPEG file part per entry of `parts`: its extra header lines."""
    disposition = b'Content-Disposition: form-data; name="image"; filename="dog.jpg"\r\n'
    files = (b"--XyZ\r\n" + disposition + headers + b"\r\n" + jpeg() + b"\r\n" for headers in parts)
    return preamble + b"".join(files) + b"--XyZ--\r\n"


@pytest.mark.parametrize(
    "body",
    [
        raw_form([b"X: a\r\n" * 800_000]),  # 4.9 MB: was served, after 0.55-0.87 s of parsing the lines
        raw_form([b"X: a\r\n" + b" folded\r\n" * 500_000]),
        raw_form([b""], preamble=b"\n" * 6_000_000),
        raw_form([b"X: a\r\n" * 2500] * 320),  # 15 KB a part
    ],
    ids=["800k header lines", "folded header lines", "6 MB preamble", "320 parts of 15 KB headers"],
)
def test_a_form_of_huge_part_headers_or_preamble_is_refused_before_they_are_parsed(body):
    message = r"^a form's preamble and part headers of more than 131072 bytes in all \(a file part's headers take"
    with pytest.raises(PayloadTooLarge, match=message):
        codecs.decoder_for("multipart/form-data; boundary=XyZ")(body, LIMITS, codecs.FORM_DATA)


def test_a_form_at_its_limits_passes():
    """256 files with 255-character names and 64 text fields: 320 parts, ~105 KB of part headers."""
    files = [("d" * 251 + ".jpg", jpeg(size=(16, 12)), "image/jpeg")] * codecs.MAX_IMAGES_PER_REQUEST
    headers, body = form(*files, fields={f"field-{i}-" + "n" * 240: "a dog" for i in range(64)})
    assert len(codecs.decoder_for(headers["Content-Type"])(body, LIMITS, codecs.FORM_DATA)) == 256
    just_under = raw_form([b"X: a\r\n" * ((codecs.MAX_FORM_HEADER_BYTES - 200) // 6)])
    assert len(codecs.decoder_for("multipart/form-data; boundary=XyZ")(just_under, LIMITS, codecs.FORM_DATA)) == 1


def test_curl_data_binary_without_a_content_type_is_read_as_the_file_and_form_fields_are_told_how():
    """curl --data-binary @dog.jpg declares application/x-www-form-urlencoded: the file is served; a real form's
    fields (curl -d name=rex) get the how-to."""
    (image,) = codecs.decoder_for(codecs.FORM_URLENCODED)(jpeg(), LIMITS, codecs.FORM_URLENCODED)
    assert image.data == jpeg()
    with pytest.raises(UnsupportedMediaType, match=r"hold no image file: send the image file itself .*--data-binary"):
        codecs.decoder_for(codecs.FORM_URLENCODED)(b"name=rex&breed=x", LIMITS, codecs.FORM_URLENCODED)


def test_a_jpeg_of_too_many_scans_is_refused_before_decoding_and_a_progressive_photo_is_not():
    """A scan of a few bytes is one more pass over every coefficient: 100 000 of them fit in 6 MB."""
    with pytest.raises(PayloadTooLarge, match=f"a JPEG of 2010 scans; the limit is {formats.MAX_JPEG_SCANS}"):
        codecs.decode_image(many_scans_jpeg(2000), LIMITS)
    (image,) = codecs.decode_image(encode(photo(size=(400, 300)), "JPEG", progressive=True), LIMITS)
    assert image.opened.format == "JPEG"


def test_a_file_whose_structure_would_cost_far_more_than_its_bytes_is_a_413_naming_it():
    """formats.check_structure's refusals (tests/unit/test_formats.py) reach the client as 413s."""
    with pytest.raises(PayloadTooLarge, match="the request body is a TIFF listing 1280 strips where its 64x64 pixels"):
        codecs.decode_image(raw_tiff((64, 64), (64, 1), copies=20), LIMITS)
    with pytest.raises(PayloadTooLarge, match="image 0 is a PNG of more than 65536 chunks"):
        codecs.decode_json(instances(png_with_chunks(before=png_chunk(b"abCd") * 65537)), LIMITS)


def test_a_jpeg2000_is_refused_when_its_smallest_resolution_level_is_over_its_lower_pixel_limit():
    """openjpeg's pixels cost ~8 times other formats': the limit applies to the level the predictor can reduce to."""
    limits = codecs.DecodeLimits(max_pixels=8 * 100_000)
    flat = Image.new("RGB", (400, 400), (90, 120, 30))
    with pytest.raises(
        PayloadTooLarge, match="smallest resolution level is 400x400; the limit for JPEG 2000 is 100000"
    ):
        codecs.decode_image(encode(flat, "JPEG2000", num_resolutions=1), limits)
    (image,) = codecs.decode_image(encode(flat, "JPEG2000"), limits)  # 5 levels: 13x13 at the smallest
    assert image.opened.size == (400, 400)


def test_what_real_clients_send_beside_the_usual():
    """The SDK's DataSerializer (file-path/raw-bytes), a data: URI in upper case, JSON after a UTF-8 BOM (Windows
    tools) as untyped bytes: each is read as what it is."""
    image = jpeg(0, size=(40, 30))
    assert codecs.decoder_for("file-path/raw-bytes")(image, LIMITS)[0].opened.size == (40, 30)
    upper = json.dumps({"image": "DATA:image/jpeg;base64," + b64(image)}).encode()
    assert codecs.decode_json(upper, LIMITS)[0].opened.size == (40, 30)
    bom = b"\xef\xbb\xbf" + json.dumps([b64(image)]).encode()
    assert codecs.decode_octet_stream(bom, LIMITS)[0].opened.size == (40, 30)


def test_a_malformed_json_or_npy_body_says_what_is_wrong_whatever_it_is_declared_as():
    """curl -d @request.json declares a form: a JSON body's own error (bad base64) is the answer, not "send a file";
    an array with bytes after its data says so, not "truncated"."""
    with pytest.raises(ServingError, match="invalid base64") as refused:
        codecs.decode_form_urlencoded(b'{"image": "not base64!!"}', LIMITS)
    assert refused.value.status == 400
    with pytest.raises(ServingError, match=r"extra bytes after the array in \.npy: .* got 196"):
        codecs.decode_npy(npy(np.zeros((8, 8, 3), np.uint8)) + b"\0" * 4, LIMITS)
