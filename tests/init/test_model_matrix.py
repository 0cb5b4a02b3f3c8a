"""The model × scheme matrix (``docs/models.md``): every scheme on models researchers use.

Each model comes from a tiny config with random weights (``tests/matrix_models.py``) and is
built afresh, from one seed, for each cell. In every cell the scheme either applies with
nothing but ``example_inputs`` or refuses with :class:`SchemeNotApplicable` and a reason that
is checked against the model here. Where it applies: each parameter the init report says was
set has changed (and each one it kept has not), every weight layer got a rule, IDInit leaves
each pre-norm block at the identity up to O(ε) where Kaiming does not, and the exact probe of
the result equals the singular values of a dense float64 ``torch.func.jacrev`` Jacobian.
Branches are checked once per model against the branches written from its module tree.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from isokit.init import BranchDiscoveryError, SchemeNotApplicable, apply, find_branches
from isokit.probe import profile
from tests.matrix_models import CASES

# jacrev through nn.Transformer's fused attention falls back to a slower batching rule, and says so
pytestmark = pytest.mark.filterwarnings(
    "ignore:There is a performance drop because we have not yet implemented:UserWarning"
)

SCHEMES = ("idinit", "fixup", "skipinit", "rezero", "zero", "t-fixup", "kaiming-normal")

#: The reasons a scheme may give for not applying, each with the fact about the model it states.
NO_ATTENTION = "has no attention branch"

#: The matrix: the cells where a scheme does not apply, and why; every other cell applies.
#: ``docs/models.md`` shows the same table.
NOT_APPLICABLE = {
    (model, "t-fixup"): NO_ATTENTION
    for model in (
        "resnet-basic",
        "resnet-bottleneck",
        "convnext",
        "mobilenet-v2",
        "tv-resnet",
        "tv-resnext",
    )
}

#: ε of IDInit's branch ends (its default ``eps``).
EPS = 1e-6
#: ‖block(x) − x‖ / ‖x‖ for a pre-norm block after IDInit, x of unit variance per entry.
#: Each sub-layer adds W·u with W its last layer: IDIZ_ε, of spectral norm at most ε√8 here
#: (the tightest bound of docs/idinit.md §5 for 37 → 32; 2ε square, ε√2 for 128 → 32), and u
#: the IDI image (norm 1) of the normalized x: an average over T ≤ 5 positions (attention,
#: ‖A‖₂ ≤ √T; T5's cross attention reads a normalized encoder output of 5 positions), a
#: 1-Lipschitz activation or a SwiGLU product (at most √d = √32 times ‖x̂‖). Three sub-layers at
#: most: 3 · ε√8 · (√5·√(5/4) + √32) < 75ε.
IDENTITY_BOUND = 75 * EPS


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Many small float64 products and eigensolves: one thread avoids oversubscribing shared
    cores (with two threads on a loaded 2-core machine each cell ran several times slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _case(name: str):
    case = CASES[name]
    if case.hf:
        pytest.importorskip("transformers")
    return case


def _build(case):
    torch.manual_seed(0)
    return case.build()


def _call(model: nn.Module, inputs):
    if isinstance(inputs, dict):
        return model(**inputs)
    return model(*inputs) if isinstance(inputs, tuple) else model(inputs)


def _first(out) -> torch.Tensor:
    """The first tensor of a module's output (HF layers return tuples or ModelOutputs)."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        return _first(out[0])
    return _first(next(iter(out.values())))


def _has_attention(model: nn.Module) -> bool:
    """Whether the model computes attention: an nn.MultiheadAttention or a *Attention class."""
    return any(
        isinstance(m, nn.MultiheadAttention) or "Attention" in type(m).__name__
        for m in model.modules()
    )


FACTS = {NO_ATTENTION: lambda model: not _has_attention(model)}


def _weight_layer_params(model: nn.Module) -> set[str]:
    """Names of the weight matrices and kernels of the model's Linear-like and conv layers."""
    names = set()
    for prefix, m in model.named_modules():
        kind = type(m).__name__
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) or kind == "Conv1D":
            names.add(f"{prefix}.weight" if prefix else "weight")
        elif isinstance(m, nn.MultiheadAttention) and m.in_proj_weight is not None:
            names.add(f"{prefix}.in_proj_weight")
    return names


def _check_rows(model: nn.Module, report, before: dict[str, torch.Tensor]) -> None:
    """Each parameter the report says was set changed (to the constant it names); kept and
    tied ones did not; every weight layer's matrix has a rule that sets it."""
    after = dict(model.named_parameters())
    set_rows = set()
    for row in report.rows:
        name = row.name.partition("[")[0]  # a block of a packed in-projection: its tensor
        if name not in before or name not in after:
            continue  # a scalar the scheme added, a norm it removed
        old, new = before[name], after[name].detach()
        if row.rule.startswith(("kept", "tied")):
            assert torch.equal(old, new), f"{row.name} is reported {row.rule!r} but changed"
            continue
        set_rows.add(name)
        const = {"zero": 0.0}.get(row.rule)
        if row.rule.startswith("const "):
            const = float(row.rule.split()[1])
        if const is not None and "[" not in row.name:
            assert torch.all(new == const), f"{row.name} is reported {row.rule!r}"
        if new.ndim >= 2:
            assert not torch.equal(old, new), f"{row.name} is reported {row.rule!r}, unchanged"
    missing = sorted((_weight_layer_params(model) & set(after)) - set_rows)
    assert not missing, f"weight layers the report does not set: {missing}"


def _block_deviation(model: nn.Module, inputs, blocks: list[str]) -> dict[str, float]:
    """‖block(x) − x‖ / ‖x‖ for each block, its hidden-state input replaced by x ~ N(0, 1)."""
    g = torch.Generator().manual_seed(5)
    seen: dict[str, list[torch.Tensor]] = {}

    def pre(name):
        def hook(module, args, kwargs):
            h = args[0] if args else kwargs["hidden_states"]
            x = torch.randn(h.shape, generator=g, dtype=h.dtype)
            seen[name] = [x]
            if args:
                return (x, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": x}

        return hook

    handles = []
    for name in blocks:
        block = model.get_submodule(name)
        handles.append(block.register_forward_pre_hook(pre(name), with_kwargs=True))
        handles.append(
            block.register_forward_hook(lambda m, a, o, n=name: seen[n].append(_first(o)))
        )
    try:
        with torch.no_grad():
            _call(model.eval(), inputs)
    finally:
        for h in handles:
            h.remove()
    return {n: float((out - x).norm() / x.norm()) for n, (x, out) in seen.items()}


def _starts_at_identity(case, scheme: str) -> bool:
    """Whether every block is exactly the identity after ``scheme``: the identity-control schemes
    zero each branch's output (a zero gate, a zero last layer) and remove the norms (so a
    post-norm block is x + 0 too); ZerO zeroes the last layers but keeps the norms."""
    if scheme in ("fixup", "skipinit", "rezero"):
        return case.adds_last or case.post_norm
    return scheme == "zero" and case.adds_last


def _dense_svdvals(module: nn.Module, x: torch.Tensor, taps: list[str]) -> list[np.ndarray]:
    """Singular values of ∂tap/∂x for one example, from a dense float64 jacrev Jacobian."""
    module = copy.deepcopy(module).double().eval().requires_grad_(False)
    x = x.double()

    def f(z):
        outs = {}
        hooks = [
            module.get_submodule(t).register_forward_hook(
                lambda m, a, o, t=t: outs.update({t: _first(o)})  # returns None: output kept
            )
            for t in taps
        ]
        try:
            module(z)
        finally:
            for h in hooks:
                h.remove()
        return tuple(outs[t] for t in taps)

    jac = torch.func.jacrev(f)(x)
    return [torch.linalg.svdvals(j.reshape(-1, x.numel())).numpy() for j in jac]


def _check_probe(case, model: nn.Module, inputs) -> None:
    module, x = case.view(model, inputs)
    taps = [case.prefix + t for t in case.taps(model)]
    prof = profile(module, x, method="exact", taps=taps)
    assert prof.names == taps
    for tap, want in zip(prof.taps, _dense_svdvals(module, x, taps), strict=True):
        got = np.sort(tap.singular_values[0])[::-1]
        want = np.sort(want)[::-1][: got.size]
        atol = case.rtol * max(float(want[0]), np.finfo(np.float64).tiny)
        np.testing.assert_allclose(got, want, rtol=0, atol=atol, err_msg=tap.name)


# ----------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", list(CASES))
def test_branches_found_are_the_models_residual_branches(name):
    case = _case(name)
    model, inputs = _build(case)
    found = find_branches(model, example_inputs=inputs)
    expected = case.branches(model)
    assert expected and len(found) == len(expected)
    assert sorted(found, key=lambda b: b.layers) == sorted(expected, key=lambda b: b.layers)


#: Without ``example_inputs``: the models torch.fx traces whole or block by block (their branches
#: are found exactly) and those it cannot (refused, naming each route). T5Model is left out: fx
#: traces its feed-forward sub-layers but not its attention ones, so 4 of its 10 branches are
#: found and the rest counted as main stem, with only a warning (docs/models.md §3).
TRACED = (
    "resnet-basic",
    "resnet-bottleneck",
    "convnext",
    "nn.Transformer",
    "tv-resnet",
    "tv-resnext",
)
UNTRACED = ("bert", "distilbert", "gpt2", "vit", "llama", "mobilenet-v2")


@pytest.mark.filterwarnings("ignore:torch.fx could not trace:UserWarning")
@pytest.mark.parametrize("name", TRACED + UNTRACED)
def test_without_example_inputs_branches_are_exact_or_refused(name):
    case = _case(name)
    model, _ = _build(case)
    if name in UNTRACED:
        with pytest.raises(BranchDiscoveryError, match="no example_inputs were given"):
            find_branches(model)
        return
    found = find_branches(model)
    assert sorted(found, key=lambda b: b.layers) == sorted(
        case.branches(model), key=lambda b: b.layers
    )


CELLS = [(m, s) for m in CASES for s in SCHEMES]


@pytest.mark.parametrize(("name", "scheme"), CELLS, ids=[f"{m}-{s}" for m, s in CELLS])
def test_cell(name, scheme):
    case = _case(name)
    model, inputs = _build(case)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    reason = NOT_APPLICABLE.get((name, scheme))
    if reason is not None:
        with pytest.raises(SchemeNotApplicable, match=reason):
            apply(model, scheme, seed=0, example_inputs=inputs)
        assert FACTS[reason](model), f"{name} refused {scheme} ({reason}), which is not true"
        after = dict(model.named_parameters())
        assert after.keys() == before.keys()
        assert all(torch.equal(before[n], after[n]) for n in before)
        return
    _, report = apply(model, scheme, seed=0, example_inputs=inputs, return_report=True)
    if scheme == "t-fixup":  # it applies, so it could not truly have refused
        assert not FACTS[NO_ATTENTION](model)
    if scheme == "fixup":  # the Transformer variant exactly where the model has attention
        said = any("attention branches" in note for note in report.notes)
        assert said == _has_attention(model), report.notes
    _check_rows(model, report, before)
    if _starts_at_identity(case, scheme):
        deviation = _block_deviation(model, inputs, case.taps(model))
        assert set(deviation.values()) == {0.0}, deviation
    if case.pre_norm and scheme in ("idinit", "kaiming-normal"):
        deviation = _block_deviation(model, inputs, case.taps(model))
        if scheme == "idinit":
            assert max(deviation.values()) < IDENTITY_BOUND, deviation
        else:  # the bound is IDInit's: a random-weight block is far from the identity
            assert min(deviation.values()) > 1e3 * IDENTITY_BOUND, deviation
    _check_probe(case, model, inputs)


#: The rows of the matrix in ``docs/models.md`` §2, by the name the page gives each model.
DOC_ROWS = {
    "BERT": "bert",
    "DistilBERT": "distilbert",
    "GPT-2": "gpt2",
    "ViT": "vit",
    "T5 (encoder-decoder)": "t5",
    "Llama": "llama",
    "HF ResNet, basic": "resnet-basic",
    "HF ResNet, bottleneck": "resnet-bottleneck",
    "ConvNeXt": "convnext",
    "MobileNetV2": "mobilenet-v2",
    "`nn.Transformer`": "nn.Transformer",
    "torchvision-style ResNet": "tv-resnet",
    "torchvision-style ResNeXt": "tv-resnext",
}


def test_the_docs_show_this_matrix():
    page = (Path(__file__).parents[2] / "docs" / "models.md").read_text(encoding="utf-8")
    section = page.split("## §2 The matrix", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| ")]
    header, body = [c.strip() for c in rows[0]], rows[1:]
    assert header == ["model", *SCHEMES]
    shown = {}
    for cells in body:
        name = DOC_ROWS[cells[0].strip()]
        for scheme, cell in zip(SCHEMES, cells[1:], strict=True):
            shown[name, scheme] = cell.strip()
    assert set(shown) == {(m, s) for m in CASES for s in SCHEMES}
    for cell, text in shown.items():
        reason = NOT_APPLICABLE.get(cell)
        if reason is None:
            assert text.startswith("ok"), (cell, text)
        else:
            assert text == f"n/a: {reason.removeprefix('has ')}", (cell, text)
