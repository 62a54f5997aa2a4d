"""ResNet50 + head and the model artifact (dogbreed.model): shapes, save/load round trip, tensors-only loading,
refused artifacts, and what each fine_tune mode trains."""

import copy
import json
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dogbreed.contract.hyperparams import Hyperparameters
from dogbreed.distributed import Cluster
from dogbreed.engine import make_loop
from dogbreed.errors import ArtifactError, UserError
from dogbreed.model import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    HeadConfig,
    build_model,
    freeze,
    load_artifact,
    load_backbone,
    save_artifact,
)
from dogbreed.presets import PreprocessConfig

HEAD = HeadConfig(num_classes=3, hidden_units=8, dropout=0.0)
CLASSES = ["akita", "beagle", "corgi"]
PREPROCESS = PreprocessConfig(image_size=32)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))  # small: ResNet50 still runs


@pytest.fixture(scope="module")
def original() -> nn.Module:
    torch.manual_seed(0)
    return build_model(HEAD).eval()


@pytest.fixture(scope="module")
def saved(original: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One valid artifact (94 MB of weights, written once)."""
    directory = tmp_path_factory.mktemp("artifact")
    save_artifact(directory, original, class_names=CLASSES, head=HEAD, preprocess=PREPROCESS, metrics={"test_acc": 0.5})
    return directory


@pytest.fixture
def artifact_dir(saved: Path, tmp_path: Path) -> Path:
    """A copy of the valid artifact: its own config, the weights linked (replace_weights unlinks before writing)."""
    (tmp_path / CONFIG_FILE).write_bytes((saved / CONFIG_FILE).read_bytes())
    (tmp_path / WEIGHTS_FILE).symlink_to(saved / WEIGHTS_FILE)
    return tmp_path


def replace_weights(directory: Path, write: Callable[[Path], object]) -> None:
    (directory / WEIGHTS_FILE).unlink()
    write(directory / WEIGHTS_FILE)


def test_the_head_maps_backbone_features_to_one_output_per_class():
    hidden = build_model(HeadConfig(num_classes=5, hidden_units=8, dropout=0.3)).fc
    assert [type(layer) for layer in hidden] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert (hidden[0].in_features, hidden[0].out_features, hidden[2].p, hidden[3].out_features) == (2048, 8, 0.3, 5)
    linear = build_model(HeadConfig(num_classes=5, hidden_units=0)).fc
    assert isinstance(linear, nn.Linear) and (linear.in_features, linear.out_features) == (2048, 5)
    for head in (hidden, linear):
        assert head(torch.randn(2, 2048)).shape == (2, 5)


def test_saved_artifact_loads_to_the_same_outputs(saved, original, images):
    artifact = load_artifact(saved)
    assert (artifact.class_names, artifact.head, artifact.preprocess) == (CLASSES, HEAD, PREPROCESS)
    assert artifact.metrics == {"test_acc": 0.5} and not artifact.model.training
    with torch.no_grad():
        torch.testing.assert_close(artifact.model(images), original(images), rtol=0, atol=0)


class RunsCodeWhenUnpickled:
    """A pickle payload: unpickling it with weights_only=False would create `marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_weights_are_loaded_as_tensors_only_never_as_code(artifact_dir, tmp_path):
    marker = tmp_path / "code-ran"
    replace_weights(artifact_dir, lambda path: torch.save({"fc.0.weight": RunsCodeWhenUnpickled(marker)}, path))
    with pytest.raises(ArtifactError, match="cannot be loaded"):
        load_artifact(artifact_dir)
    assert not marker.exists()


def backbone_state(original: nn.Module, **replaced: torch.Tensor) -> dict[str, torch.Tensor]:
    return {**{k: v for k, v in original.state_dict().items() if not k.startswith("fc.")}, **replaced}


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda path, _: path.write_bytes(b"PK\x03\x04 torn"), r"cannot load .* torn, or not a PyTorch file"),
        (lambda path, m: torch.save({"x": RunsCodeWhenUnpickled(m)}, path), r"cannot load .* never unpickled"),
        (lambda path, _: torch.save([1, 2], path), "is not a state_dict"),
        (lambda path, _: torch.save({"conv1.wieght": torch.zeros(3)}, path), r"does not fit ResNet50: \d+ missing"),
    ],
    ids=["torn", "code", "list", "keys"],
)
def test_unusable_pretrained_weights_are_a_user_error_that_says_why(original, tmp_path, write, message):
    weights, marker = tmp_path / "resnet50.pth", tmp_path / "code-ran"
    write(weights, marker)
    with pytest.raises(UserError, match=message) as refused:
        load_backbone(build_model(HEAD), weights)
    assert "weights_only=False" not in str(refused.value) and not marker.exists()


def test_pretrained_weights_of_another_shape_are_a_user_error(original, tmp_path):
    """Right names, wrong shapes (another ResNet's width): load_state_dict's RuntimeError becomes the reason."""
    torch.save(backbone_state(original, **{"layer1.0.conv1.weight": torch.zeros(32, 64, 1, 1)}), tmp_path / "w.pt")
    with pytest.raises(UserError, match=r"does not fit ResNet50: 1 tensor\(s\) of another shape .*layer1\.0\.conv1"):
        load_backbone(build_model(HEAD), tmp_path / "w.pt")


def rewrite_config(directory: Path, **changes) -> None:
    config = json.loads((directory / CONFIG_FILE).read_text())
    (directory / CONFIG_FILE).write_text(json.dumps({**config, **changes}))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / CONFIG_FILE).unlink(), "incomplete"),
        (lambda d: (d / WEIGHTS_FILE).unlink(), "incomplete"),
        (lambda d: (d / CONFIG_FILE).write_text("{not json"), "malformed"),
        (lambda d: rewrite_config(d, head={"hidden_units": 8}), "malformed"),
        (lambda d: rewrite_config(d, architecture="vgg16"), "expected 'resnet50'"),
        (lambda d: rewrite_config(d, class_names=["akita", "beagle"]), "2 class names"),
        (lambda d: replace_weights(d, lambda path: path.write_bytes(b"not a torch file")), "cannot be loaded"),
        (
            lambda d: replace_weights(d, lambda path: torch.save({"fc.0.weight": torch.zeros(1)}, path)),
            "cannot be loaded",
        ),
    ],
    ids=["no config", "no weights", "bad json", "head incomplete", "architecture", "class count", "garbage", "shapes"],
)
def test_a_bad_artifact_is_refused_saying_what_is_wrong(artifact_dir, damage, message):
    damage(artifact_dir)
    with pytest.raises(ArtifactError, match=message):
        load_artifact(artifact_dir)


def test_a_model_archive_left_packed_is_named_with_the_fix(tmp_path):
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz"):
        pass
    with pytest.raises(ArtifactError) as raised:
        load_artifact(tmp_path)
    assert str(raised.value) == (
        f"model artifact incomplete: {tmp_path / CONFIG_FILE} not found; found model.tar.gz instead: SageMaker "
        f"unpacks it, locally unpack it into {tmp_path} (tar -xzf {tmp_path / 'model.tar.gz'} -C {tmp_path})"
    )


def test_an_artifact_one_folder_down_is_named_with_the_fix(artifact_dir, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("opt_ml_model")
    artifact_dir.rename(model_dir / "model")  # what a tar of the folder, not of its files, unpacks to
    with pytest.raises(ArtifactError) as raised:
        load_artifact(model_dir)
    assert str(raised.value) == (
        f"model artifact incomplete: {model_dir / CONFIG_FILE} not found; found {model_dir / 'model' / CONFIG_FILE} "
        "instead: the archive has a top-level folder, pack the files at the archive's root "
        "(tar -C model -czf model.tar.gz .)"
    )


@contextmanager
def another_user() -> Iterator[int]:
    """Inside the block this process acts as `nobody` when it is root (to whom chmod denies nothing); yields the uid."""
    if os.geteuid() != 0:
        yield os.geteuid()
        return
    os.seteuid(65534)
    try:
        yield 65534
    finally:
        os.seteuid(0)


def test_model_files_the_server_user_cannot_read_are_named_with_the_fix(saved):
    with tempfile.TemporaryDirectory() as tmp:  # tmp_path's parents are closed to other users
        model_dir = Path(tmp)
        model_dir.chmod(0o755)
        config = model_dir / CONFIG_FILE
        config.write_bytes((saved / CONFIG_FILE).read_bytes())
        config.chmod(0o600)  # as root's files, served with docker run --user 1000:1000
        (model_dir / WEIGHTS_FILE).symlink_to(saved / WEIGHTS_FILE)
        with another_user() as uid, pytest.raises(ArtifactError) as raised:
            load_artifact(model_dir)
    assert str(raised.value) == (
        f"cannot read the model file {config}: permission denied (EACCES); make it readable for uid {uid} "
        f"(e.g. chmod -R a+rX {model_dir}), or run the server as its owner"
    )


@pytest.mark.parametrize(
    ("fine_tune", "trained_prefixes"),
    [("head", ("fc.",)), ("last_stage", ("layer4.", "fc.")), ("all", ("",))],
)
def test_fine_tune_trains_only_its_parameters(original, images, fine_tune, trained_prefixes):
    model = copy.deepcopy(original)
    trained = freeze(model, fine_tune)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    hps = Hyperparameters.from_strings({"optimizer": "sgd", "lr": "0.5", "lr_schedule": "none", "fine_tune": fine_tune})
    data = DataLoader(TensorDataset(images, torch.tensor([0, 1])), batch_size=2)
    make_loop(hps, model, trained, Cluster(), steps_per_epoch=1).train_epoch(data)
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    intended = {name for name in before if name.startswith(trained_prefixes)}
    assert changed <= intended
    assert {name for name, p in model.named_parameters() if p.requires_grad} == intended
    assert {"fc.3.weight", "fc.3.bias"} <= changed  # the output layer learns in every mode
