"""IDInit at the tensor level: the padded identity IDI_τ and the zero-preserving IDIZ_ε.

Rules (``docs/idinit.md`` §3–§6; indices 0-based, ``m`` a row, ``j`` a
column of a ``(D_out, D_in)`` matrix):

* **IDI_τ** (§3): ``W[m, j] = τ`` if ``m mod D_in == j``, else 0. Square: ``τI``. Expanding:
  output ``m`` copies input ``m mod D_in`` (the identity is repeated, not zero padded).
  Contracting: ``[τI | 0]``, or with ``contract="tile"`` ``W[m, j] = τ`` if ``j mod D_out == m``.
* **IDIZ_ε** (§5): ``D_in = 1``: ``W[m, 0] = ε(-1)^m``. ``D_out < D_in``: ``+ε`` at ``(m, m)``
  and ``-ε`` at ``(m, D_out + m mod (D_in - D_out))``. Otherwise ``+ε`` at ``(m, m mod D_in)``
  and ``-ε`` at ``(m, (m + 1) mod D_in)``. Rows sum to 0 and ``‖W‖_F = ε√(2·D_out)``. The
  spectral norm is ``≤ 2ε`` only for square shapes; see :func:`idiz_` for the general values.
* **Convolutions** (§6), weight ``(C_out, C_in/groups, *kernel)``: each group's
  ``(opg, ipg·K)`` flattened slice gets the 2-D rule and is reshaped back (patch-maintain IDIC,
  IDIZC). Output channel ``m`` then copies input channel ``c`` shifted by one kernel offset,
  with ``(c, t) = divmod(m mod F, K)``. Channel-maintain puts IDI on channels at the centre tap.
* **Loosening** (§4): each τ entry becomes ``τ + loose_std·z``, ``z ~ N(0, 1)``; IDIZ is never
  loosened, since the noise would be as large as ε.

Options (§9 items 1–7; the first value is the default):

==================  =====================================  =========================================
option              values                                 meaning
==================  =====================================  =========================================
``contract``        ``"truncate"``, ``"tile"``             contracting IDI: ``[τI|0]`` or tiled
``loose``           ``None``, ``"tau"``, ``"all"``         noise on nothing, τ entries, every entry
``loose_std``       ``1e-6``                               standard deviation of that noise
``mode`` (idiz\\_)  ``"idiz"``, ``"zero"``, ``"idi_eps"``  IDIZ, exact zeros, IDI with τ = ε
``single_input``    ``"alternate"``, ``"plain"``           IDIZ, ``D_in = 1``: ``ε(-1)^m`` or ``+ε``
``conv_mode``       ``"patch"``, ``"channel"``             IDIC patch-maintain or centre-tap IDI
``flatten_order``   ``"torch"``, ``"tap"``                 column ``c·K + t`` or ``t·ipg + c``
``depthwise``       ``"centre"``, ``"patch"``              depthwise convs (groups > 1, ipg 1)
==================  =====================================  =========================================

Decisions where the reference leaves room:

* A conv counts as *depthwise* when ``groups > 1`` and ``ipg == 1``. A ``groups=1`` conv that
  happens to have one input channel (a grayscale stem) is an ordinary conv and gets the patch
  rule, which gives it k² distinct shifts instead of ``C_out`` identical centre copies.
* ``contract`` also applies to channel-maintain (it is IDI on channels).
* IDIZC always uses the patch flatten (§6.4), whatever ``depthwise`` would say for IDI, and
  ``mode="idi_eps"`` on a conv uses the same patch flatten so the three modes share a layout.

The model-level recipe (which layer gets which rule) lives elsewhere; this module only fills
tensors and offers :func:`unused_input_channels` and :func:`loosening_representable` for the
init report.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
from torch import Tensor

from isokit.init.checks import (
    OptionValueError,
    check_choice,
    check_dtype,
    check_fits,
    check_groups,
    check_real,
    check_weight,
)
from isokit.init.identity_conv import FlattenOrder, centre_pattern, group_view, patch_pattern

__all__ = [
    "Contract",
    "ConvMode",
    "Depthwise",
    "FlattenOrder",
    "IdizMode",
    "Loose",
    "SingleInput",
    "idi_",
    "idiz_",
    "loosening_representable",
    "unused_input_channels",
]

Contract = Literal["truncate", "tile"]
ConvMode = Literal["patch", "channel"]
Depthwise = Literal["centre", "patch"]
Loose = Literal["tau", "all"]
IdizMode = Literal["idiz", "zero", "idi_eps"]
SingleInput = Literal["alternate", "plain"]


# ---------------------------------------------------------------------------------------------
# validation


def _check_identity_weight(w: object, fn: str) -> None:
    check_weight(
        "w",
        w,
        where=fn,
        hint="a 1-D bias or norm scale has no identity pattern, use torch.nn.init.zeros_/ones_ "
        "for it",
    )


# ---------------------------------------------------------------------------------------------
# 2-D unit patterns (float64, CPU)


def _idi_unit(d_out: int, d_in: int, contract: Contract) -> Tensor:
    out = torch.zeros(d_out, d_in, dtype=torch.float64)
    rows = torch.arange(d_out)
    out[rows, rows % d_in] = 1.0
    if contract == "tile":
        # The tile rule j mod D_out == m agrees with the modulo rule whenever D_out >= D_in,
        # so taking the union changes only contracting shapes.
        cols = torch.arange(d_in)
        out[cols % d_out, cols] = 1.0
    return out


def _idiz_unit(d_out: int, d_in: int, single_input: SingleInput) -> Tensor:
    out = torch.zeros(d_out, d_in, dtype=torch.float64)
    rows = torch.arange(d_out)
    if d_in == 1:
        # No difference of two inputs exists; alternating signs keep the mean over outputs 0.
        sign = 1.0 - 2.0 * (rows % 2).double() if single_input == "alternate" else 1.0
        out[:, 0] = sign
    elif d_out < d_in:
        out[rows, rows] = 1.0
        out[rows, d_out + rows % (d_in - d_out)] = -1.0
    else:
        out[rows, rows % d_in] = 1.0
        out[rows, (rows + 1) % d_in] = -1.0
    return out


def _write(w: Tensor, pattern: Tensor) -> Tensor:
    with torch.no_grad():
        w.copy_(pattern)
    return w


# ---------------------------------------------------------------------------------------------
# public API


def idi_(
    w: Tensor,
    tau: float = 1.0,
    *,
    contract: Contract = "truncate",
    conv_mode: ConvMode = "patch",
    flatten_order: FlattenOrder = "torch",
    depthwise: Depthwise = "centre",
    groups: int = 1,
    loose: Loose | None = None,
    loose_std: float = 1e-6,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Fill ``w`` in place with the padded identity IDI_τ (IDIC_τ for convolutions).

    For a 2-D weight of shape ``(D_out, D_in)``:

    .. math::
        W_{mj} = \tau \cdot [\, m \bmod D_\text{in} = j \,]

    so square weights become ``τI``, expanding weights stack copies of ``τI`` (output ``m``
    copies input ``m mod D_in``) and contracting weights are ``[τI | 0]``; with
    ``contract="tile"`` a contracting weight is ``τ·[j mod D_out = m]`` instead.

    For a ConvNd weight ``(C_out, C_in/groups, *kernel)``, ``conv_mode="patch"`` applies the
    rule to every group's ``(opg, ipg·K)`` flattened slice (column ``c·K + t`` with
    ``flatten_order="torch"``, ``t·ipg + c`` with ``"tap"``). With stride 1 and padding ``p``,
    output ``m`` is ``τ·in[c, y + r - p_h, x + s - p_w]`` where ``(c, t) = divmod(m mod F, K)``
    and ``(r, s) = divmod(t, k_w)``. ``conv_mode="channel"`` places IDI on channels at the
    centre tap, an exact isometry for square stride-1 "same" convs. Depthwise convs
    (``groups > 1`` and one input channel per group) use the centre tap unless
    ``depthwise="patch"``. ``groups`` must be the conv's own: the weight does not reveal it.

    Args:
        w: weight with at least 2 dimensions, floating point.
        tau: identity scale τ.
        contract: contracting rule, ``"truncate"`` or ``"tile"``.
        conv_mode: ``"patch"`` (IDIC) or ``"channel"`` (centre tap).
        flatten_order: kernel flatten for patch mode, ``"torch"`` or ``"tap"``.
        depthwise: rule for depthwise convs, ``"centre"`` or ``"patch"``.
        groups: the conv's ``groups``.
        loose: ``None`` (strict, draws no random numbers), ``"tau"`` (noise on τ entries only,
            zeros stay exactly 0) or ``"all"`` (noise on every entry).
        loose_std: standard deviation of the loosening noise.
        generator: random source for the loosening noise.

    Returns:
        ``w``, filled.

    Example:
        >>> w = torch.empty(6, 4)
        >>> idi_(w) @ torch.arange(4.0)
        tensor([0., 1., 2., 3., 0., 1.])
        >>> g = torch.Generator().manual_seed(0)
        >>> conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False)
        >>> _ = idi_(conv.weight, loose="tau", generator=g)
    """
    fn = "idi_"
    _check_identity_weight(w, fn)
    tau = check_real("tau", tau, where=fn)
    check_fits("tau", tau, w.dtype, where=fn)  # the pattern's entries are 0 and τ
    loose_std = check_real("loose_std", loose_std, where=fn, minimum=0.0)
    check_choice("contract", contract, get_args(Contract), where=fn)
    check_choice("conv_mode", conv_mode, get_args(ConvMode), where=fn)
    check_choice("flatten_order", flatten_order, get_args(FlattenOrder), where=fn)
    check_choice("depthwise", depthwise, get_args(Depthwise), where=fn)
    check_choice("loose", loose, get_args(Loose), where=fn, allow_none=True)
    groups = check_groups("groups", groups, w, where=fn)

    def fill(d_out: int, d_in: int) -> Tensor:
        return _idi_unit(d_out, d_in, contract)

    if w.ndim == 2:
        unit = fill(*w.shape)
    else:
        is_depthwise = groups > 1 and w.shape[1] == 1
        centre = conv_mode == "channel" or (is_depthwise and depthwise == "centre")
        if centre:
            unit = centre_pattern(w.shape, groups, fill)
        else:
            unit = patch_pattern(w.shape, groups, fill, flatten_order=flatten_order)

    pattern = tau * unit
    if loose is not None:
        # Noise is drawn for every entry in both modes, so one seed gives "tau" and "all" the
        # same perturbation of the τ entries and the two variants differ only at the zeros.
        pattern += loose_std * _noise(unit.shape, generator) * (unit if loose == "tau" else 1.0)
        reach = float(pattern.abs().max())
        if reach > torch.finfo(w.dtype).max:  # only a huge loose_std gets here
            raise OptionValueError(
                "loose_std",
                f"{loose_std:g} makes entries of up to {reach:.3g}, more than {w.dtype} holds; "
                "pass a smaller loose_std (the default is 1e-6) or use a wider dtype",
                where=fn,
                sep="=",
            )
    return _write(w, pattern)


def _noise(shape: torch.Size, generator: torch.Generator | None) -> Tensor:
    device = generator.device if generator is not None else torch.device("cpu")
    # MPS has no float64; elsewhere draw in float64 so the noise is exact before the final cast.
    dtype = torch.float32 if device.type == "mps" else torch.float64
    z = torch.randn(shape, generator=generator, dtype=dtype, device=device)
    return z.to(device="cpu", dtype=torch.float64)


def idiz_(
    w: Tensor,
    eps: float = 1e-6,
    *,
    mode: IdizMode = "idiz",
    single_input: SingleInput = "alternate",
    flatten_order: FlattenOrder = "torch",
    groups: int = 1,
) -> Tensor:
    r"""Fill ``w`` in place with the zero-preserving IDIZ_ε (IDIZC_ε for convolutions).

    For a 2-D weight ``(D_out, D_in)``, all entries not listed are 0:

    * ``D_in = 1``: ``W[m, 0] = ε·(-1)^m`` (``single_input="plain"``: ``+ε``).
    * ``D_out < D_in``: ``W[m, m] = +ε`` and ``W[m, D_out + (m mod (D_in - D_out))] = -ε``.
    * ``D_out >= D_in >= 2``: ``W[m, m mod D_in] = +ε`` and ``W[m, (m+1) mod D_in] = -ε``.

    Each output is ε times a difference of two inputs, so rows sum to 0, constant inputs map to
    0 and ``‖W‖_F = ε√(2·D_out)``. The largest singular value is ``2ε·max_k |sin(πk/D)|``
    (square), exactly ``ε√(1 + ⌈D_out / (D_in - D_out)⌉)`` (contracting: inputs past
    ``D_out`` are shared by that many rows) and at most ``2ε√⌈D_out / D_in⌉`` (expanding), so
    ``‖W‖₂ ≤ 2ε`` holds only for square and mildly contracting shapes. Convolutions flatten
    each group's slice as in :func:`idi_` patch mode (whatever the conv's depthwise status)
    and apply the same rule.
    The result is never loosened: noise of 1e-6 would be as large as ε itself.

    Args:
        w: weight with at least 2 dimensions, floating point.
        eps: the scale ε.
        mode: ``"idiz"`` (the pattern above), ``"zero"`` (exact zeros, Fixup-style) or
            ``"idi_eps"`` (IDI with τ = ε, no subtraction).
        single_input: rule for ``D_in = 1``: ``"alternate"`` or ``"plain"``.
        flatten_order: kernel flatten for convs, ``"torch"`` or ``"tap"``.
        groups: the conv's ``groups``.

    Returns:
        ``w``, filled.

    Example:
        >>> w = idiz_(torch.empty(3, 5), eps=1.0)
        >>> w @ torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
        tensor([-3., -3., -1.])
    """
    fn = "idiz_"
    _check_identity_weight(w, fn)
    eps = check_real("eps", eps, where=fn)
    check_fits("eps", eps, w.dtype, where=fn)  # the pattern's entries are 0 and ±ε
    check_choice("mode", mode, get_args(IdizMode), where=fn)
    check_choice("single_input", single_input, get_args(SingleInput), where=fn)
    check_choice("flatten_order", flatten_order, get_args(FlattenOrder), where=fn)
    groups = check_groups("groups", groups, w, where=fn)

    if mode == "zero":
        return _write(w, torch.zeros(w.shape, dtype=torch.float64))

    def fill(d_out: int, d_in: int) -> Tensor:
        if mode == "idi_eps":
            return _idi_unit(d_out, d_in, "truncate")
        return _idiz_unit(d_out, d_in, single_input)

    if w.ndim == 2:
        unit = fill(*w.shape)
    else:
        unit = patch_pattern(w.shape, groups, fill, flatten_order=flatten_order)
    return _write(w, eps * unit)


def unused_input_channels(w: Tensor, *, groups: int = 1) -> int:
    """Count the input channels (features) that no output reads: an all-zero column.

    Input channel ``g·ipg + c`` of a conv counts as unused when ``w[g·opg:(g+1)·opg, c]`` is
    zero at every tap, since only group ``g`` reads it. Meant for the init report flag
    ("unused input channels: 56/64"); it reads the values ``w`` holds now.

    Example:
        >>> conv = torch.nn.Conv2d(64, 64, 3, bias=False)
        >>> unused_input_channels(idi_(conv.weight))
        56
    """
    fn = "unused_input_channels"
    check_weight("w", w, where=fn, floating=False)
    groups = check_groups("groups", groups, w, where=fn)
    used = (group_view(w.detach(), groups) != 0).any(dim=3).any(dim=1)
    return int((~used).sum())


def loosening_representable(dtype: torch.dtype, tau: float = 1.0, loose_std: float = 1e-6) -> bool:
    """Whether ``dtype`` can hold τ + noise of size ``loose_std`` distinct from τ.

    Returns ``False`` when the spacing of ``dtype`` at ``|τ|`` (one ulp, ``2^⌊log₂|τ|⌋·eps``)
    exceeds ``loose_std`` or τ overflows: float32 at τ = 1 has ulp 1.2e-7 < 1e-6 (True), while
    float16 (9.8e-4) and bfloat16 (7.8e-3) round the noise away (False).

    Example:
        >>> loosening_representable(torch.float32), loosening_representable(torch.bfloat16)
        (True, False)
    """
    fn = "loosening_representable"
    check_dtype("dtype", dtype, where=fn)
    magnitude = abs(check_real("tau", tau, where=fn))
    loose_std = check_real("loose_std", loose_std, where=fn, minimum=0.0)
    info = torch.finfo(dtype)
    if magnitude > info.max:
        return False
    if magnitude < info.smallest_normal:
        ulp = info.smallest_normal * info.eps  # the subnormal spacing
    else:
        ulp = math.ldexp(info.eps, math.frexp(magnitude)[1] - 1)
    return ulp <= loose_std
