"""End-to-end report: files exist and parse, numbers round-trip, reruns are identical."""

from __future__ import annotations

import base64
import csv
import dataclasses
import json
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from isokit.report import (
    Config,
    ConfigError,
    Results,
    load_results,
    make_report,
    publish,
    render,
    run_config,
)
from isokit.report.io import ReportDir
from isokit.report.series import collect_curves, ranking

PNG = b"\x89PNG\r\n\x1a\n"


class _Page(HTMLParser):
    """Collects what the tests look at: images, inline SVGs, tables, external references."""

    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[str] = []
        self.svgs = 0
        self.tables = 0
        self.rows: list[list[str]] = []
        self.external: list[str] = []
        self.scripts = 0
        self._row: list[str] | None = None
        self._cell = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.imgs.append(attrs.get("src", ""))
        elif tag == "svg":
            self.svgs += 1
        elif tag == "table":
            self.tables += 1
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = True
            if self._row is not None:
                self._row.append("")
        elif tag == "script":
            self.scripts += 1
        for key in ("src", "href"):
            value = attrs.get(key) or ""
            if value.startswith(("http:", "https:", "//")) or (tag == "link"):
                self.external.append(value)

    def handle_endtag(self, tag):
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        elif tag in ("td", "th"):
            self._cell = False

    def handle_data(self, data):
        if self._cell and self._row:
            self._row[-1] += data


def _page(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def _figure_names(out: Path) -> set[str]:
    return {p.stem for p in (out / "figures").iterdir()}


# ------------------------------------------------------------------------------------ files


def test_every_file_exists_and_parses(small_report):
    out = small_report.out
    assert {p.name for p in out.iterdir()} == {
        "results.json",
        "report.html",
        "ranking.csv",
        "summary.csv",
        "figures",
    }
    names = _figure_names(out)
    expected = {
        "moments",
        "conditioning",
        "histograms",
        "signal",
        "blocks",
        "spectrum_mlp-tanh-w6-d3",
        "spectrum_resnet8-w2-none",
    }
    assert names == expected
    for name in names:
        png = (out / "figures" / f"{name}.png").read_bytes()
        assert png.startswith(PNG) and len(png) > 5000
        root = ET.parse(out / "figures" / f"{name}.svg").getroot()
        assert root.tag.endswith("svg")
    json.loads((out / "results.json").read_text(encoding="utf-8"))  # strict JSON parses
    assert not [p for p in out.rglob("*") if p.name.startswith(".")], "temporary files left"


def test_html_is_self_contained_and_holds_every_figure_and_the_table(small_report):
    page = _page(small_report.out / "report.html")
    n_figures = len(list((small_report.out / "figures").glob("*.png")))
    assert len(page.imgs) + page.svgs == n_figures
    for src in page.imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
    assert page.external == [] and page.scripts == 0
    ranked = [r for r in page.rows if len(r) == 11 and r[0].strip().isdigit()]
    # every applicable model × scheme has a ranked row: 3 on the MLP, 4 on the ResNet
    assert len(ranked) == 3 + 4
    text = (small_report.out / "report.html").read_text(encoding="utf-8")
    assert "How to read this report" in text and "not applicable" in text


def test_ranking_csv_matches_the_ranking(small_report):
    with open(small_report.out / "ranking.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    mlp = [r for r in rows if r["model"] == "mlp-tanh-w6-d3"]
    assert [r["status"] for r in mlp].count("not applicable") == 1  # fixup
    places = [int(r["place"]) for r in rows if r["place"]]
    assert sorted(places) == [1, 1, 2, 2, 3, 3, 4]
    # ranked by rank fraction at the last tap (higher first), then by the non-zero part's gap
    for model in {r["model"] for r in rows}:
        ranked = [r for r in rows if r["model"] == model and r["place"]]
        keys = [(-float(r["rank_fraction"]), float(r["gap_nonzero"])) for r in ranked]
        assert keys == sorted(keys)


def test_summary_csv_is_tidy_and_matches_the_profiles(small_report):
    with open(small_report.out / "summary.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    keys = [(r["model"], r["scheme"], r["tap"], r["statistic"]) for r in rows]
    assert len(keys) == len(set(keys))  # one row per model × scheme × tap × statistic
    ok = [r for r in small_report.results.records if r.ok]
    expected = {(r.model, r.scheme, t.name, s) for r in ok for t in r.profile.taps for s in t.stats}
    assert set(keys) == expected
    record = ok[0]
    tap = record.profile.taps[-1]
    pooled = np.concatenate(
        [
            t.stats["m1"]
            for r in ok
            if (r.model, r.scheme) == (record.model, record.scheme)
            for t in r.profile.taps
            if t.name == tap.name
        ]
    )
    row = next(
        r
        for r in rows
        if (r["model"], r["scheme"], r["tap"], r["statistic"])
        == (record.model, record.scheme, tap.name, "m1")
    )
    assert float(row["median"]) == pytest.approx(float(np.median(pooled)), rel=1e-12)
    assert int(row["n"]) == pooled.size


def test_not_applicable_is_recorded_with_its_message(small_report):
    na = [r for r in small_report.results.records if r.status != "ok"]
    assert [(r.model, r.scheme) for r in na] == [("mlp-tanh-w6-d3", "fixup")]
    assert "residual" in na[0].message and na[0].profile is None


def test_infinite_statistics_survive_json_and_the_figures(small_report):
    # ZerO and Fixup zero the ResNet's head, so its last tap has an infinite isometry gap.
    loaded = load_results(small_report.out)
    gaps = [
        r.profile.taps[-1].stats["gap"]
        for r in loaded.records
        if r.ok and r.model.startswith("resnet") and r.scheme in ("fixup", "zero")
    ]
    assert gaps and all(np.isposinf(g).all() for g in gaps)
    rows = ranking(loaded)
    resnet = [r for r in rows if r.model.startswith("resnet") and r.place is not None]
    # a zero head leaves rank 0: those schemes rank last, after every scheme that keeps rank
    fractions = [r.rank_fraction for r in resnet]
    assert fractions == sorted(fractions, reverse=True) and fractions[-1] == 0.0
    assert {"fixup", "zero"} <= {r.scheme for r in resnet if r.rank_fraction == 0}


# ------------------------------------------------------------------------------ round trips


def test_results_json_loads_back_into_equal_profiles(small_report):
    original = small_report.results
    loaded = load_results(small_report.out / "results.json")
    assert len(loaded.records) == len(original.records)
    for a, b in zip(original.records, loaded.records, strict=True):
        assert (a.model, a.scheme, a.seed, a.status) == (b.model, b.scheme, b.seed, b.status)
        pa, pb = a.profile, b.profile
        assert (pa is None) == (pb is None)
        if pa is not None:
            assert type(pb) is type(pa)
            # the forward signal and the block spectra are sections of the Profile
            assert pa.signal is not None and pa.blocks is not None
            assert json.dumps(pa.to_dict()) == json.dumps(pb.to_dict())
            for ta, tb in zip(a.profile.taps, b.profile.taps, strict=True):
                np.testing.assert_array_equal(ta.singular_values, tb.singular_values)
                for stat, values in ta.stats.items():
                    np.testing.assert_array_equal(values, tb.stats[stat])
    assert loaded.config.to_dict() == original.config.to_dict()
    env = loaded.environment
    for key in ("isokit", "torch", "numpy", "scipy", "matplotlib", "python", "platform", "device"):
        assert env[key]
    assert loaded.command == ["pytest"] and loaded.created.endswith("Z")


def test_rerender_from_results_without_recomputing(small_report, tmp_path, monkeypatch):
    import isokit.report.run as run_module

    def no_compute(*args, **kwargs):
        raise AssertionError("--from must not run the probes")

    monkeypatch.setattr(run_module, "run_config", no_compute)
    other = tmp_path / "other"
    page = make_report(out=other, from_results=small_report.out / "results.json", quiet=True)
    assert page == other / "report.html" and page.is_file()
    assert _figure_names(other) == _figure_names(small_report.out)
    # results.json is carried over unchanged, byte for byte
    assert (other / "results.json").read_bytes() == (small_report.out / "results.json").read_bytes()


def _numbers_only(text: str) -> dict:
    """results.json without what describes the run rather than the numbers."""
    data = json.loads(text)

    def strip(node):
        if isinstance(node, dict):
            return {
                k: strip(v) for k, v in node.items() if k not in ("created", "elapsed_s", "command")
            }
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(data)


def test_same_seed_gives_byte_identical_numbers(small_report):
    again = run_config(small_report.config, quiet=True, command=["pytest"])
    first = _numbers_only((small_report.out / "results.json").read_text(encoding="utf-8"))
    second = _numbers_only(again.to_json())  # exactly what render() writes as results.json
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


def test_different_seed_gives_different_numbers(small_report):
    base = small_report.config
    cfg = dataclasses.replace(base, seeds=(1,), models=base.models[:1], schemes=base.schemes[:1])
    other = run_config(cfg, quiet=True)
    a = small_report.results.records[0].profile.taps[0].singular_values
    b = other.records[0].profile.taps[0].singular_values
    assert not np.array_equal(a, b)


# ----------------------------------------------------------------------------- robustness


def test_config_text_is_escaped_in_html(small_report, tmp_path, monkeypatch):
    monkeypatch.setattr(publish, "build_figures", lambda *a, **k: [])  # only the text matters
    evil = "<script>alert('x')</script>"
    cfg = dataclasses.replace(small_report.config, title=evil)
    results = dataclasses.replace(small_report.results, config=cfg)
    render(results, tmp_path / "evil", quiet=True)
    text = (tmp_path / "evil" / "report.html").read_text(encoding="utf-8")
    assert evil not in text and "&lt;script&gt;" in text
    assert _page(tmp_path / "evil" / "report.html").scripts == 0


def test_a_failed_render_leaves_nothing_behind(small_report, tmp_path, monkeypatch):
    out = tmp_path / "fresh"
    monkeypatch.setattr(publish, "build_figures", lambda *a, **k: [])  # fail fast, late

    def boom(**kwargs):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(publish, "render_html", boom)
    with pytest.raises(RuntimeError):
        render(small_report.results, out, quiet=True)
    assert list(tmp_path.iterdir()) == []  # no DIR, no staging directory, no lock file


def test_report_dir_refuses_names_that_leave_it(tmp_path):
    with pytest.raises(ValueError), ReportDir(tmp_path / "c") as out:
        out.write("../escape.txt", "x")
    assert list(tmp_path.iterdir()) == []


def test_the_theory_lines_list_says_why_a_line_is_not_drawn(small_report):
    from isokit.report.theory_lines import theory_for

    curves = collect_curves(small_report.results)
    # The small MLP (width 6, depth 3) is far from the large-width limit: L/N = 0.5 > 0.25.
    assert publish.overlays_for(small_report.results, curves) == {}
    reason = theory_for(small_report.results, curves)[("mlp-tanh-w6-d3", "orthogonal")]
    assert reason.startswith("depth over width L/N = 3/6 = 0.5")
    page = (small_report.out / "report.html").read_text(encoding="utf-8")
    assert "Theory lines" in page and "no line</i>, because depth over width" in page


def test_make_report_publishes_through_the_one_sequence(small_report, tmp_path, monkeypatch):
    calls = []
    real = publish.publish

    def spy(target, results, *, quiet=False):
        calls.append(target.path)
        return real(target, results, quiet=quiet)

    monkeypatch.setattr(publish, "publish", spy)
    make_report(from_results=small_report.out, out=tmp_path / "again", quiet=True)
    render(small_report.results, tmp_path / "rendered", quiet=True)
    assert calls == [tmp_path / "again", tmp_path / "rendered"]


def test_results_from_another_file_are_rejected_with_the_reason(tmp_path):
    from isokit.report import ResultsError

    path = tmp_path / "results.json"
    path.write_text(json.dumps({"schema": "something-else"}), encoding="utf-8")
    with pytest.raises(ResultsError, match="not an isokit results file"):
        load_results(path)
    path.write_text("{", encoding="utf-8")
    with pytest.raises(ResultsError, match="not valid JSON"):
        load_results(path)
    assert isinstance(Results, type)


@pytest.mark.slow
def test_default_report_compares_every_required_scheme(tmp_path):
    """The packaged default runs end to end."""
    page = make_report(None, out=tmp_path / "default", quiet=True)
    assert page.is_file()
    loaded = load_results(tmp_path / "default")
    assert {r.status for r in loaded.records} == {"ok", "not applicable"}
    required = {
        "idinit",
        "kaiming-normal",
        "xavier-normal",
        "orthogonal",
        "torch-default",
        "fixup",
        "rezero",
        "zero",
    }
    assert {r.scheme for r in loaded.records} == required
    # Fixup and ReZero need residual branches: applicable to the ResNet, not to the MLPs.
    for r in loaded.records:
        if r.scheme in ("fixup", "rezero"):
            assert (r.status == "ok") == (r.model.lower().startswith("resnet")), r.model


def test_slq_nodes_below_the_zero_rule_are_drawn_as_zeros():
    from types import SimpleNamespace

    from isokit.report.series import sigma_samples

    # Gram eigenvalues θ = σ²: 4 is σ = 2; 1e-30 is round-off of a zero eigenvalue (below
    # max(D, n_in)·ε·θ_max), and a node of weight 0 is padding.
    tap = SimpleNamespace(
        singular_values=None,
        density={"nodes": np.array([[4.0, 1e-30, 9.0]]), "weights": np.array([[0.5, 0.5, 0.0]])},
        r=2,
        D=2,
        n_in=2,
    )
    sigma, weights = sigma_samples(tap)
    np.testing.assert_array_equal(sigma, [2.0, 0.0])
    np.testing.assert_array_equal(weights, [0.5, 0.5])
    tap.density["nodes"] = np.array([[4.0, 1e-6, 9.0]])  # well above round-off: kept
    assert sigma_samples(tap)[0][1] == pytest.approx(1e-3)


def _one_run_config(scheme: dict, **top) -> Config:
    from isokit.report import parse_config

    return parse_config(
        {
            "seeds": [0],
            "schemes": [scheme],
            "models": [{"kind": "resnet", "depth": 8, "width": 2, "norm": "none"}],
            "inputs": {"examples": 2, "image_size": 4},
            "probes": {"signal": False},
            **top,
        }
    )


@pytest.mark.parametrize(
    ("scheme", "key", "message"),
    [
        (
            {"name": "idinit", "options": {"head_name": "head"}},
            "schemes[0].options.head_name",
            "'head' is not a weight layer of the model",
        ),
        (
            {"name": "orthogonal", "options": {"gain": 1e300}},
            "schemes[0].options.gain",
            "1e+300 does not fit in torch.float32 (largest finite value 3.4e+38); pass a smaller "
            "value or use a wider dtype",
        ),
    ],
)
def test_option_errors_found_by_the_running_scheme_name_the_option_once(scheme, key, message):
    # Before: key `schemes[0].options`, the scheme and option named again in the message, and
    # "; fix the option" after a message that already said the fix.
    from isokit.report.run import run_one

    cfg = _one_run_config(scheme)
    with pytest.raises(ConfigError) as info:
        run_one(cfg, cfg.models[0], cfg.schemes[0], 0)
    assert info.value.key == key
    assert info.value.message.startswith(message)
    assert "fix the option" not in info.value.message


def test_slq_taps_the_model_lacks_are_a_config_error(capsys):
    # Before: "internal error: TapError: slq tap 'nope' ... (report it)", exit 1.
    from isokit.report.run import run_one

    cfg = _one_run_config("orthogonal", method="lanczos", method_options={"slq_taps": ["nope"]})
    with pytest.raises(ConfigError) as info:
        run_one(cfg, cfg.models[0], cfg.schemes[0], 0)
    assert info.value.key == "method_options.slq_taps"
    assert "'nope' is not one of the probed taps" in info.value.message


def test_the_exact_tier_out_of_budget_says_its_fix_once():
    from isokit.report.run import run_one

    cfg = _one_run_config("orthogonal", method="exact", method_options={"max_memory": 1})
    with pytest.raises(ConfigError) as info:
        run_one(cfg, cfg.models[0], cfg.schemes[0], 0)
    assert info.value.key == "method"
    assert info.value.message.count("use method") == 1


def test_running_out_of_memory_in_the_probes_is_a_config_error(monkeypatch):
    # Before: n_probes = 10**9 ended in "internal error: RuntimeError: ... can't allocate
    # memory ... (report it)", exit 1.
    import isokit.probe
    from isokit.report.run import run_one

    def no_memory(*args, **kwargs):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
            "memory: you tried to allocate 32000000000 bytes."
        )

    monkeypatch.setattr(isokit.probe, "profile", no_memory)
    cfg = _one_run_config("orthogonal")
    with pytest.raises(ConfigError) as info:
        run_one(cfg, cfg.models[0], cfg.schemes[0], 0)
    assert info.value.key == "models[0]"
    assert "ran out of memory" in info.value.message and "n_probes" in info.value.message


def test_other_runtime_errors_of_the_probes_are_not_hidden(monkeypatch):
    import isokit.probe
    from isokit.report.run import run_one

    def broken(*args, **kwargs):
        raise RuntimeError("a real bug")

    monkeypatch.setattr(isokit.probe, "profile", broken)
    cfg = _one_run_config("orthogonal")
    with pytest.raises(RuntimeError, match="a real bug"):
        run_one(cfg, cfg.models[0], cfg.schemes[0], 0)
