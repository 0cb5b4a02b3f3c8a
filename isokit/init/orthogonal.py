"""Orthogonal, delta-orthogonal and zero-padded identity initializers.

- :func:`orthogonal_` (Saxe et al., 2014): the flattened weight is Haar semi-orthogonal.
- :func:`delta_orthogonal_` (Xiao et al., 2018): the kernel's centre tap is gain·Q with Q Haar
  semi-orthogonal and every other tap 0, so a stride-1 conv with "same" zero padding applies the
  same orthogonal map at every position, an exact isometry.
- :func:`eye_` and :func:`dirac_`: identity where shapes allow, zeros elsewhere, times ``scale``.

:func:`orthogonal_`, :func:`eye_` and :func:`dirac_` share their names with ``torch.nn.init`` and
keep its signatures (``orthogonal_(tensor, gain, generator)``, ``eye_(tensor)``,
``dirac_(tensor, groups)``; isokit's own options are keyword-only) and its behaviour, zero-element
tensors included.
"""

from __future__ import annotations

import torch
from torch import Tensor

from isokit.init.checks import check_bool, check_fits, check_groups, check_real, check_weight

__all__ = ["delta_orthogonal_", "dirac_", "eye_", "orthogonal_"]


def _haar(rows: int, cols: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """A Haar-distributed (rows, cols) float64 matrix with orthonormal columns (or rows if wide).

    The draw and QR run in float64 whatever the target dtype, so low-precision weights are cast
    from an accurate Q. The sign fix on diag(R) makes Q Haar rather than QR-biased
    (Mezzadri, math-ph/0609050). The draw order mirrors ``torch.nn.init.orthogonal_`` so a float64
    weight gets exactly torch's matrix for the same generator state.
    """
    if generator is not None:
        device = generator.device
    a = torch.empty(rows, cols, dtype=torch.float64, device=device).normal_(generator=generator)
    wide = rows < cols
    if wide:
        a = a.t()
    q, r = torch.linalg.qr(a)
    # sign() would give 0 for an exactly-zero diagonal entry (probability 0, but not impossible).
    q = q * torch.where(torch.diagonal(r) < 0, -1.0, 1.0).to(q)
    return q.t() if wide else q


def orthogonal_(
    tensor: Tensor, gain: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """Fill ``w`` with a Haar (semi-)orthogonal matrix times ``gain``.

    ``tensor`` is viewed as rows = size(0) by cols = numel/rows. Rows ≤ cols gives WWᵀ = gain²·I,
    rows > cols gives WᵀW = gain²·I. For conv weights this makes the *flattened* kernel
    semi-orthogonal, which does not make the convolution an isometry; use
    :func:`delta_orthogonal_` for that. Same draw as ``torch.nn.init.orthogonal_`` but with the
    QR in float64; a zero-element tensor is returned untouched, as torch does.

    Example:
        >>> w = orthogonal_(torch.empty(64, 32, dtype=torch.float64),
        ...                 generator=torch.Generator().manual_seed(0))
        >>> torch.allclose(w.T @ w, torch.eye(32, dtype=torch.float64))
        True
    """
    check_weight("tensor", tensor, where="orthogonal_", allow_empty=True)
    gain = check_real("gain", gain, where="orthogonal_")
    # Every entry of gain·Q is at most |gain|: a gain the dtype holds never writes inf.
    check_fits("gain", gain, tensor.dtype, where="orthogonal_")
    if tensor.numel() == 0:
        return tensor
    rows = tensor.size(0)
    q = _haar(rows, tensor.numel() // rows, generator, tensor.device)
    with torch.no_grad():
        tensor.copy_((gain * q).reshape(tensor.shape))
    return tensor


def _check_conv(
    name: str, w: Tensor, *, where: str, linear_alternative: str, allow_empty: bool = False
) -> None:
    hint = f"pass a ConvNd weight (C_out, C_in/groups, *k); use {linear_alternative} for Linear"
    check_weight(name, w, where=where, min_dim=3, max_dim=5, hint=hint, allow_empty=allow_empty)


def delta_orthogonal_(
    w: Tensor,
    gain: float = 1.0,
    *,
    groups: int = 1,
    allow_contracting: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Delta-orthogonal kernel (Xiao et al., 2018, Algorithm 2) for a Conv1d/2d/3d weight.

    With ``w`` of shape (C_out, C_in/groups, *k), all k odd, o = C_out/groups and c = k//2:

        W = 0,   W[g·o:(g+1)·o, :, c_1, ..., c_n] = gain·Q_g,

    one independent Haar Q_g of shape (o, C_in/groups) per group, with orthonormal columns. A
    stride-1 conv with padding k//2 then maps every pixel's channel vector by gain·Q_g, so
    ‖conv(x)‖ = gain·‖x‖ exactly. Contracting layers (o < C_in/groups) cannot be isometric and
    raise unless ``allow_contracting=True``, which gives Q_g orthonormal rows instead.

    Example:
        >>> conv = torch.nn.Conv2d(16, 32, 3, padding=1, bias=False)
        >>> _ = delta_orthogonal_(conv.weight, generator=torch.Generator().manual_seed(0))
    """
    fn = "delta_orthogonal_"
    _check_conv("w", w, where=fn, linear_alternative="orthogonal_")
    gain = check_real("gain", gain, where=fn)
    check_fits("gain", gain, w.dtype, where=fn)  # entries of gain·Q are at most |gain|
    check_groups("groups", groups, w, where=fn)
    check_bool("allow_contracting", allow_contracting, where=fn)
    kernel = tuple(w.shape[2:])
    if any(k % 2 == 0 for k in kernel):
        raise ValueError(
            f"{fn}: kernel size {kernel} has an even side, which has no centre tap (k//2 is "
            "off-centre and the conv is no longer an isometry); use odd kernel sizes"
        )
    out_per_group, in_per_group = w.size(0) // groups, w.size(1)
    if out_per_group < in_per_group and not allow_contracting:
        raise ValueError(
            f"{fn}: C_out/groups={out_per_group} < C_in/groups={in_per_group}, so no kernel can "
            "preserve norms; pass allow_contracting=True to use orthonormal rows instead"
        )
    centre = tuple(k // 2 for k in kernel)
    kernel_64 = torch.zeros(w.shape, dtype=torch.float64, device=w.device)
    for g in range(groups):
        q = _haar(out_per_group, in_per_group, generator, w.device).to(w.device)
        kernel_64[(slice(g * out_per_group, (g + 1) * out_per_group), slice(None), *centre)] = q
    with torch.no_grad():
        w.copy_(gain * kernel_64)
    return w


def eye_(tensor: Tensor, *, scale: float = 1.0) -> Tensor:
    """Fill a 2-D ``tensor`` with scale·I_{out×in}: W[i, i] = scale for i < min(out, in), else 0.

    ``torch.nn.init.eye_`` with an isokit keyword ``scale`` (default 1, where it equals torch's
    result). Rows or columns beyond min(out, in) are zero (Keras' newer convention), not a
    repeated identity as in IDInit.

    Example:
        >>> eye_(torch.empty(3, 2), scale=0.5)
        tensor([[0.5000, 0.0000],
                [0.0000, 0.5000],
                [0.0000, 0.0000]])
    """
    hint = "use dirac_ for conv weights"
    check_weight("tensor", tensor, where="eye_", min_dim=2, max_dim=2, hint=hint, allow_empty=True)
    scale = check_real("scale", scale, where="eye_")
    check_fits("scale", scale, tensor.dtype, where="eye_")
    with torch.no_grad():
        torch.nn.init.eye_(tensor).mul_(scale)
    return tensor


def dirac_(tensor: Tensor, groups: int = 1, *, scale: float = 1.0) -> Tensor:
    """Fill a conv weight with the zero-padded Dirac identity times ``scale``.

    With o = C_out/groups and i = C_in/groups: W = 0, then for each group g and d < min(o, i),
    W[g·o + d, d, k_1//2, ..., k_n//2] = scale. This is ``torch.nn.init.dirac_(tensor, groups)``
    (same signature; ``scale`` is an isokit keyword, default 1) and like torch it accepts even
    kernels, where k//2 is one past the middle.

    Example:
        >>> w = dirac_(torch.empty(8, 8, 3, 3), scale=2.0)
        >>> float(w[:, :, 1, 1].trace())
        16.0
    """
    _check_conv("tensor", tensor, where="dirac_", linear_alternative="eye_", allow_empty=True)
    scale = check_real("scale", scale, where="dirac_")
    check_fits("scale", scale, tensor.dtype, where="dirac_")
    check_groups("groups", groups, tensor, where="dirac_")
    with torch.no_grad():
        torch.nn.init.dirac_(tensor, groups).mul_(scale)
    return tensor
