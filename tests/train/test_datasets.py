"""The named data sets of load_data: shapes, seeds and option errors of the synthetic tasks,
scikit-learn's digits (skipped, saying so, without scikit-learn), Fashion-MNIST through
load_data, and the registry's own errors."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch

from isokit.train import DATASETS, DataError, DatasetUnavailableError, load_data, train
from tests.train.reference import mlp
from tests.train.test_data import REAL, idx_bytes, write

HAS_SKLEARN = importlib.util.find_spec("sklearn") is not None
needs_sklearn = pytest.mark.skipif(
    not HAS_SKLEARN, reason="scikit-learn is not installed (pip install isokit[digits])"
)


def test_the_linear_toy_is_gaussian_inputs_with_target_minus_x():
    data = load_data("linear-negative-identity", seed=3)
    assert data.task == "regression" and data.num_classes is None
    assert data.train.inputs.shape == (2000, 10) and data.test.inputs.shape == (500, 10)
    assert data.train.inputs.dtype == torch.float64
    for split in (data.train, data.test):
        assert torch.equal(split.targets, -split.inputs)
    x = data.train.inputs
    # A mean entry has a sampling error of 1/√2000 ≈ 0.022, a covariance entry up to
    # √(2/2000) ≈ 0.032: allow about six of them.
    assert float(x.mean(0).abs().max()) < 0.15
    torch.testing.assert_close(x.T @ x / len(x), torch.eye(10, dtype=x.dtype), atol=0.2, rtol=0)
    assert not torch.equal(data.train.inputs[:500], data.test.inputs)
    assert data.info == {"seed": 3, "dim": 10}


def test_the_teacher_is_shared_by_both_splits():
    """Targets are tanh features times one V: with 2 hidden units, train and test targets
    together span a 2-dimensional space of the 5 outputs."""
    data = load_data(
        "teacher-student", n_train=64, n_test=32, in_features=4, hidden=2, out_features=5
    )
    both = torch.cat([data.train.targets, data.test.targets])
    singular = torch.linalg.svdvals(both)
    assert singular[1] > 1e-3 * singular[0] and singular[2] < 1e-12 * singular[0]
    other = load_data(
        "teacher-student", seed=1, n_train=64, n_test=32, in_features=4, hidden=2, out_features=5
    )
    mixed = torch.cat([data.train.targets, other.test.targets])
    assert torch.linalg.svdvals(mixed)[2] > 1e-6  # another seed: another teacher


def test_label_noise_is_added_to_the_same_clean_targets():
    kwargs = {"n_train": 4000, "n_test": 10, "in_features": 3, "out_features": 2}
    clean = load_data("teacher-student", **kwargs)
    noisy = load_data("teacher-student", noise=0.5, **kwargs)
    assert torch.equal(clean.train.inputs, noisy.train.inputs)
    residual = noisy.train.targets - clean.train.targets
    assert abs(float(residual.std()) - 0.5) < 0.02 and abs(float(residual.mean())) < 0.02


@pytest.mark.parametrize("name", ["teacher-student", "linear-negative-identity"])
def test_synthetic_sets_depend_on_the_seed_only(name):
    a, b, c = load_data(name, seed=7), load_data(name, seed=7), load_data(name, seed=8)
    assert torch.equal(a.train.inputs, b.train.inputs) and torch.equal(
        a.test.targets, b.test.targets
    )
    assert not torch.equal(a.train.inputs, c.train.inputs)


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("teacher-student", {"n_train": 0}, "n_train"),
        ("teacher-student", {"hidden": 2.5}, "hidden"),
        ("teacher-student", {"in_features": True}, "in_features"),
        ("teacher-student", {"noise": -0.1}, "noise: must be a number >= 0"),
        ("teacher-student", {"noise": float("inf")}, "noise: must be finite"),
        ("teacher-student", {"noise": "0.1"}, "noise"),
        ("linear-negative-identity", {"dim": 0}, "dim"),
        ("linear-negative-identity", {"n_test": -1}, "n_test"),
        ("linear-negative-identity", {"width": 10}, "width: not an option of data set"),
        ("digits", {"layot": "image"}, "did you mean 'layout'"),
        ("teacher-student", {"n_trian": 10}, "did you mean 'n_train'"),
    ],
)
def test_bad_data_options_are_named(name, options, match):
    with pytest.raises(DataError, match=match):
        load_data(name, **options)


def test_unknown_data_sets_are_refused_with_the_known_names():
    with pytest.raises(DataError, match="unknown data set 'digit'; did you mean 'digits'") as info:
        load_data("digit")
    assert all(name in str(info.value) for name in DATASETS)
    with pytest.raises(DataError, match="unknown data set"):
        load_data(3)


# ------------------------------------------------------------------------------------ digits


@needs_sklearn
def test_digits_are_the_bundled_images_scaled_and_split_by_class():
    from sklearn.datasets import load_digits

    bundled = load_digits()
    data = load_data("digits", seed=0)
    assert data.task == "classification" and data.num_classes == 10
    assert data.train.inputs.shape == (1347, 64) and data.test.inputs.shape == (450, 64)
    assert data.train.inputs.dtype == torch.float32
    x = torch.cat([data.train.inputs, data.test.inputs]).double()
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert torch.equal(x * 16, (x * 16).round())  # grey levels 0..16, divided by 16
    # The two splits are the bundled set, each example once.
    rows = sorted(map(tuple, (x * 16).round().int().tolist()))
    assert rows == sorted(map(tuple, bundled.data.astype(int).tolist()))
    per_class = np.bincount(bundled.target, minlength=10)
    held = data.test.targets.bincount(minlength=10).numpy()
    assert (np.abs(held - 0.25 * per_class) <= 0.5).all()  # a quarter of every class


@needs_sklearn
def test_digits_split_follows_the_seed_and_the_options():
    a, b, c = (load_data("digits", seed=s) for s in (1, 1, 2))
    assert torch.equal(a.test.inputs, b.test.inputs) and not torch.equal(
        a.test.inputs, c.test.inputs
    )
    image = load_data("digits", seed=1, layout="image")
    assert image.train.inputs.shape == (1347, 1, 8, 8)
    assert torch.equal(image.train.inputs.reshape(-1, 64), a.train.inputs)
    plain = load_data("digits", seed=1, stratify=False, test_fraction=0.5)
    assert len(plain.test) == round(0.5 * 1797) and len(plain.train) == 1797 - len(plain.test)
    assert a.info == {"seed": 1, "test_fraction": 0.25, "layout": "flat", "stratify": True}


@needs_sklearn
@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"test_fraction": 0}, "test_fraction: must be a number strictly between 0 and 1"),
        ({"test_fraction": 1.0}, "strictly between"),
        ({"test_fraction": True}, "strictly between"),
        ({"test_fraction": 0.001}, "each split needs at least one"),
        ({"layout": "grid"}, "layout: must be one of"),
        ({"stratify": 1}, "stratify: must be true or false"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_digits_options_are_named(options, match):
    with pytest.raises(DataError, match=match):
        load_data("digits", **options)


@needs_sklearn
def test_a_small_mlp_learns_the_digits():
    data = load_data("digits", seed=0)
    model = mlp(64, 32, depth=2, out_features=10, activation="relu")
    result = train(model, data, optimizer="adam", lr=1e-2, batch_size=64, steps=60)
    assert result.final_accuracy > 0.8  # chance is 0.1


def test_digits_without_scikit_learn_say_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now fails
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(DatasetUnavailableError, match=r"pip install isokit\[digits\]"):
        load_data("digits")


# ----------------------------------------------------------------------------- fashion-mnist


def test_fashion_mnist_through_load_data_from_a_directory(tmp_path):
    rng = np.random.default_rng(1)
    for prefix, n in (("train", 6), ("t10k", 4)):
        write(
            tmp_path / f"{prefix}-images-idx3-ubyte.gz",
            idx_bytes(rng.integers(0, 256, (n, 28, 28))),
        )
        write(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", idx_bytes(np.arange(n) % 10))
    data = load_data("fashion-mnist", root=str(tmp_path), channels=3)
    assert data.train.inputs.shape == (6, 3, 32, 32) and data.test.inputs.shape == (4, 3, 32, 32)
    assert data.num_classes == 10 and data.test.targets.tolist() == [0, 1, 2, 3]
    with pytest.raises(DataError, match="pad_to"):
        load_data("fashion-mnist", root=str(tmp_path), pad_to=20)


@pytest.mark.skipif(
    not REAL,
    reason="dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)",
)
def test_the_installed_fashion_mnist_loads_as_a_training_set():
    data = load_data("fashion-mnist", limit=100, test_limit=50)
    assert data.train.inputs.shape == (100, 1, 32, 32) and data.test.inputs.shape == (50, 1, 32, 32)
    assert data.train.targets.max() <= 9
