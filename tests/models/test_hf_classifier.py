"""``isokit.models.hf.vit_classifier``: a Hugging Face ViT classifier that isokit can train."""

from __future__ import annotations

import pytest
import torch

import isokit
from isokit.train import load_data, train

pytest.importorskip("transformers")

from isokit.models.hf import Logits, vit_classifier  # noqa: E402


def test_the_logits_are_the_hf_classifiers_own():
    torch.manual_seed(0)
    model = vit_classifier(image_size=8, patch_size=4, num_labels=7)
    assert isinstance(model, Logits)
    x = torch.randn(3, 1, 8, 8)
    model.eval()
    with torch.no_grad():
        out = model(x)
        expected = model.model(pixel_values=x).logits
    assert out.shape == (3, 7) and torch.equal(out, expected)
    names = dict(model.named_modules())
    assert "model.vit.layers.1" in names and "model.classifier" in names


def test_it_trains_on_images_under_idinit():
    # Digits as 8×8 images: the trainer needs a tensor of logits, which Logits returns.
    data = load_data("digits", layout="image")
    model = vit_classifier(image_size=8, patch_size=4, hidden_size=16, intermediate_size=32)
    isokit.init.apply(model, "idinit", seed=0, example_inputs=(data.test.inputs[:2],))
    result = train(model, data, optimizer="adam", lr=3e-3, batch_size=64, steps=60, seed=0)
    assert not result.diverged
    # Ten classes: chance is 0.1; sixty Adam steps learn well above it.
    assert result.eval_accuracy[0] < 0.3 < result.final_accuracy


def test_a_config_with_train_takes_it_as_a_factory_model():
    from isokit.report import parse_config

    model = {
        "factory": "isokit.models.hf:vit_classifier",
        "kwargs": {"image_size": 8, "num_hidden_layers": 1},
        "input_shape": [1, 8, 8],
        "taps": "model.vit.layers.*",
    }
    config = parse_config(
        {
            "schemes": ["idinit"],
            "inputs": {"examples": 1},
            "models": [model],
            "train": {"data": "digits", "data_options": {"layout": "image"}, "steps": 1},
        }
    )
    assert config.models[0].input_shape == (1, 8, 8) and config.train is not None
