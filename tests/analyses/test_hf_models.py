"""analyses/hf_models.py: HF BERT, GPT-2 and ViT spectra at init and a ViT trained on images."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from tests.analyses.conftest import ANALYSES

sys.path.insert(0, str(ANALYSES))
from lib_hf_models.rule import spectra_verdict, train_verdict  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")


def test_the_rules_read_the_last_block_and_the_best_baseline():
    near = {"var_nonzero": [1e-9], "m1_nonzero": [1.0]}
    spread = {"var_nonzero": [3.0], "m1_nonzero": [5.0]}
    assert spectra_verdict({"m": {"idinit": near, "k": spread}}, ["k"])["verdict"] == "confirmed"
    assert spectra_verdict({"m": {"idinit": spread, "k": near}}, ["k"])["verdict"] == (
        "contradicted"
    )
    gain = {"var_nonzero": [1e-9], "m1_nonzero": [2.0]}  # isometric shape, not unit gain
    assert spectra_verdict({"m": {"idinit": gain, "k": spread}}, ["k"])["verdict"] == "unclear"
    t = {"idinit (head=idi)": {"final_accuracy": 0.70}, "a": {"final_accuracy": 0.80}}
    assert train_verdict(t, "idinit (head=idi)")["verdict"] == "contradicted"
    t["idinit (head=idi)"]["final_accuracy"] = 0.77
    assert train_verdict(t, "idinit (head=idi)")["verdict"] == "unclear"


@pytest.mark.slow
def test_the_spectra_are_the_cells_and_identity_blocks_are_isometric(quick_run):
    from isokit.sweep import load_sweep

    run = quick_run("hf_models")
    spec = run.record["numbers"]["spectra"]
    assert set(spec) == {"bert", "gpt2", "vit"}
    sweep = load_sweep(run.out.parent / "work" / "spectra")
    assert sweep.missing == 0
    for c in sweep.results:
        assert c.status == "ok", (c.axes, c.error)
        entry = spec[c.axes["model"]][c.axes["scheme"]]
        # One seed in quick mode: the JSON's value is the median over this cell's inputs.
        got = np.median(c.record.profile.stat("var_nonzero", None), axis=1)
        np.testing.assert_allclose(entry["var_nonzero"], got, rtol=0, atol=0)
    for model in ("gpt2", "vit"):
        # Pre-norm blocks whose branches end in a zero layer or gate return their input: J = I.
        for scheme in ("fixup", "skipinit", "rezero", "zero"):
            e = spec[model][scheme]
            assert max(e["var_nonzero"]) < 1e-12 and np.allclose(e["m1_nonzero"], 1, atol=1e-9)
    for model, schemes in spec.items():
        # IDInit: identity up to ε = 1e-6 per block; random weights spread the spectrum.
        assert schemes["idinit"]["var_nonzero"][-1] < 1e-5, model
        assert abs(schemes["idinit"]["m1_nonzero"][-1] - 1) < 1e-2, model
        assert schemes["kaiming-normal"]["var_nonzero"][-1] > 1.0, model
    # BERT is post-norm: the LayerNorm after each addition removes directions per token.
    assert spec["bert"]["idinit"]["rank_fraction"][-1] < 1.0
    assert spec["gpt2"]["idinit"]["rank_fraction"][-1] == 1.0


@pytest.mark.slow
def test_the_vit_trains_and_a_zero_head_starts_at_the_class_0_frequency(quick_run):
    from isokit.sweep import load_sweep
    from isokit.train import load_data

    run = quick_run("hf_models")
    rec = run.record
    trained = rec["numbers"]["training"]
    assert {"idinit (head=idi)", "idinit (head=zero)", "kaiming-normal"} <= set(trained)
    sweep = load_sweep(run.out.parent / "work" / "train")
    for c in sweep.results:
        label = c.axes["scheme"]
        if "option.head" in c.axes:
            label = f"idinit (head={c.axes['option.head']})"
        seed = trained[label]["seeds"][0]
        assert seed["eval_accuracy"] == c.record.train.eval_accuracy.tolist()
        assert seed["final_accuracy"] == c.record.train.final_accuracy
    # A zero classifier gives all-zero logits, whose arg-max is class 0: the accuracy before
    # any step is the frequency of label 0 among the evaluated test images.
    n = rec["settings"]["eval_examples"]
    labels = load_data("fashion-mnist", pad_to=32, test_limit=n).test.targets[:n].numpy()
    zero_head = float(np.mean(labels == 0))
    for label in ("idinit (head=zero)", "fixup"):
        assert trained[label]["seeds"][0]["eval_accuracy"][0] == pytest.approx(zero_head)
    # Every scheme starts near chance; IDInit with the identity head learns within the budget.
    assert all(e["seeds"][0]["eval_accuracy"][0] < 0.3 for e in trained.values())
    assert trained["idinit (head=idi)"]["final_accuracy"] > 0.3
    verdicts = rec["verdict"]["IDInit trains the HF ViT at least as well as the baselines"]
    assert set(verdicts) == {"head=idi", "head=zero"}
    assert rec["numbers"]["not_trained"].keys() == {"bert", "gpt2"}
