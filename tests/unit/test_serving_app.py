"""The Flask app with a real Predictor on a small random-init ResNet50: every content type and error."""

import gzip
import io
import json
import re

import numpy as np
import pytest
from PIL import Image
from serving_fixtures import CLASS_NAMES, write_artifact
from serving_requests import (
    MIB,
    b64,
    bad_requests,
    encode,
    form,
    instances,
    jpeg,
    many_scans_jpeg,
    npy,
    padded_jpeg,
    photo,
    png,
)

from dogbreed.model import load_artifact
from dogbreed.serving import codecs
from dogbreed.serving.app import create_app
from dogbreed.serving.predictor import Predictor, PredictorConfig
from dogbreed.sm_env import ServingEnv


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_artifact(tmp_path_factory.mktemp("ml") / "model")


@pytest.fixture(scope="module")
def predictor(model_dir):
    predictor = Predictor.load(model_dir, PredictorConfig(precision="fp32", torch_threads=2))
    yield predictor
    predictor.close()


@pytest.fixture(scope="module")
def env(model_dir):
    return ServingEnv(model_dir=model_dir)


@pytest.fixture(scope="module")
def client(predictor, env):
    return create_app(predictor, env).test_client()


def post(client, body: bytes, content_type: str | None, **headers):
    if content_type:
        headers["Content-Type"] = content_type
    return client.post("/invocations", data=body, headers=headers)


def test_ping_is_empty_200(client):
    response = client.get("/ping")
    assert response.status_code == 200
    assert response.data == b""


def test_execution_parameters_are_exactly_the_contract(model_dir):
    env = ServingEnv.from_environ(
        {"SAGEMAKER_BASE_DIR": str(model_dir.parent), "SAGEMAKER_MAX_PAYLOAD_IN_MB": "20",
         "SAGEMAKER_BATCH_STRATEGY": "single_record", "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "3"}
    )  # fmt: skip
    response = create_app(None, env, unavailable_reason="x").test_client().get("/execution-parameters")
    assert response.get_json() == {"MaxConcurrentTransforms": 3, "BatchStrategy": "SINGLE_RECORD", "MaxPayloadInMB": 20}


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("image/jpeg", jpeg()),
        ("image/png", png()),
        ("application/x-image", jpeg()),
        ("application/x-image", png()),
        ("image/jpeg; charset=binary", jpeg()),
        ("application/json", json.dumps({"image": b64(jpeg())}).encode()),
        ("application/json", json.dumps([b64(jpeg())]).encode()),
        ("application/json", json.dumps({"instances": [b64(jpeg())]}).encode()),
        ("application/json", json.dumps({"image": "data:image/jpeg;base64," + b64(jpeg())}).encode()),
        ("application/x-npy", npy(np.asarray(photo()))),
        ("image/*", jpeg()),
        ("image/webp", encode(photo(), "WEBP")),
        ("image/x-tga", encode(photo(), "TGA")),
        ("image/vnd.whatever", png()),  # any image/ subtype: the format is sniffed from the bytes
        ("application/octet-stream", jpeg()),  # the SageMaker SDK's default Predictor
        ("application/octet-stream", npy(np.asarray(photo()))),
        (None, jpeg()),  # Python requests' default for a bytes body: sniffed as application/octet-stream
    ],
)
def test_each_content_type_gives_one_probability_row(client, content_type, body):
    response = post(client, body, content_type)
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == "application/json"
    probabilities = np.asarray(response.get_json())
    assert probabilities.shape == (1, len(CLASS_NAMES))
    assert probabilities.sum() == pytest.approx(1, abs=1e-4)


def test_sixteen_bit_grayscale_answers_as_its_eight_bit_twin(client):
    """A 16-bit PNG must not be clipped to white: it answers exactly as the same picture in 8 bits."""
    gray8 = np.asarray(photo(3).convert("L"))
    gray16 = Image.fromarray(gray8.astype(np.uint16) * 257)  # 0..255 → 0..65535, mode I;16
    assert gray16.mode == "I;16"
    as16 = post(client, encode(gray16, "PNG"), "image/png").get_json()
    as8 = post(client, encode(Image.fromarray(gray8), "PNG"), "image/png").get_json()
    white = post(client, encode(Image.new("L", gray16.size, 255), "PNG"), "image/png").get_json()
    np.testing.assert_allclose(as16, as8, atol=1e-6)
    assert not np.allclose(as16, white, atol=1e-3)


def test_numpy_client_lines_give_the_predictors_class(client, predictor):
    """Both lines users run on the JSON-deserialised response print the 1-based breed number."""
    image = codecs.open_image(jpeg(2), codecs.DecodeLimits())
    expected = int(np.argmax(predictor.predict([image])[0])) + 1
    response = post(client, jpeg(2), "image/jpeg", Accept="application/json").get_json()
    assert (np.argmax(response, 1) + 1).tolist() == [expected]
    assert np.argmax(response[0]) + 1 == expected


def test_rigged_artifact_wins_with_its_breed_number(tmp_path, env):
    """A head rigged so that class index 2 always wins: both client lines print 3 (003.Airedale_terrier)."""
    predictor = Predictor(load_artifact(write_artifact(tmp_path / "model", winner=2)), PredictorConfig())
    try:
        client = create_app(predictor, env).test_client()
        response = post(client, jpeg(), "image/jpeg").get_json()
        assert (np.argmax(response, 1) + 1).tolist() == [3]
        assert np.argmax(response[0]) + 1 == 3
        verbose = post(client, jpeg(), "image/jpeg", Accept="application/json;verbose=true").get_json()
        assert verbose["predictions"][0]["label"] == "003.Airedale_terrier"
        assert verbose["predictions"][0]["class"] == 3
    finally:
        predictor.close()


def test_json_batch_equals_single_image_results(client):
    images = [jpeg(i, seed=i) for i in range(5)]
    batch = np.asarray(post(client, instances(*images), "application/json").get_json())
    singles = np.asarray([post(client, image, "image/jpeg").get_json()[0] for image in images])
    assert batch.shape == (5, len(CLASS_NAMES))
    np.testing.assert_allclose(batch, singles, atol=1e-5)
    assert len({tuple(row.round(6)) for row in batch}) > 1  # the images really differ


def test_json_lines_and_csv_as_the_sagemaker_sdk_reads_them(client):
    """Batch transform's line formats: JSON Lines records in, one line per image out (JSON Lines or CSV), read back
    by the SDK's own deserializers."""
    from sagemaker.deserializers import CSVDeserializer, JSONLinesDeserializer

    images = [jpeg(i, seed=i) for i in range(3)]
    records = "\n".join(json.dumps({"b64": b64(image)}) for image in images).encode()
    expected = np.asarray(post(client, instances(*images), "application/json").get_json(), dtype=np.float32)
    lines = post(client, records, "application/jsonlines", Accept="application/jsonlines")
    assert (lines.status_code, lines.mimetype) == (200, "application/jsonlines")
    read = JSONLinesDeserializer().deserialize(io.BytesIO(lines.data), lines.content_type)
    np.testing.assert_array_equal(np.asarray(read, dtype=np.float32), expected)
    csv = post(client, records, "application/jsonlines", Accept="text/csv")
    assert (csv.status_code, csv.mimetype) == (200, "text/csv")
    read = CSVDeserializer().deserialize(io.BytesIO(csv.data), csv.content_type)
    np.testing.assert_array_equal(np.asarray(read, dtype=np.float32), expected)
    labelled = post(client, records, "application/jsonlines", Accept="application/jsonlines;verbose=true")
    labels = [json.loads(line)["label"] for line in labelled.data.splitlines()]
    assert labels == [CLASS_NAMES[i] for i in expected.argmax(1)]


def test_a_form_upload_answers_each_file_in_order(client):
    """curl -F image=@a.jpg -F image=@b.jpg, or requests.post(url, files=...): one row per file, as if sent alone."""
    images = [jpeg(i, seed=i) for i in range(3)]
    headers, body = form(*[(f"{i}.jpg", image, "image/jpeg") for i, image in enumerate(images)], fields={"id": "7"})
    response = post(client, body, headers["Content-Type"])
    assert response.status_code == 200, response.get_json()
    singles = [post(client, image, "image/jpeg").get_json()[0] for image in images]
    np.testing.assert_allclose(response.get_json(), singles, atol=1e-5)


def test_npy_batch_equals_single_image_results(client):
    arrays = np.stack([np.asarray(photo(i, seed=i)) for i in range(3)])
    batch = np.asarray(post(client, npy(arrays), "application/x-npy").get_json())
    singles = np.asarray([post(client, npy(a), "application/x-npy").get_json()[0] for a in arrays])
    np.testing.assert_allclose(batch, singles, atol=1e-5)


def test_labelled_form_by_accept_or_custom_attributes(client):
    plain = post(client, jpeg(), "image/jpeg").get_json()[0]
    by_accept = post(client, jpeg(), "image/jpeg", Accept="application/json;verbose=true").get_json()
    by_attribute = post(
        client, jpeg(), "image/jpeg", **{"X-Amzn-SageMaker-Custom-Attributes": "top_k=2", "X-Extra": "ignored"}
    ).get_json()
    best = int(np.argmax(plain))
    for response, k in ((by_accept, len(CLASS_NAMES)), (by_attribute, 2)):
        (prediction,) = response["predictions"]
        assert prediction["class"] == best + 1
        assert prediction["label"] == CLASS_NAMES[best]
        assert prediction["probability"] == pytest.approx(plain[best], abs=1e-6)
        assert len(prediction["top_k"]) == k
        probabilities = [entry["probability"] for entry in prediction["top_k"]]
        assert probabilities == sorted(probabilities, reverse=True)


def test_npy_response(client):
    import io

    response = post(client, instances(jpeg(), jpeg(1)), "application/json", Accept="application/x-npy")
    assert response.mimetype == "application/x-npy"
    array = np.load(io.BytesIO(response.data), allow_pickle=False)
    assert array.shape == (2, len(CLASS_NAMES))
    assert array.dtype == np.float32


@pytest.mark.parametrize(("name", "headers", "body", "status"), bad_requests(), ids=[r[0] for r in bad_requests()])
def test_bad_request_corpus(client, name, headers, body, status):
    response = client.post("/invocations", data=body, headers=headers)
    assert response.status_code == status, (name, response.get_json())
    assert response.is_json and response.get_json()["error"]
    assert not re.search(r" at 0x[0-9a-f]+", response.get_json()["error"])  # no object's memory address


@pytest.mark.parametrize(
    "headers",
    [
        {"Accept": ","},
        {"Accept": "  "},
        {"Accept": "application/json;q=nan"},
        {"Content-Encoding": "identity, identity"},
    ],
)
def test_headers_that_ask_for_nothing_special_are_served_as_if_absent(client, headers):
    """RFC 9110: an Accept of empty list elements accepts anything; a list of identity codings is no coding."""
    response = post(client, jpeg(), "image/jpeg", **headers)
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == "application/json" and len(response.get_json()) == 1


def test_a_content_coding_in_a_list_is_named(client):
    response = post(client, gzip.compress(jpeg()), "image/jpeg", **{"Content-Encoding": "identity, GZIP"})
    assert response.status_code == 415
    assert response.get_json() == {"error": "Content-Encoding gzip is not supported: send the body uncompressed"}


def test_payload_limit_5_9_mb_accepted_6_1_mb_refused(client):
    assert post(client, padded_jpeg(int(5.9 * MIB)), "image/jpeg").status_code == 200
    response = post(client, padded_jpeg(int(6.1 * MIB)), "image/jpeg")
    assert response.status_code == 413
    assert "limit" in response.get_json()["error"]


def test_payload_limit_follows_sagemaker_max_payload(predictor, model_dir):
    client = create_app(predictor, ServingEnv(model_dir=model_dir, max_payload_mb=1)).test_client()
    assert post(client, padded_jpeg(int(1.1 * MIB)), "image/jpeg").status_code == 413


def test_unknown_routes_and_methods_answer_json(client):
    assert client.get("/nope").status_code == 404
    assert client.get("/nope").get_json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/invocations", "POST"),
        ("OPTIONS", "/invocations", "POST"),  # was Flask's own 200 text/html, empty
        ("OPTIONS", "/ping", "GET, HEAD"),
        ("DELETE", "/execution-parameters", "GET, HEAD"),
    ],
)
def test_a_method_a_route_does_not_answer_is_a_json_405_with_allow(client, method, path, allow):
    response = client.open(path, method=method)
    assert (response.status_code, response.headers["Allow"]) == (405, allow)
    assert response.get_json() == {"error": f"{path} answers {allow.replace(', ', ' and ')} only, not {method}"}


def test_unexpected_error_is_a_logged_500(env, caplog):
    class Broken:
        class_names = CLASS_NAMES

        def predict(self, images):
            raise RuntimeError("boom")

    response = post(create_app(Broken(), env).test_client(), jpeg(), "image/jpeg")
    assert response.status_code == 500
    assert "RuntimeError" in response.get_json()["error"]
    assert "Traceback" in caplog.text and "boom" in caplog.text


def test_unavailable_model_answers_503_with_reason(env):
    client = create_app(None, env, unavailable_reason="model.pt not found").test_client()
    ping = client.get("/ping")
    assert ping.status_code == 503
    assert "model.pt not found" in ping.get_json()["error"]
    assert post(client, jpeg(), "image/jpeg").status_code == 503


def test_batch_transform_answers_an_unreadable_image_in_its_record_and_a_wrong_setting_fails(predictor, model_dir):
    """SageMaker fails a whole transform job on one 4xx: in batch mode the record says why and the job goes on."""
    batch_env = ServingEnv.from_environ({"SAGEMAKER_BASE_DIR": str(model_dir.parent), "SAGEMAKER_BATCH": "True"})
    client = create_app(predictor, batch_env).test_client()
    unreadable = post(client, b"not an image", "application/x-image")
    assert unreadable.status_code == 200
    assert unreadable.get_json()["status"] == 400 and "cannot identify" in unreadable.get_json()["error"]
    assert post(client, many_scans_jpeg(2000), "image/jpeg").get_json()["status"] == 413
    assert post(client, jpeg(), "text/csv").status_code == 415  # the job's Content-Type: fails it at once
    good = post(client, jpeg(), "application/x-image", Accept="application/json;verbose=true")
    assert good.status_code == 200 and good.get_json()["predictions"][0]["label"] in CLASS_NAMES
    assert (
        post(create_app(predictor, ServingEnv(model_dir=model_dir)).test_client(), b"x", "image/png").status_code == 400
    )


def test_batch_transform_json_lines_a_record_that_does_not_decode_and_more_records_than_a_request_holds(
    predictor, model_dir
):
    """A truncated JPEG (its header is fine) failed the whole request, as did 300 records (one 413 line for all):
    each record now gets its own answer line, in order."""
    batch_env = ServingEnv.from_environ({"SAGEMAKER_BASE_DIR": str(model_dir.parent), "SAGEMAKER_BATCH": "true"})
    client = create_app(predictor, batch_env).test_client()
    good, whole = jpeg(0, seed=3), jpeg(1, seed=4)
    truncated = whole[: len(whole) * 3 // 4]
    records = [json.dumps({"b64": b64(image)}) for image in (good, truncated, good)]
    answer = post(client, "\n".join(records).encode(), "application/jsonlines", Accept="application/jsonlines")
    lines = [json.loads(line) for line in answer.data.splitlines()]
    assert len(lines) == 3 and lines[1]["status"] == 400 and lines[1]["error"].startswith("line 2 cannot be decoded")
    alone = post(client, good, "image/jpeg").get_json()[0]
    np.testing.assert_allclose([lines[0], lines[2]], [alone, alone], atol=1e-5)
    many = "\n".join([json.dumps(b64(good))] * 300).encode()
    answer = post(client, many, "application/jsonlines", Accept="application/jsonlines")
    rows = [json.loads(line) for line in answer.data.splitlines()]
    assert len(rows) == 300 and all(isinstance(row, list) for row in rows)
    np.testing.assert_allclose(rows[-1], alone, atol=1e-5)


def test_batch_transform_json_lines_answer_every_record_on_its_own_line(predictor, model_dir):
    """SplitType=Line, AssembleWith=Line: a bad record costs its own line only, so the others' answers are kept and
    every answer stays beside its record (join_source=Input); outside batch mode it is the request's 400."""
    batch_env = ServingEnv.from_environ({"SAGEMAKER_BASE_DIR": str(model_dir.parent), "SAGEMAKER_BATCH": "true"})
    client = create_app(predictor, batch_env).test_client()
    images = [jpeg(i, seed=i) for i in range(2)]
    records = [
        json.dumps({"b64": b64(images[0])}),
        '{"b64": "bm90IGFuIGltYWdl"}',
        "{not json",
        json.dumps(b64(images[1])),
    ]
    body = "\n".join(records).encode()
    answer = post(client, body, "application/jsonlines", Accept="application/jsonlines")
    assert (answer.status_code, answer.mimetype) == (200, "application/jsonlines")
    lines = [json.loads(line) for line in answer.data.splitlines()]
    assert len(lines) == 4 and [line["status"] for line in lines[1:3]] == [400, 400]
    assert "line 2" in lines[1]["error"] and "malformed JSON in line 3" in lines[2]["error"]
    alone = [post(client, image, "image/jpeg").get_json()[0] for image in images]
    np.testing.assert_allclose([lines[0], lines[3]], alone, atol=1e-5)
    every_bad = post(client, b"{}\n[]\n", "application/jsonlines", Accept="application/jsonlines")
    assert [json.loads(line)["status"] for line in every_bad.data.splitlines()] == [400, 400]
    online = create_app(predictor, ServingEnv(model_dir=model_dir)).test_client()
    assert post(online, body, "application/jsonlines", Accept="application/jsonlines").status_code == 400
