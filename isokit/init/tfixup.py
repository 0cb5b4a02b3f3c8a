"""T-Fixup (Huang, Perez, Ba & Volkovs, ICML 2020): a Transformer that trains without LayerNorm.

Encoder and decoder layers follow their own rules (``docs/baselines.md`` §12). A block (one layer
module, :mod:`isokit.init.blocks`) is a *decoder* layer when it is an
``nn.TransformerDecoderLayer``, holds a cross-attention (a second attention branch, or an attention
module named like one), or has "decoder" in its name; every other block with an attention branch is
an encoder layer.
"""

from __future__ import annotations

from torch import nn

from isokit.init import control
from isokit.init.blocks import (
    QK_NAMES,
    V_NAMES,
    attention_branch,
    group_blocks,
    off_branch_projections,
)
from isokit.init.checks import check_bool
from isokit.init.common import fill_on_cpu, finish_biases, report_slot
from isokit.init.registry import Context, SchemeNotApplicable, register
from isokit.init.variance import xavier_uniform_
from isokit.structure import ResidualBranch

_CROSS_NAMES = ("cross", "encoder_attn", "encdecattention", "multihead_attn")
_NOT_TOKEN = ("pos", "type", "relative", "rel_", "segment")


def _is_decoder_block(model: nn.Module, name: str, branches: list[ResidualBranch]) -> bool:
    module = model.get_submodule(name) if name else model
    if isinstance(module, nn.TransformerDecoderLayer) or "decoder" in name.lower():
        return True
    attention = [b for b in branches if attention_branch(model, b)]
    if len(attention) > 1:
        return True  # self- and cross-attention
    return any(
        any(c in layer.lower() for c in _CROSS_NAMES) for b in attention for layer in b.layers
    )


def _sides(ctx: Context, branches: list[ResidualBranch]) -> tuple[dict[str, str], int, int]:
    """Layer name → "encoder" or "decoder", and the numbers of encoder and decoder layers."""
    side_of: dict[str, str] = {}
    n_enc = n_dec = 0
    for block, members in group_blocks(ctx.model, branches).items():
        mine = [branches[i] for i in members]
        if not any(attention_branch(ctx.model, b) for b in mine):
            continue  # a block without attention is not a Transformer layer: left unscaled
        side = "decoder" if _is_decoder_block(ctx.model, block, mine) else "encoder"
        n_dec += side == "decoder"
        n_enc += side == "encoder"
        for b in mine:
            for layer in b.layers:
                if layer.rpartition(".")[2] not in QK_NAMES:
                    side_of[layer] = side
            for layer in off_branch_projections(ctx.model, b):  # a cross-attention's v
                if layer.rpartition(".")[2] in V_NAMES:
                    side_of[layer] = side
    return side_of, n_enc, n_dec


def _token_embeddings(model: nn.Module) -> list[tuple[str, nn.Embedding]]:
    """``nn.Embedding`` modules of tokens: not position, token-type or relative embeddings."""
    out = []
    for name, module in model.named_modules():
        leaf = name.rpartition(".")[2].lower()
        if isinstance(module, nn.Embedding) and not any(k in leaf for k in _NOT_TOKEN):
            out.append((name, module))
    return out


def _fill_embeddings(ctx: Context, factor: dict[str, float], n_enc: int, n_dec: int) -> set[int]:
    """Token embeddings: N(0, d^-1/2) × the side's factor, each tied Parameter set once.

    A Parameter shared by encoder and decoder (or by an embedding and an output layer) gets the
    encoder-side scaling, as the reference does with ``share_all_embeddings``.
    """
    sides: dict[int, tuple[str, nn.Parameter, list[str]]] = {}
    for name, module in _token_embeddings(ctx.model):
        decoder = n_dec and ("decoder" in name.lower() or not n_enc)
        side = "decoder" if decoder else "encoder"
        seen, _, names = sides.get(id(module.weight), (side, None, []))
        both = "encoder" if "encoder" in (seen, side) else "decoder"
        sides[id(module.weight)] = (both, module.weight, [*names, name])
    for side, weight, names in sides.values():
        d, f = weight.shape[1], factor[side]
        fill_on_cpu(
            weight, lambda w, d=d, f=f: w.normal_(0.0, d**-0.5, generator=ctx.generator).mul_(f)
        )
        tied = f" (tied: {', '.join(names)})" if len(names) > 1 else ""
        rule = "(9·N_e)^(-1/4)" if side == "encoder" else "(9·N_d)^(-1/4)"
        ctx.report.add(
            f"{names[0]}.weight", weight.shape, "normal", f"N(0, d^-1/2) × {rule} = {f:.4g}{tied}"
        )
    return set(sides)


@register(
    "t-fixup",
    description="Xavier weights; v/out/fc1/fc2 × 0.67·N_e^(-1/4) in encoder layers and "
    "× (9·N_d)^(-1/4) in decoder layers; token embeddings scaled; no LayerNorm, no warm-up",
    reference="Huang, Perez, Ba & Volkovs, ICML 2020",
)
def t_fixup(ctx: Context, *, remove_norms: bool = True) -> None:
    """T-Fixup (``docs/baselines.md`` §12): Xavier weights, v/out/fc scaled per side.

    Example:
        >>> from isokit.init import apply
        >>> from isokit.models import Transformer
        >>> model = apply(Transformer(2, 8, 2, 16, 4), "t-fixup", seed=0)
        >>> any(isinstance(m, nn.LayerNorm) for m in model.modules())
        False
    """
    check_bool("remove_norms", remove_norms, where=ctx.scheme)
    branches = control._require_branches(ctx, "t-fixup")
    if not any(attention_branch(ctx.model, b) for b in branches):
        raise SchemeNotApplicable(
            "t-fixup applies to Transformers and this model has no attention branch; use it on "
            "isokit.models.Transformer or nn.TransformerEncoder"
        )
    side_of, n_enc, n_dec = _sides(ctx, branches)
    factor = {
        "encoder": 0.67 * n_enc**-0.25 if n_enc else 1.0,
        "decoder": (9 * n_dec) ** -0.25 if n_dec else 1.0,
    }
    rule = {"encoder": "0.67·N_e^(-1/4)", "decoder": "(9·N_d)^(-1/4)"}
    embedding_factor = {
        "encoder": (9 * n_enc) ** -0.25 if n_enc else 1.0,
        "decoder": (9 * n_dec) ** -0.25 if n_dec else 1.0,
    }
    embedded = _fill_embeddings(ctx, embedding_factor, n_enc, n_dec)
    for slot in ctx.slots:
        if id(slot.param) in embedded:
            continue  # an output layer tied to a token embedding: set once, with the embedding
        fill_on_cpu(
            slot.tensor,
            lambda w, s=slot: xavier_uniform_(w, groups=s.groups, generator=ctx.generator),
        )
        side = side_of.get(slot.module)
        # A packed MHA in-projection: only its v block is scaled.
        if side and (slot.kind != "attention" or "[v]" in slot.name or "v_proj" in slot.name):
            slot.tensor.mul_(factor[side])
            report_slot(ctx, slot, "xavier-uniform", f"× {rule[side]} = {factor[side]:.4g}")
        else:
            report_slot(ctx, slot, "xavier-uniform")
    finish_biases(ctx, "zero")
    ctx.report.notes.append(f"t-fixup: N_e = {n_enc} encoder layers, N_d = {n_dec} decoder layers")
    if not n_dec:
        ctx.report.notes.append(
            "t-fixup: no decoder layer, so the encoder rule applies to every layer (encoder-only "
            "use is unspecified in the paper, see docs/baselines.md §12)"
        )
    if remove_norms:
        control._remove_norms(ctx, "t-fixup")
