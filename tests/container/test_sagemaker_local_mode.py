"""SageMaker Python SDK v2 local mode fits, deploys and invokes our image, as users would on SageMaker."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import QUICK_HYPERPARAMETERS, ROOT

from local_test.make_sample_data import make_dataset
from orchestration.sdk import removing_new_containers

FAKE_ROLE = "arn:aws:iam::111111111111:role/SageMakerRole"


@pytest.fixture
def sdk_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region, no telemetry: local mode needs no AWS account."""
    config = tmp_path / "sagemaker-config.yaml"
    config.write_text("SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n")
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "SAGEMAKER_USER_CONFIG_OVERRIDE": str(config),
        "SAGEMAKER_SUPPRESS_V2_WARNING": "1",
    }.items():
        monkeypatch.setenv(key, value)


def test_local_mode_fit_deploy_predict_and_batch_transform(image: str, tmp_path: Path, sdk_environment: None) -> None:
    with removing_new_containers(image):  # local mode leaves its containers behind
        estimator, answers = fit_deploy_predict(image, tmp_path)
        batch_transform(estimator, answers, tmp_path)


def batch_transform(estimator, answers: dict[str, tuple[bytes, list[float]]], tmp_path: Path) -> None:
    """README's call: one labelled JSON answer per image file, the endpoint's top class for each; a file that is not
    an image does not fail the job (SAGEMAKER_BATCH): its answer says why."""
    images = tmp_path / "to-label"
    images.mkdir()
    for name, (body, _) in answers.items():
        (images / name).write_bytes(body)
    (images / "notes.jpg").write_bytes(b"a text file named like a photo")
    transformer = estimator.transformer(
        instance_count=1,
        instance_type="local",
        strategy="SingleRecord",  # passed, so the SDK never reads the container's MULTI_RECORD
        accept="application/json;verbose=true",
        output_path=f"file://{tmp_path / 'transform-out'}",
    )
    transformer.transform(f"file://{images}", content_type="application/x-image", split_type=None, logs=False)
    outputs = {
        p.name.removesuffix(".out"): json.loads(p.read_bytes()) for p in (tmp_path / "transform-out").glob("*.out")
    }
    assert outputs.pop("notes.jpg")["status"] == 400
    assert sorted(outputs) == sorted(answers)
    for name, answer in outputs.items():
        (prediction,) = answer["predictions"]
        assert prediction["class"] == int(np.argmax(answers[name][1])) + 1, name
    assert outputs["sample_dog.jpg"]["predictions"][0]["label"] == "001.Affenpinscher"


def fit_deploy_predict(image: str, tmp_path: Path):
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.estimator import Estimator
    from sagemaker.local import LocalSession
    from sagemaker.serializers import IdentitySerializer

    data = make_dataset(tmp_path / "dogImages")
    session = LocalSession()
    session.config = {"local": {"local_code": True, "container_root": str(tmp_path)}}  # not /tmp
    estimator = Estimator(
        image_uri=image,
        role=FAKE_ROLE,
        instance_count=1,
        instance_type="local",
        hyperparameters=QUICK_HYPERPARAMETERS,
        output_path=f"file://{tmp_path / 'output'}",
        sagemaker_session=session,
    )
    estimator.fit({"training": f"file://{data}"}, job_name="dogbreed-local-test", wait=True, logs=False)
    assert Path(estimator.model_data.removeprefix("file://")).is_file()

    predictor = estimator.deploy(
        initial_instance_count=1,
        instance_type="local",
        serializer=IdentitySerializer("image/jpeg"),
        deserializer=JSONDeserializer(),
    )
    try:
        payload = (ROOT / "local_test" / "sample_dog.jpg").read_bytes()
        response = predictor.predict(payload, initial_args={"ContentType": "image/jpeg"})
        # The two client lines our users' notebooks already have; sample_dog.jpg is breed 1.
        assert (np.argmax(response, 1) + 1).tolist() == [1]
        assert np.argmax(response[0]) + 1 == 1
        others = sorted((data / "test").glob("*/*.jpg"))[:3]
        bodies = {"sample_dog.jpg": payload, **{f"{p.parent.name}-{p.name}": p.read_bytes() for p in others}}
        answers = {name: (body, predictor.predict(body)[0]) for name, body in bodies.items()}
    finally:
        predictor.delete_endpoint()  # batch transform serves on the same local port
    return estimator, answers
