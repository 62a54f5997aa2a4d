"""SageMaker Python SDK v2 local mode fits, deploys and invokes our image, as users would on SageMaker."""

from pathlib import Path

import numpy as np
import pytest
from conftest import QUICK_HYPERPARAMETERS, ROOT
from make_sample_data import make_dataset

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


def test_local_mode_fit_deploy_predict(image: str, tmp_path: Path, sdk_environment: None) -> None:
    with removing_new_containers(image):  # local mode leaves its containers behind
        fit_deploy_predict(image, tmp_path)


def fit_deploy_predict(image: str, tmp_path: Path) -> None:
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
    finally:
        predictor.delete_endpoint()
