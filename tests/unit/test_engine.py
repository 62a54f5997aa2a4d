"""The training loop on tiny random models (dogbreed.engine): it learns, follows the schedule, keeps frozen parts
frozen, stops on request, and evaluates into a confusion matrix."""

import pytest
import torch
from torch import nn
from torch.nn import functional
from torch.utils.data import DataLoader, TensorDataset

from dogbreed.contract.hyperparams import Hyperparameters, check_implemented
from dogbreed.data import make_loader
from dogbreed.distributed import Cluster
from dogbreed.engine import (
    OPTIMIZERS,
    Interrupted,
    SmoothedCrossEntropyLoss,
    cosine_with_warmup,
    extract_features,
    lr_schedule,
    make_loop,
)
from dogbreed.errors import UserError
from dogbreed.model import HeadConfig, build_model, freeze

CONSTANT_SGD = {"optimizer": "sgd", "lr": "0.5", "momentum": "0", "lr_schedule": "none", "label_smoothing": "0"}


def hyperparameters(**values: str) -> Hyperparameters:
    return Hyperparameters.from_strings(values)


def separable(count: int = 64, classes: int = 3, seed: int = 0) -> TensorDataset:
    """Points around one centre per class: a linear model can learn them exactly."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % classes
    centres = torch.eye(classes, 8) * 4
    return TensorDataset(centres[labels] + 0.3 * torch.randn(count, 8, generator=generator), labels)


def loader(dataset: TensorDataset, batch_size: int = 16) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size)


def test_the_loop_learns_a_separable_problem():
    torch.manual_seed(0)
    model, data = nn.Linear(8, 3), loader(separable())
    loop = make_loop(hyperparameters(**CONSTANT_SGD), model, [model], Cluster(), steps_per_epoch=len(data))
    before = loop.evaluate(data, "valid")
    for _ in range(5):
        trained = loop.train_epoch(data)
    after = loop.evaluate(data, "valid")
    assert after.loss < before.loss / 4 and after.acc == 1.0
    assert trained.count == after.count == 64


def test_frozen_parts_keep_their_weights_and_batchnorm_statistics():
    torch.manual_seed(0)
    norm, head = nn.BatchNorm1d(8), nn.Linear(8, 3)
    model = nn.Sequential(norm, head)
    norm.requires_grad_(False)
    frozen = {key: value.clone() for key, value in norm.state_dict().items()}
    head_before = head.weight.clone()
    data = loader(separable())
    loop = make_loop(hyperparameters(**CONSTANT_SGD), model, [head], Cluster(), steps_per_epoch=len(data))
    loop.train_epoch(data)
    for key, value in norm.state_dict().items():
        torch.testing.assert_close(value, frozen[key], msg=key)
    assert not torch.equal(head.weight, head_before)


@pytest.mark.parametrize(
    ("name", "kind", "extra"),
    [("adam", torch.optim.Adam, {}), ("adamw", torch.optim.AdamW, {}), ("sgd", torch.optim.SGD, {"momentum": 0.8})],
)
def test_each_optimizer_name_builds_its_optimizer_with_the_hyperparameters(name, kind, extra):
    model = nn.Linear(2, 2)
    hps = hyperparameters(optimizer=name, lr="0.02", weight_decay="0.01", momentum="0.8")
    optimizer = make_loop(hps, model, [model], Cluster(), steps_per_epoch=1).optimizer
    assert type(optimizer) is kind
    group = optimizer.param_groups[0]
    assert (group["lr"], group["weight_decay"]) == (0.02, 0.01)
    assert {key: group[key] for key in extra} == extra


def test_a_mapping_that_misses_a_contract_name_is_refused():
    check_implemented(("adam", "sgd"), {"sgd": 1, "adam": 2}, "ok")
    with pytest.raises(RuntimeError, match=r"OPTIMIZERS implements \['adam'\]; the contract names \['adam', 'sgd'\]"):
        check_implemented(("adam", "sgd"), {"adam": 1}, "OPTIMIZERS")
    assert sorted(OPTIMIZERS) == ["adam", "adamw", "sgd"]


def test_lr_schedule_warms_up_then_decays_over_the_job():
    assert lr_schedule(hyperparameters(lr_schedule="none"), steps_per_epoch=10) is None
    lr_at = lr_schedule(hyperparameters(lr="0.1", epochs="4", warmup_epochs="0.5"), steps_per_epoch=10)
    expected = cosine_with_warmup(0.1, total_steps=40, warmup_steps=5)
    assert [lr_at(step) for step in (0, 4, 5, 22, 40)] == [expected(step) for step in (0, 4, 5, 22, 40)]
    assert lr_at(0) == pytest.approx(0.02) and lr_at(4) == pytest.approx(0.1) and lr_at(40) == pytest.approx(0.0)


def test_a_resumed_loop_continues_the_schedule_where_the_job_left_off():
    model, data = nn.Linear(8, 3), loader(separable())  # 4 steps per epoch
    hps = hyperparameters(lr="0.1", epochs="3", warmup_epochs="1")
    loop = make_loop(hps, model, [model], Cluster(), steps_per_epoch=len(data), epochs_done=1)
    loop.train_epoch(data)
    lr_at = cosine_with_warmup(0.1, total_steps=12, warmup_steps=4)
    assert loop.steps_done == 8
    assert loop.optimizer.param_groups[0]["lr"] == pytest.approx(lr_at(7))


def test_smoothed_loss_smooths_in_training_only():
    outputs, labels = torch.randn(6, 4, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 3, 0, 1])
    criterion = SmoothedCrossEntropyLoss(label_smoothing=0.2)
    torch.testing.assert_close(
        criterion(outputs, labels), functional.cross_entropy(outputs, labels, label_smoothing=0.2)
    )
    criterion.eval()
    torch.testing.assert_close(criterion(outputs, labels), functional.cross_entropy(outputs, labels))
    assert functional.cross_entropy(outputs, labels, label_smoothing=0.2) != functional.cross_entropy(outputs, labels)


def test_evaluate_counts_true_and_predicted_classes():
    predicted, labels = torch.tensor([0, 1, 1, 2, 2, 2]), torch.tensor([0, 1, 2, 2, 2, 0])
    data = loader(TensorDataset(functional.one_hot(predicted, 3).float(), labels), batch_size=4)
    identity = nn.Linear(3, 3)  # outputs = inputs: one-hot of the predicted class
    with torch.no_grad():
        identity.weight.copy_(torch.eye(3))
        identity.bias.zero_()
    loop = make_loop(hyperparameters(), identity, [identity], Cluster(), steps_per_epoch=len(data))
    confusion = torch.zeros(3, 3, dtype=torch.int64)
    result = loop.evaluate(data, "test", confusion)
    assert confusion.tolist() == [[1, 0, 1], [0, 1, 0], [0, 1, 2]]  # rows: true class
    assert (result.acc, result.count) == (4 / 6, 6)


def test_a_stop_request_interrupts_before_the_next_batch():
    model, data = nn.Linear(8, 3), loader(separable())
    requests = iter([False, False, True])
    loop = make_loop(
        hyperparameters(), model, [model], Cluster(), steps_per_epoch=len(data), should_stop=lambda: next(requests)
    )
    with pytest.raises(Interrupted):
        loop.train_epoch(data)
    assert loop.steps_done == 2


def test_the_head_on_cached_features_computes_what_the_whole_model_does():
    torch.manual_seed(0)
    model = build_model(HeadConfig(num_classes=3, hidden_units=8)).eval()
    images = torch.randn(3, 3, 32, 32)
    data = loader(TensorDataset(images, torch.arange(3)), batch_size=2)
    features = extract_features(model, data, torch.device("cpu"), precision="fp32", split="train")
    assert features.tensors[0].shape == (3, 2048) and features.tensors[1].tolist() == [0, 1, 2]
    assert model.conv1.weight.is_contiguous()  # the model keeps its usual layout for saving
    with torch.no_grad():
        torch.testing.assert_close(model.fc(features.tensors[0]), model(images), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("images", "batches"), [(9, [8]), (10, [8, 2]), (8, [8]), (1, [1])])
def test_a_training_epoch_never_ends_on_a_batch_of_one_image(images, batches):
    """BatchNorm cannot train on one image of 1x1 feature maps: a last batch of one is dropped (another image each
    epoch, as the order is shuffled); evaluation keeps every image."""
    dataset = TensorDataset(torch.randn(images, 8), torch.zeros(images, dtype=torch.int64))
    kwargs = {"batch_size": 8, "num_workers": 0, "seed": 0, "shard": None}
    assert [len(labels) for _, labels in make_loader(dataset, train=True, **kwargs)] == batches
    assert sum(len(labels) for _, labels in make_loader(dataset, train=False, **kwargs)) == images


def test_a_batch_of_one_that_batchnorm_cannot_train_on_says_what_to_change():
    torch.manual_seed(0)
    model = build_model(HeadConfig(num_classes=3, hidden_units=8))
    trained = freeze(model, "all")
    data = loader(TensorDataset(torch.randn(1, 3, 32, 32), torch.zeros(1, dtype=torch.int64)), batch_size=1)
    loop = make_loop(hyperparameters(), model, trained, Cluster(), steps_per_epoch=1)
    with pytest.raises(UserError, match="use batch_size >= 2, image_size >= 64, or fine_tune=head"):
        loop.train_epoch(data)


def test_a_resumed_optimizer_keeps_its_state_but_takes_this_jobs_settings(caplog):
    """Was: load_state_dict put back the checkpoint's lr, weight_decay and momentum (lr_schedule=none)."""
    model, data = nn.Linear(8, 3), loader(separable())
    before = hyperparameters(optimizer="sgd", lr="0.001", weight_decay="0", momentum="0.9", lr_schedule="none")
    trained = make_loop(before, model, [model], Cluster(), steps_per_epoch=len(data))
    trained.train_epoch(data)
    state = trained.optimizer.state_dict()
    now = hyperparameters(optimizer="sgd", lr="0.05", weight_decay="0.01", momentum="0.5", lr_schedule="none")
    caplog.set_level("INFO")
    resumed = make_loop(now, model, [model], Cluster(), steps_per_epoch=len(data), optimizer_state=state)
    (group,) = resumed.optimizer.param_groups
    assert (group["lr"], group["weight_decay"], group["momentum"]) == (0.05, 0.01, 0.5)
    buffers = [resumed.optimizer.state[p]["momentum_buffer"] for p in model.parameters()]
    assert all(torch.equal(b, state["state"][i]["momentum_buffer"]) for i, b in enumerate(buffers))
    assert "not the checkpoint's: lr=0.05 (checkpoint: 0.001), momentum=0.5 (checkpoint: 0.9), weight_decay=0.01" in (
        caplog.text
    )


def test_a_scheduled_lr_is_not_reported_as_changed_on_resume(caplog):
    model, data = nn.Linear(8, 3), loader(separable())
    hps = hyperparameters(lr="0.1", epochs="3")
    first = make_loop(hps, model, [model], Cluster(), steps_per_epoch=len(data))
    first.train_epoch(data)
    caplog.set_level("INFO")
    make_loop(hps, model, [model], Cluster(), steps_per_epoch=len(data), optimizer_state=first.optimizer.state_dict())
    assert "not the checkpoint's" not in caplog.text


@pytest.mark.parametrize("split", ["train", "valid"])
def test_a_split_with_no_decoded_batch_has_no_figures(split):
    """Every batch None (nothing decoded): a UserError naming the split, not a loss of 0 over 0 images."""
    model = nn.Linear(8, 3)
    loop = make_loop(hyperparameters(), model, [model], Cluster(), steps_per_epoch=2)
    with pytest.raises(UserError, match=f"^no image of the {split} split could be decoded"):
        loop.train_epoch([None, None]) if split == "train" else loop.evaluate([None, None], split)
    with pytest.raises(UserError, match=f"^no image of the {split} split could be decoded"):
        extract_features(build_model(HeadConfig(3)), [None], torch.device("cpu"), split=split)
