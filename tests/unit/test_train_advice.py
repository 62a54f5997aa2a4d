"""Recommendations from curves, rule verdicts and per-class test accuracy (dogbreed.advice)."""

from dogbreed import advice


def rows(*pairs: tuple[float, float], losses: list[float] | None = None) -> list[dict]:
    """History rows from (train_acc, valid_acc) pairs; valid losses given or falling."""
    losses = losses or [1.0 / (i + 1) for i in range(len(pairs))]
    return [
        {"epoch": i + 1, "train_acc": t, "valid_acc": v, "valid_loss": loss}
        for i, ((t, v), loss) in enumerate(zip(pairs, losses, strict=True))
    ]


def test_overfitting_run_is_told_to_regularise():
    found = advice.recommendations(rows((0.6, 0.55), (0.9, 0.6), (0.99, 0.62), losses=[1.0, 0.8, 0.9]))
    assert found == [f"{advice.OVERFIT} (train_acc - valid_acc = 0.37 at the last epoch)"]


def test_underfitting_run_still_improving_is_told_to_unfreeze_and_train_longer():
    found = advice.recommendations(rows((0.3, 0.3), (0.4, 0.4), (0.5, 0.5)))
    assert found == [f"{advice.UNDERFIT} (train_acc 0.50 at the last epoch)", advice.STILL_IMPROVING]


def test_swinging_validation_accuracy_and_fired_rules():
    history = rows((0.9, 0.68), (0.92, 0.5), (0.95, 0.73), (0.96, 0.5), losses=[0.9, 1.2, 0.8, 1.3])
    found = advice.recommendations(history, fired=["vanishing_gradient", "poor_weight_initialization"])
    assert advice.UNSTABLE in found and advice.VANISHING in found and advice.POOR_INIT in found
    assert found[0].startswith(advice.OVERFIT)


def test_weak_classes_are_named_weakest_first():
    per_class = {
        "a": {"accuracy": 0.9, "count": 10},
        "b": {"accuracy": 0.2, "count": 10},
        "c": {"accuracy": 0.95, "count": 10},
        "d": {"accuracy": 0.4, "count": 10},
    }
    (found,) = advice.recommendations([], per_class=per_class)
    assert found.startswith("weakest classes on the test split (mean 0.61): b (0.20), d (0.40)")


def test_a_healthy_run_gets_no_advice():
    found = advice.recommendations(rows((0.9, 0.88), (0.95, 0.9), (0.97, 0.91), losses=[0.5, 0.3, 0.35]))
    assert found == ["no problem found in the curves, the rules or the test split"]


def test_a_model_that_cannot_fit_is_not_called_overfitting_nor_blamed_on_classes():
    history = rows((0.25, 0.25), (0.3, 0.25), (0.36, 0.25), losses=[2.0, 1.9, 2.0])
    per_class = {"a": {"accuracy": 1.0, "count": 14}, **{c: {"accuracy": 0.0, "count": 14} for c in "bcd"}}
    found = advice.recommendations(history, per_class=per_class)
    assert found == [f"{advice.UNDERFIT} (train_acc 0.36 at the last epoch)"]


def test_an_imbalanced_training_split_is_named_with_its_largest_and_smallest_class():
    """60/2/2 images: validation accuracy sat at chance and the only advice was "overfitting"."""
    history = rows((0.9, 0.33), (0.94, 0.33))
    found = advice.recommendations(history, train_counts={"001.A": 60, "002.B": 2, "003.C": 3})
    assert "imbalanced classes: 001.A has 60 training images, 002.B 2: add images" in found[-1]
    assert not [line for line in advice.recommendations(history, train_counts={"a": 8, "b": 2}) if "imbalanced" in line]
