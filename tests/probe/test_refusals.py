"""Probes refuse what they cannot measure, with errors that name the culprit."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from torch import nn

import isokit
from isokit.models import MLP, ResNet
from isokit.probe import ProbeOptionError, ProbeOptions, Profile, block_profile, profile, signal

PROBES = {
    "profile-exact": lambda m, x: profile(m, x, method="exact"),
    "profile-lanczos": lambda m, x: profile(m, x, method="lanczos", n_probes=4, lanczos_steps=4),
    "block_profile": lambda m, x: block_profile(m, x),
    "signal": lambda m, x: signal(m, x),
}


def _mlp() -> MLP:
    return isokit.init.apply(MLP(6, 6, depth=3, activation="tanh"), "orthogonal", seed=0)


class _Exp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x)


def _overflowing_second_example():
    """Finite on the first example (the dry run), overflowing to inf on the second."""
    model = nn.Sequential(nn.Linear(3, 3), _Exp(), nn.Linear(3, 3))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(3))
        model[0].bias.zero_()
    return model, torch.tensor([[0.0, 0.0, 0.0], [800.0, 0.0, 0.0]])


# ------------------------------------------------------------------------------ non-finite


@pytest.mark.parametrize("probe", list(PROBES))
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_weight_is_named(probe, value):
    model = _mlp()
    with torch.no_grad():
        model.fcs[1].weight[0, 0] = value
    before = model.fcs[1].weight.clone()
    with pytest.raises(ValueError, match=r"parameter 'fcs\.1\.weight' holds 1 NaN or inf"):
        PROBES[probe](model, torch.randn(2, 6))
    assert torch.equal(model.fcs[1].weight, before) or math.isnan(value)  # never modified


@pytest.mark.parametrize("probe", list(PROBES))
def test_non_finite_buffer_is_named(probe):
    model = ResNet(depth=8, width=2, norm="batch")
    name = next(n for n, _ in model.named_buffers() if n.endswith("running_var"))
    model.get_buffer(name).fill_(math.nan)
    with pytest.raises(ValueError, match=rf"buffer '{name}' holds .* NaN or inf"):
        PROBES[probe](model, torch.randn(2, 3, 8, 8))


def test_weight_that_overflows_only_in_float32_says_so():
    model = MLP(4, 4, depth=2).double()
    with torch.no_grad():
        model.fcs[0].weight[0, 0] = 1e300
    with pytest.raises(ValueError, match=r"'fcs\.0\.weight'.*float32"):
        profile(model, torch.randn(1, 4), dtype=torch.float32)


@pytest.mark.parametrize("probe", list(PROBES))
def test_non_finite_dry_run_names_the_tap(probe):
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)).double()
    with torch.no_grad():
        for layer in model:
            layer.weight.fill_(1e200)
    with pytest.raises(ValueError, match=r"NaN or inf at tap '1' on the first example"):
        PROBES[probe](model, torch.ones(2, 4))


@pytest.mark.parametrize("probe", ["profile-exact", "block_profile", "signal"])
def test_overflow_after_the_first_example_is_a_clear_error(probe):
    # The dry run sees a finite first example; the second overflows. Exact probes used to fail
    # inside LAPACK ("linalg.eigh: ... failed to converge"), signal returned inf silently.
    model, x = _overflowing_second_example()
    with pytest.raises(ValueError, match=r"(at tap|activations at tap) '1' hold") as info:
        PROBES[probe](model, x)
    assert "linalg" not in str(info.value)
    assert "NaN or inf" in str(info.value)


def test_signal_never_returns_non_finite_values_silently():
    model, x = _overflowing_second_example()
    with pytest.raises(ValueError, match=r"activations at tap '1' hold NaN or inf"):
        signal(model, x)
    with pytest.raises(ValueError, match="custom loss .* is NaN or inf"):
        signal(_mlp(), torch.randn(2, 6), loss=lambda out: out.sum() * math.nan)


class _NamedLikeATransformer(nn.Module):
    """Attributes that happen to be called seq_len and d_model say nothing about the input."""

    def __init__(self) -> None:
        super().__init__()
        self.seq_len, self.d_model = 3, 4
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def test_shape_hint_reads_input_shape_never_argument_names():
    model = _NamedLikeATransformer()
    with pytest.raises(ValueError, match=r"expected \(B, 4\) \(the first Linear takes 4"):
        profile(model, torch.randn(2, 5), taps=["fc"])
    model.input_shape = (3, 4)  # a model that declares its input shape is believed
    with pytest.raises(ValueError, match=r"expected \(B, 3, 4\), got \(B=2, 5\)"):
        profile(model, torch.randn(2, 5), taps=["fc"])


class _OutOfMemory(nn.Module):
    """A forward that fails the way the CPU allocator does when memory runs out."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"
        )


def test_an_allocation_failure_in_the_dry_run_is_not_called_a_shape_mismatch():
    with pytest.raises(RuntimeError, match="can't allocate memory") as info:
        profile(_OutOfMemory(), torch.randn(2, 4), taps=["fc"])
    assert not isinstance(info.value, ValueError)
    assert "do not fit" not in str(info.value)


# ------------------------------------------------------------------------------ options


@pytest.mark.parametrize("probe", list(PROBES))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_refused(probe, dtype):
    fn = {
        "profile-exact": profile,
        "profile-lanczos": profile,
        "block_profile": block_profile,
        "signal": signal,
    }[probe]
    with pytest.raises(ProbeOptionError, match="too coarse for Jacobian spectra"):
        fn(_mlp(), torch.randn(2, 6), dtype=dtype)


@pytest.mark.parametrize("option", ["chunk_size", "example_chunk", "max_memory"])
@pytest.mark.parametrize("value", [0, -1])
@pytest.mark.parametrize("fn", [profile, block_profile])
def test_non_positive_sizes_are_refused(option, value, fn):
    with pytest.raises(ProbeOptionError, match=rf"^{option}: must be a positive integer") as info:
        fn(_mlp(), torch.randn(2, 6), **{option: value})
    assert info.value.option == option


def test_overrides_are_checked_and_unknown_names_refused():
    x = torch.randn(2, 6)
    with pytest.raises(ProbeOptionError, match="svd: must be True or False"):
        profile(_mlp(), x, svd="no")
    with pytest.raises(ProbeOptionError, match="did you mean 'n_probes'"):
        profile(_mlp(), x, n_probe=8)
    with pytest.raises(ProbeOptionError, match="seed: must be a non-negative integer"):
        signal(_mlp(), x, seed=1.5)
    with pytest.raises(ProbeOptionError, match="options: must be ProbeOptions"):
        profile(_mlp(), x, {"method": "exact"})


def test_options_object_and_keywords_give_the_same_profile():
    model, x = _mlp(), torch.randn(2, 6)
    opts = ProbeOptions(method="lanczos", n_probes=4, lanczos_steps=4, seed=3)
    a = profile(model, x, opts)
    b = profile(model, x, method="lanczos", n_probes=4, lanczos_steps=4, seed=3)
    c = profile(model, x, opts.replace(seed=0), seed=3)  # a keyword overrides the object
    for t in (b, c):
        for ta, tb in zip(a.taps, t.taps, strict=True):
            assert ta.stats["m1"].tolist() == tb.stats["m1"].tolist()


def test_profile_with_signal_and_blocks_matches_the_separate_probes():
    model, x = _mlp(), torch.randn(3, 6)
    both = profile(model, x, with_signal=True, with_blocks=True)
    sig, blocks = signal(model, x), block_profile(model, x)
    assert both.signal.q.tolist() == sig.q.tolist()
    assert both.signal.param_grad.tolist() == sig.param_grad.tolist()
    for a, b in zip(both.blocks, blocks.taps, strict=True):
        assert (a.singular_values == b.singular_values).all()
    assert all(p.requires_grad and p.grad is None for p in model.parameters())  # as they were


def test_profile_is_the_function_whatever_is_imported():
    import isokit.probe.depth_profile  # noqa: F401
    import isokit.probe.statistics  # noqa: F401

    assert callable(isokit.probe.profile) and callable(isokit.probe.stats)
    assert isokit.probe.profile.__module__ == "isokit.probe.depth_profile"


# ------------------------------------------------------------------------------ from_dict


@pytest.fixture(scope="module")
def data() -> dict:
    model = _mlp()
    prof = profile(model, torch.randn(2, 6), with_signal=True, with_blocks=True)
    return prof.to_dict()


def _corrupt(data: dict, change) -> dict:
    d = copy.deepcopy(data)
    change(d)
    return d


def _set(path, value):
    def change(d):
        *head, last = path
        for key in head:
            d = d[key]
        d[last] = value

    return change


def _delete(path):
    def change(d):
        *head, last = path
        for key in head:
            d = d[key]
        del d[last]

    return change


CORRUPTIONS = {
    "missing tap field": (_delete(["taps", 0, "stats"]), r"taps\[0\]\.stats: missing"),
    "missing optional tap field": (
        _delete(["taps", 1, "singular_values"]),
        r"taps\[1\]\.singular_values: missing",
    ),
    "missing signal": (_delete(["signal"]), r"signal: missing"),
    "missing schema": (_delete(["schema"]), r"schema: missing"),
    "unknown top-level field": (_set(["extra"], 1), r"extra: unknown field"),
    "unknown tap field": (_set(["taps", 0, "sv"], []), r"taps\[0\]\.sv: unknown field"),
    "too few singular-value rows": (
        lambda d: d["taps"][0]["singular_values"].pop(),
        r"taps\[0\]\.singular_values: has shape \[1, 6\], expected \[2 × 6\]",
    ),
    "ragged singular values": (
        lambda d: d["taps"][0]["singular_values"][0].pop(),
        r"taps\[0\]\.singular_values: is not a rectangular array",
    ),
    "short stats array": (
        lambda d: d["taps"][2]["stats"]["m1"].pop(),
        r"taps\[2\]\.stats\.m1: has shape \[1\], expected \[2\]",
    ),
    "unknown statistic": (
        _set(["taps", 0, "stats", "m_1"], [1.0, 1.0]),
        r"taps\[0\]\.stats\.m_1: unknown name; did you mean 'm1'",
    ),
    "string depth": (
        _set(["taps", 0, "depth"], "1"),
        r"taps\[0\]\.depth: must be a positive integer, got '1'",
    ),
    "float D": (_set(["taps", 0, "D"], 6.0), r"taps\[0\]\.D: must be a positive integer, got 6.0"),
    "wrong r": (_set(["taps", 0, "r"], 5), r"taps\[0\]\.r: must be min\(D, n_in\) = 6"),
    "shape not holding D": (_set(["taps", 0, "shape"], [1, 5]), r"taps\[0\]\.shape"),
    "string flag": (
        _set(["taps", 0, "degenerate"], ["no", "no"]),
        r"taps\[0\]\.degenerate: must hold true/false values",
    ),
    "bad special float": (
        _set(["taps", 0, "stats", "cond"], ["Infinity", 1.0]),
        r"taps\[0\]\.stats\.cond: must hold numbers",
    ),
    "unknown side": (_set(["taps", 0, "side"], "left"), r"taps\[0\]\.side: must be one of"),
    "no taps": (_set(["taps"], []), r"taps: must be a non-empty array"),
    "taps as a string": (_set(["taps"], "acts.0"), r"taps: must be a non-empty array"),
    "duplicate tap": (lambda d: d["taps"].append(d["taps"][0]), r"taps\[3\]\.name: 'acts.0'"),
    "examples differ": (
        lambda d: d["taps"][1].update(
            {
                k: d["taps"][1][k][:1]
                for k in ("degenerate", "saturated", "gram_unreliable", "singular_values")
            }
        ),
        r"taps\[1\]",
    ),
    "meta examples": (_set(["meta", "n_examples"], 3), r"meta\.n_examples: is 3"),
    "signal array length": (
        lambda d: d["signal"]["q"].pop(),
        r"signal\.q: has shape \[2\], expected \[3\]",
    ),
    "signal taps split": (_set(["signal", "taps"], "acts"), r"signal\.taps: must be"),
    "signal loss": (_set(["signal", "loss"], "mse"), r"signal\.loss: must be one of"),
    "signal examples": (_set(["signal", "n_examples"], 5), r"signal\.n_examples: is 5"),
    "blocks examples": (
        lambda d: d["blocks"].__setitem__(slice(None), []),
        r"blocks: must be a non-empty array",
    ),
    "blocks out of tap order": (
        lambda d: d["blocks"].reverse(),
        r"blocks: must hold one block per tap, in tap order \(acts\.0, acts\.1, acts\.2\)",
    ),
    "signal of other taps": (
        _set(["signal", "taps"], ["a", "b", "c"]),
        r"signal\.taps: must be the profile's taps, in order",
    ),
    "signal sizes": (_set(["signal", "D"], [6, 6, 5]), r"signal\.D: must be the taps' sizes"),
    "newer schema": (_set(["schema"], 2), r"schema: profile schema 2 is newer"),
    "warnings": (_set(["taps", 0, "warnings"], "slow"), r"taps\[0\]\.warnings: must be an array"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_from_dict_names_the_bad_field(data, case):
    change, match = CORRUPTIONS[case]
    with pytest.raises(ValueError, match=match):
        Profile.from_dict(_corrupt(data, change))


def test_from_dict_round_trip_is_exact(data):
    assert Profile.from_dict(data).to_dict() == data


def test_from_json_refuses_a_file_that_is_not_json(tmp_path):
    path = tmp_path / "p.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="is not valid JSON"):
        Profile.from_json(path)
    path.write_text(json.dumps([1, 2]), encoding="utf-8")
    with pytest.raises(ValueError, match="must be an object"):
        Profile.from_json(path)


def test_the_readers_build_every_field_of_the_dataclasses(data):
    from dataclasses import fields

    from isokit.probe import Signal, TapSpectrum
    from isokit.probe.schema import read_profile

    parts = read_profile(data, Profile, TapSpectrum, Signal)
    assert set(parts["taps"][0]) == {f.name for f in fields(TapSpectrum)}
    assert set(parts["blocks"][0]) == {f.name for f in fields(TapSpectrum)}
    assert set(parts["signal"]) == {f.name for f in fields(Signal)}
    assert set(parts) == {f.name for f in fields(Profile)}
    assert set(data) == {f.name for f in fields(Profile)} | {"schema"}


# ------------------------------------------------------------------------------ hostile arguments


def test_a_jacobian_whose_moments_overflow_float64_is_refused_by_the_lanczos_tier():
    # Finite weights and a finite Gram, but m2 and m3 (its square and cube) exceed float64:
    # before, the Lanczos tier died with a bare OverflowError from `t1 ** 2`.
    model = nn.Sequential(nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 6))
    with torch.no_grad():
        for layer in model:
            layer.weight.fill_(1e30)
            layer.bias.zero_()
    x = torch.randn(2, 6, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="trace moments overflow float64"):
        profile(model, x, method="lanczos", n_probes=4, lanczos_steps=4)


@pytest.mark.parametrize(
    ("slq_taps", "match"),
    [
        ("nope", "slq_taps: 'nope' is not one of the probed taps"),
        ([99], "slq_taps: depth 99 is outside 1..3"),
    ],
)
@pytest.mark.parametrize("method", ["lanczos", "exact", "auto"])
def test_slq_taps_the_model_lacks_are_option_errors_whatever_the_method(slq_taps, match, method):
    # Before: a TapError or a bare ValueError under Lanczos, and silently ignored otherwise.
    with pytest.raises(ProbeOptionError, match=match) as info:
        profile(_mlp(), torch.randn(2, 6), method=method, slq_taps=slq_taps)
    assert info.value.option == "slq_taps"


@pytest.mark.parametrize(
    ("call", "option"),
    [
        (lambda m, x: profile(m, x, with_signal="yes"), "with_signal"),
        (lambda m, x: profile(m, x, with_blocks=1), "with_blocks"),
        (lambda m, x: profile(m, x, meta=3), "meta"),
        (lambda m, x: profile(m, x, meta={1: "a"}), "meta"),
        (lambda m, x: block_profile(m, x, meta=["a"]), "meta"),
        (lambda m, x: profile(m, x, method="lanczos", generator=3), "generator"),
        (lambda m, x: signal(m, x, generator="0"), "generator"),
    ],
)
def test_arguments_of_the_wrong_type_are_refused_before_any_work(call, option):
    # Before: "yes" counted as True, meta=3 failed after the probe with "'int' object is not
    # iterable", and generator=3 with an AttributeError.
    with pytest.raises(ProbeOptionError) as info:
        call(_mlp(), torch.randn(2, 6))
    assert info.value.option == option


@pytest.mark.parametrize("bad", ["nan", "inf", -1e-3])
def test_from_dict_refuses_singular_values_no_probe_writes(data, bad):
    # Before: NaN, inf and negative singular values were read back and reached the statistics.
    def change(d):
        d["taps"][0]["singular_values"][1][0] = bad

    with pytest.raises(ValueError, match=r"taps\[0\]\.singular_values: holds .* finite and >= 0"):
        Profile.from_dict(_corrupt(data, change))
