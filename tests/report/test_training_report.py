"""Training in the report: results.json keeps every TrainResult, the training figures, table and
training.csv are drawn from them, and a report without training has none of them.

The records are real: :func:`isokit.report.run.run_one` probes tiny MLPs of a parsed config
(2 schemes × 2 seeds), and :func:`isokit.train.train` trains each on a small classification set
built here (one run diverges on a huge learning rate) or on the teacher–student regression.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import json
import math
import re

import numpy as np
import pytest
import torch

from isokit.init import apply
from isokit.report import render
from isokit.report.config import parse_config
from isokit.report.results import Results, ResultsError, load_results
from isokit.report.run import run_one
from isokit.report.style import Palette
from isokit.report.training_figures import curves_figure, steps_figure
from isokit.report.training_series import (
    TRAINING_COLUMNS,
    collect_train_curves,
    train_points,
    training_rows,
)
from isokit.train import Split, TrainData, TrainOptions, load_data, train

MODEL = "mlp-relu-w6-d3"
SCHEMES = ("idinit", "orthogonal")
SEEDS = (0, 1)
#: The run given a learning rate that makes its loss overflow within a few steps.
DIVERGING = ("orthogonal", 1)
STEPS = 40


def _config(out_features: int, activation: str):
    return parse_config(
        {
            "title": "training test",
            "schemes": list(SCHEMES),
            "seeds": list(SEEDS),
            "inputs": {"examples": 2},
            "output": {"formats": ["png"]},
            "models": [
                {
                    "kind": "mlp",
                    "in_features": 6,
                    "width": 6,
                    "depth": 3,
                    "activation": activation,
                    "out_features": out_features,
                }
            ],
        }
    )


def _blobs() -> TrainData:
    """Three Gaussian classes in 6 dimensions, learnable in a few steps. The centres lie on the
    last three axes, so a network at the identity does not classify them from the start."""
    gen = torch.Generator().manual_seed(0)
    centres = 2.5 * torch.eye(6)[3:]

    def split(n: int) -> Split:
        labels = torch.arange(n) % 3
        return Split(inputs=centres[labels] + torch.randn(n, 6, generator=gen), targets=labels)

    return TrainData(
        name="blobs", task="classification", train=split(96), test=split(48), num_classes=3
    )


def _results(config, data: TrainData, options: TrainOptions) -> Results:
    """Probe every run with run_one, then train a fresh copy of its model as run_one built it."""
    records = []
    spec = config.models[0]
    for scheme in config.schemes:
        for seed in config.seeds:
            record = run_one(config, spec, scheme, seed)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = spec.build()
            apply(model, scheme.name, seed=seed)
            lr = 1e6 if (scheme.label, seed) == DIVERGING else options.lr
            meta = {"model": spec.label, "scheme": scheme.label, "seed": seed}
            record.train = train(model, data, options, seed=seed, lr=lr, meta=meta)
            records.append(record)
    return Results(
        config=config, records=records, environment={"isokit": "test"}, created="now", elapsed_s=1.5
    )


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread, as ``isokit report`` runs: on a shared machine tiny kernels are much
    faster so."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def classified():
    options = TrainOptions(
        lr=0.2, batch_size=16, steps=STEPS, eval_every=5, target_accuracy=0.9,
        checkpoints=(0, 10, STEPS),
    )  # fmt: skip
    # ReLU: a huge step makes the logits overflow (tanh would keep the loss finite).
    return _results(_config(3, "relu"), _blobs(), options)


@pytest.fixture(scope="module")
def regressed():
    data = load_data("teacher-student", n_train=64, n_test=32, in_features=6, out_features=2)
    options = TrainOptions(lr=0.05, batch_size=16, steps=20, checkpoints=(0, 20))
    return _results(_config(2, "tanh"), data, options)


@pytest.fixture(scope="module")
def classified_report(classified, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "report"
    render(classified, out, quiet=True)
    return out


def _names(out) -> set[str]:
    return {p.stem for p in (out / "figures").iterdir()}


def _same_bits(a, b) -> bool:
    """Same dtype, shape and bits, NaN for NaN (JSON's "nan" keeps no sign or payload)."""
    if a is None or b is None:
        return a is None and b is None
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    nan_a, nan_b = (np.isnan(x) if x.dtype.kind == "f" else np.zeros(x.shape, bool) for x in (a, b))
    return np.array_equal(nan_a, nan_b) and a[~nan_a].tobytes() == b[~nan_b].tobytes()


# ------------------------------------------------------------------------------ results.json


def test_results_json_keeps_every_train_result_bit_for_bit(classified, classified_report):
    data = json.loads((classified_report / "results.json").read_text(encoding="utf-8"))
    assert data["schema"] == "isokit.report.results/3" and "training" not in data
    assert all(run["train"] is not None for run in data["runs"])
    back = load_results(classified_report)
    arrays = ("step", "loss", "accuracy", "lr", "eval_step", "eval_loss", "eval_accuracy")
    for old, new in zip(classified.records, back.records, strict=True):
        a, b = old.train, new.train
        for name in arrays:
            assert _same_bits(getattr(a, name), getattr(b, name)), (old.scheme, old.seed, name)
        assert b.options == a.options and b.data == a.data and b.meta == a.meta
        assert (b.steps, b.diverged_at, b.steps_to_target) == (
            a.steps,
            a.diverged_at,
            a.steps_to_target,
        )
        assert b.wall_time_s == a.wall_time_s and b.environment == a.environment
        assert sorted(b.checkpoints) == sorted(a.checkpoints) == [0, 10, STEPS] or a.diverged
        for step, profile in a.checkpoints.items():
            for t_old, t_new in zip(profile.taps, b.checkpoints[step].taps, strict=True):
                assert _same_bits(t_old.singular_values, t_new.singular_values)
    diverged = [r for r in back.records if r.train.diverged]
    assert [(r.scheme, r.seed) for r in diverged] == [DIVERGING]
    # The loss that overflowed is kept as what it was (inf or nan), not dropped.
    assert not math.isfinite(diverged[0].train.loss[-1])


def test_a_bad_train_field_is_named(classified_report):
    good = json.loads((classified_report / "results.json").read_text(encoding="utf-8"))
    bad = copy.deepcopy(good)
    bad["runs"][1]["train"]["steps"] = "many"
    with pytest.raises(ResultsError, match=r"runs\[1\]\.train\.steps"):
        Results.from_dict(bad)
    bad = copy.deepcopy(good)
    bad["runs"][0]["train"]["train"]["loss"] = bad["runs"][0]["train"]["train"]["loss"][:-1]
    with pytest.raises(ResultsError, match=r"runs\[0\]\.train\.train\.loss"):
        Results.from_dict(bad)
    bad = copy.deepcopy(good)
    bad["runs"][2]["train"] = "abc"
    with pytest.raises(ResultsError, match=r"runs\[2\]\.train: "):
        Results.from_dict(bad)
    bad = copy.deepcopy(good)
    bad["runs"][0].update(status="not applicable", profile=None)
    with pytest.raises(ResultsError, match=r"runs\[0\]\.train: .*not applicable"):
        Results.from_dict(bad)


def test_a_schema_2_file_still_loads_and_its_placeholder_section_is_refused(classified_report):
    data = json.loads((classified_report / "results.json").read_text(encoding="utf-8"))
    old = copy.deepcopy(data)
    old["schema"] = "isokit.report.results/2"
    for run in old["runs"]:
        del run["train"]
    loaded = Results.from_dict(old)
    assert len(loaded.records) == len(data["runs"]) and not loaded.trained
    with_train = copy.deepcopy(old)
    with_train["runs"][0]["train"] = None  # /2 runs have no such field
    with pytest.raises(ResultsError, match=r"runs\[0\]\.train: unknown field"):
        Results.from_dict(with_train)
    old["training"] = {"curves": []}
    with pytest.raises(ResultsError, match=r": training: .*re-run the report"):
        Results.from_dict(old)


# ------------------------------------------------------------------------------ figures


def _training_names(model: str) -> set[str]:
    return {f"training_{model}", "steps_to_target", "isometry_vs_training", f"checkpoints_{model}"}


def test_every_training_figure_is_rendered(classified_report, regressed, tmp_path):
    training = _training_names(MODEL)
    assert training <= _names(classified_report)
    page = (classified_report / "report.html").read_text(encoding="utf-8")
    assert all(f"id='{name}'" in page for name in training)
    render(regressed, tmp_path / "reg", quiet=True)
    names = _names(tmp_path / "reg")
    # Regression: no accuracy target, so no steps-to-target figure; the rest is there.
    expected = _training_names(regressed.config.models[0].label) - {"steps_to_target"}
    assert expected <= names and "steps_to_target" not in names
    rows = training_rows(regressed)
    assert {r.metric for r in rows} == {"loss"} and all(r.median_steps is None for r in rows)


def _x_markers(fig) -> list[tuple[float, float]]:
    return [
        (float(line.get_xdata()[0]), float(line.get_ydata()[0]))
        for ax in fig.axes
        for line in ax.get_lines()
        if line.get_marker() == "x" and len(line.get_xdata()) == 1
    ]


def test_diverged_runs_are_marked_at_their_step(classified):
    palette = Palette(SCHEMES)
    record = next(r for r in classified.records if (r.scheme, r.seed) == DIVERGING)
    step = record.train.diverged_at
    assert step is not None and step < STEPS
    fig = curves_figure(MODEL, collect_train_curves(classified), palette)
    # One × on the loss panel and one on the accuracy panel, both at the divergence step.
    assert [x for x, _ in _x_markers(fig)] == [step, step]
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert f"diverged at step {step}" in texts
    # The diverged seed's curve stops there, and the median and band are the other seed's.
    curve = next(c for c in collect_train_curves(classified) if c.scheme == DIVERGING[0])
    gone = curve.column("loss", DIVERGING[1])
    assert np.isnan(gone[curve.step >= step]).all() and np.isfinite(gone[curve.step < step]).all()
    other = curve.column("loss", 1 - DIVERGING[1])
    for values in (curve.median("loss"), *curve.band("loss")):
        assert np.array_equal(values, other, equal_nan=True)
    steps = steps_figure([MODEL], train_points(classified), SCHEMES, palette)
    assert len(_x_markers(steps)) == 1


def test_a_report_without_training_has_none_of_the_training_figures(classified, tmp_path):
    plain = dataclasses.replace(
        classified, records=[dataclasses.replace(r, train=None) for r in classified.records]
    )
    render(plain, tmp_path / "plain", quiet=True)
    names = _names(tmp_path / "plain")
    assert names and not {n for n in names if re.match(r"training|steps_|isometry_vs|checkp", n)}
    assert not (tmp_path / "plain" / "training.csv").exists()
    page = (tmp_path / "plain" / "report.html").read_text(encoding="utf-8")
    assert "<h2>Training</h2>" not in page and "Training took" not in page


def test_a_trained_report_re_renders_into_its_own_directory(classified_report):
    before = (classified_report / "training.csv").read_bytes()
    render(load_results(classified_report), classified_report, quiet=True)
    assert (classified_report / "training.csv").read_bytes() == before


# ------------------------------------------------------------------------------ CSV, table


def _float(text: str) -> float:
    return float(text)  # "nan", "inf" and repr() strings all read back exactly


def test_training_csv_rows_are_the_train_result_arrays(classified, classified_report):
    text = (classified_report / "training.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == TRAINING_COLUMNS
    for record in classified.records:
        t = record.train
        mine = [r for r in rows if (r["scheme"], int(r["seed"])) == (record.scheme, record.seed)]
        for split, step, loss, acc in (
            ("train", t.step, t.loss, t.accuracy),
            ("test", t.eval_step, t.eval_loss, t.eval_accuracy),
        ):
            got = [r for r in mine if r["split"] == split]
            assert [int(r["step"]) for r in got] == step.tolist()
            assert _same_bits(np.array([_float(r["loss"]) for r in got]), loss)
            assert _same_bits(np.array([_float(r["accuracy"]) for r in got]), acc)
            assert {r["model"] for r in got} == {MODEL}
    assert len(rows) == sum(r.train.step.size + r.train.eval_step.size for r in classified.records)


def test_the_table_medians_equal_numpy_medians_of_the_runs(classified, classified_report):
    page = (classified_report / "report.html").read_text(encoding="utf-8")
    rows = {r.scheme: r for r in training_rows(classified)}
    for scheme in SCHEMES:
        runs = [r.train for r in classified.records if r.scheme == scheme]
        steps = [math.inf if t.steps_to_target is None else t.steps_to_target for t in runs]
        expected = float(np.median(steps))
        assert rows[scheme].median_steps == expected
        kept = [t.final_accuracy for t in runs if not t.diverged]
        assert rows[scheme].final == (float(np.median(kept)) if kept else None)
        assert rows[scheme].diverged == sum(t.diverged for t in runs)
        row = re.search(rf"<tr><td>{scheme}</td>.*?</tr>", page).group(0)
        cell = "not reached" if math.isinf(expected) else f"{expected:.4g}"
        assert f"<td class='num'>{cell} (" in row, row
    # The diverged run never reached the target, so its scheme's median is the larger step or
    # "not reached"; both schemes' medians are quoted in the notes.
    assert "Median steps to the target accuracy on " + MODEL in page
    assert "Training took" in page and "1 of them diverged" in page


def test_failed_checkpoint_probes_are_counted_in_the_notes(classified):
    import copy

    from isokit.report.training_page import training_notes

    assert not any("checkpoint probe" in n for n in training_notes(classified))
    results = copy.deepcopy(classified)
    record = results.trained[0]
    record.train.checkpoint_errors[7] = "the Jacobian at tap 'head' holds NaN or inf\ntrace"
    note = next(n for n in training_notes(results) if "checkpoint probe" in n)
    assert note.startswith("1 checkpoint probe(s) found NaN or inf")
    assert f"{record.scheme} on {record.model} at step 7: the Jacobian at tap 'head'" in note
