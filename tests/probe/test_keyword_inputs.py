"""Token ids, positional and keyword inputs (``docs/probes.md §3.6``): probed from a ``start``.

The reference is dense: ``torch.func.jacrev`` in float64 of the taps' outputs as functions of
the start module's output (replaced through a hook written here), one example at a time, and
its singular values from ``torch.linalg.svdvals``.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from isokit.probe import profile
from tests.report.factories import TokenModel


def _dense(model, one, start: str, taps: list[str]) -> list[np.ndarray]:
    """Singular values of ∂h_tap/∂h_start at one example ``one`` (called as the model takes it)."""
    model = copy.deepcopy(model).double().eval().requires_grad_(False)

    def call():
        if isinstance(one, dict):
            return model(**one)
        return model(*one) if isinstance(one, tuple) else model(one)

    seen = {}
    handle = model.get_submodule(start).register_forward_hook(
        lambda m, a, o: seen.setdefault("z", o[0] if isinstance(o, tuple) else o)
    )
    call()
    handle.remove()
    z0 = seen["z"].detach()

    def f(z):
        outs = {}
        hooks = [
            model.get_submodule(start).register_forward_hook(lambda m, a, o: z.reshape(o.shape))
        ]
        for name in taps:
            hooks.append(
                model.get_submodule(name).register_forward_hook(
                    lambda m, a, o, n=name: outs.setdefault(n, o[0] if isinstance(o, tuple) else o)
                )
            )
        try:
            call()
        finally:
            for h in hooks:
                h.remove()
        return tuple(outs[n] for n in taps)

    jac = torch.func.jacrev(f)(z0)
    return [
        torch.linalg.svdvals(j.reshape(o.numel(), z0.numel())).numpy()
        for j, o in zip(jac, f(z0), strict=True)
    ]


def _check_against_dense(prof, model, examples: list, start: str) -> None:
    for b, one in enumerate(examples):
        ref = _dense(model, one, start, prof.names)
        for tap, want in zip(prof.taps, ref, strict=True):
            got = np.sort(tap.singular_values[b])[::-1]
            want = np.sort(want)[::-1][: got.size]
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-10 * max(1.0, want[0]))


@pytest.fixture
def token_model():
    torch.manual_seed(0)
    return TokenModel(vocab=11, width=5, depth=3)


IDS = torch.randint(0, 11, (2, 3), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(
    "inputs",
    [
        {"input_ids": IDS},
        {"input_ids": IDS, "scale": 0.5},  # a value that is not a tensor is passed as it is
        (IDS,),
        IDS,
    ],
    ids=["dict", "dict-with-constant", "tuple", "token-ids"],
)
def test_spectra_from_start_equal_dense_jacrev(token_model, inputs):
    prof = profile(token_model, inputs, start="embed", taps="blocks.*", method="exact")
    assert prof.names == ["blocks.0", "blocks.1", "blocks.2"]
    assert prof.meta["n_examples"] == 2 and prof.meta["start_shape"] == [3, 5]
    if isinstance(inputs, dict):
        assert prof.meta["input_shape"] == {"input_ids": [3]}
        examples = [
            {k: v[b : b + 1] if torch.is_tensor(v) else v for k, v in inputs.items()}
            for b in range(2)
        ]
    elif isinstance(inputs, tuple):
        examples = [(IDS[b : b + 1],) for b in range(2)]
    else:
        examples = [IDS[b : b + 1] for b in range(2)]
    _check_against_dense(prof, token_model, examples, "embed")
    if isinstance(inputs, dict) and "scale" in inputs:  # the constant reached the forward
        plain = profile(token_model, {"input_ids": IDS}, start="embed", method="exact")
        # scale multiplies the start's output inside the forward: another Jacobian
        assert not np.allclose(plain.taps[0].singular_values, prof.taps[0].singular_values)


def test_token_ids_need_a_start(token_model):
    with pytest.raises(TypeError, match="token ids cannot be differentiated: pass start="):
        profile(token_model, IDS)
    with pytest.raises(TypeError, match="dict of keyword inputs.*pass start="):
        profile(token_model, {"input_ids": IDS})
    with pytest.raises(TypeError, match="tuple of positional inputs.*pass start="):
        profile(token_model, (IDS,))


def test_every_tensor_of_the_inputs_has_the_batch_axis_first(token_model):
    with pytest.raises(
        ValueError, match=r"inputs\['mask'\] has 3 examples but inputs\['input_ids'\] has 2"
    ):
        profile(token_model, {"input_ids": IDS, "mask": torch.ones(3, 3)}, start="embed")
    with pytest.raises(TypeError, match="hold no tensor"):
        profile(token_model, {"scale": 1.0}, start="embed")
    with pytest.raises(ValueError, match="NaN or inf"):
        profile(token_model, {"input_ids": IDS, "w": torch.full((2,), float("nan"))}, start="embed")


def test_signal_and_blocks_start_from_the_start_output(token_model):
    prof = profile(
        token_model,
        {"input_ids": IDS},
        start="embed",
        method="exact",
        with_signal=True,
        with_blocks=True,
    )
    model = copy.deepcopy(token_model).double().eval().requires_grad_(False)
    h = model.embed(IDS)
    q = []
    for block in model.blocks:
        h = block(h)
        q.append(float((h.reshape(2, -1) ** 2).mean(1).mean()))
    np.testing.assert_allclose(prof.signal.q, q, rtol=1e-12)
    e = model.embed(IDS).reshape(2, -1)
    assert prof.signal.input_q == pytest.approx(float((e**2).mean(1).mean()), rel=1e-12)
    assert [t.name for t in prof.blocks] == prof.names


def test_the_matrix_free_tier_reads_keyword_inputs(token_model):
    exact = profile(token_model, {"input_ids": IDS}, start="embed", method="exact")
    free = profile(token_model, {"input_ids": IDS}, start="embed", method="lanczos", n_probes=64)
    for e, f in zip(exact.taps, free.taps, strict=True):
        m1, se = f.stats["m1"], f.se["m1"]
        assert np.all(np.abs(m1 - e.stats["m1"]) <= 5 * se + 1e-9)


# ------------------------------------------------------------------ Hugging Face models


def test_bert_from_its_embeddings_equals_dense_jacrev():
    pytest.importorskip("transformers")
    from isokit.models.hf import bert, token_ids

    torch.manual_seed(0)
    model = bert(hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=12)
    inputs = token_ids(2, generator=torch.Generator().manual_seed(0), seq_len=3)
    prof = profile(model, inputs, start="embeddings", taps="encoder.layer.*", method="exact")
    assert prof.names == ["encoder.layer.0", "encoder.layer.1"]
    examples = [{"input_ids": inputs["input_ids"][b : b + 1]} for b in range(2)]
    _check_against_dense(prof, model, examples, "embeddings")


def test_gpt2_from_its_embedding_sum_equals_dense_jacrev():
    pytest.importorskip("transformers")
    from isokit.models.hf import gpt2, token_ids

    torch.manual_seed(0)
    model = gpt2(n_embd=8, n_layer=2, n_head=2)
    inputs = token_ids(2, generator=torch.Generator().manual_seed(0), seq_len=3)
    prof = profile(model, inputs, start="drop", taps="h.*", method="exact", with_signal=True)
    assert prof.names == ["h.0", "h.1"]
    examples = [{"input_ids": inputs["input_ids"][b : b + 1]} for b in range(2)]
    _check_against_dense(prof, model, examples, "drop")
    assert np.all(np.isfinite(prof.signal.grad))  # the ModelOutput's first tensor is projected


class _TupleOut(torch.nn.Module):
    """A float-input model whose output is a tuple, as Hugging Face models return."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x), None


def test_the_signal_projects_the_first_tensor_of_a_tuple_output():
    from isokit.models import ResidualMLP

    torch.manual_seed(0)
    inner = ResidualMLP(5, 5, depth=3)
    x = torch.randn(3, 5)
    wrapped = _TupleOut(inner)
    taps = [f"inner.{t}" for t in inner.taps]
    got = profile(wrapped, x, taps=taps, method="exact", with_signal=True).signal
    want = profile(inner, x, method="exact", with_signal=True).signal
    np.testing.assert_allclose(got.grad, want.grad, rtol=1e-12)
    np.testing.assert_allclose(got.q, want.q, rtol=1e-12)
    assert got.input_q == want.input_q
