"""One tap's spectrum for every example: :class:`TapSpectrum`, the unit that a
:class:`~isokit.probe.Profile` holds per tap (and per block).

Besides the spectrum and its statistics, a tap gives its singular-value distribution as weighted
atoms (:meth:`TapSpectrum.atoms`: the singular values of the exact tier, the SLQ nodes of the
matrix-free one) and as a kernel-smoothed density with a separate zero atom
(:meth:`TapSpectrum.smoothed_density`), whose zeros are those of the one zero rule,
:func:`~isokit.probe.zero_mask`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from isokit.probe.schema import read_tap
from isokit.probe.serialization import encode
from isokit.probe.statistics import dtype_eps, zero_mask

__all__ = ["TapSpectrum"]


@dataclass(kw_only=True, eq=False)
class TapSpectrum:
    """Spectrum of ``J_l = ∂h_l/∂x`` (or of a local Jacobian) at one tap, for every example.

    Attributes:
        name: module name of the tap.
        depth: ``1..L`` (the input is depth 0).
        D: tap output size per example; n_in: input size; r: ``min(D, n_in)``.
        shape: per-example output shape of the tap (batch axis of size 1 kept, as captured).
        method: ``"exact-forward"``, ``"exact-reverse"``, ``"lanczos"``; ``"local-…"`` for
            block Jacobians.
        side: ``"output"`` (``B = JJᵀ``) or ``"input"`` (``A = JᵀJ``), the ``r``-side Gram.
        singular_values: ``[B, r]`` float64, descending (exact tier only).
        stats: ``{name: [B] array}`` — see :mod:`isokit.probe.statistics`.
        se: standard errors of the matrix-free statistics (same keys, subset of ``stats``).
        traces: raw traces ``t1, t2, t3`` (``tr A^k``) per example, so any normalization can be
            recovered.
        density: SLQ quadratures (lanczos tier, SLQ taps): ``nodes`` and ``weights``
            ``[B, P, m]`` (eigenvalues ``θ`` of the ``r``-side Gram; padding has weight 0).
        ritz: Ritz bounds per example: ``sigma_max_lower``, ``sigma_min_upper``,
            ``residual_max``, ``residual_min``, ``converged`` (``[B]`` arrays).
        degenerate, saturated, gram_unreliable: ``[B]`` bool flags (``docs/probes.md §3.4``,
            ``§6``).
        n_products: Jacobian products used (matrix-free tier).
        warnings: messages worth keeping (e.g. vmap slow paths).

    Example:
        >>> import torch, isokit
        >>> from isokit.models import MLP
        >>> model = isokit.init.apply(MLP(6, 6, depth=2), "orthogonal", seed=0)
        >>> tap = isokit.probe.profile(model, torch.randn(3, 6)).taps[-1]
        >>> tap.name, tap.depth, tap.singular_values.shape, tap.stats["m1"].shape
        ('acts.1', 2, (3, 6), (3,))
        >>> s, w = tap.atoms()
        >>> s.shape, float(w.sum())
        ((18,), 1.0)
    """

    name: str
    depth: int
    D: int
    n_in: int
    r: int
    shape: tuple[int, ...]
    method: str
    side: str
    stats: dict[str, np.ndarray]
    degenerate: np.ndarray
    saturated: np.ndarray
    gram_unreliable: np.ndarray
    singular_values: np.ndarray | None = None
    se: dict[str, np.ndarray] = field(default_factory=dict)
    traces: dict[str, np.ndarray] = field(default_factory=dict)
    density: dict[str, np.ndarray] | None = None
    ritz: dict[str, np.ndarray] | None = None
    n_products: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def n_examples(self) -> int:
        """Number of examples ``B``."""
        return int(self.degenerate.shape[0])

    def atoms(self, example: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The singular-value distribution as weighted atoms ``(s, w)`` with ``Σ w = 1``.

        Exact tier: every ``s_i`` with weight ``1/(B·r)`` (or ``1/r`` for one ``example``).
        Matrix-free tier: the SLQ nodes ``s = √max(θ, 0)`` with their quadrature weights,
        averaged over probes (and examples). ``None`` examples pools all of them.
        """
        s, w, _ = self._atoms(example, dtype_eps("float64"))
        return s, w

    def _atoms(self, example: int | None, eps: float) -> tuple[np.ndarray, ...]:
        """:meth:`atoms` and which of them count as zero (:func:`~isokit.probe.zero_mask`)."""
        rows = list(range(self.n_examples)) if example is None else [example]
        if self.singular_values is not None:
            sv = np.asarray(self.singular_values)
            zero = zero_mask(sv, n_rows=self.D, n_cols=self.n_in, eps=eps)[rows].reshape(-1)
            s = sv[rows].reshape(-1)
            return s, np.full(s.shape, 1.0 / s.size), zero
        if self.density is None:
            raise ValueError(f"tap {self.name!r} has neither singular values nor SLQ nodes")
        # SLQ nodes are Gram eigenvalues θ = s²: the rule applies to θ, per example.
        theta = np.maximum(np.asarray(self.density["nodes"]), 0.0)
        w = np.asarray(self.density["weights"])
        keep = w > 0
        spectrum = tuple(range(1, theta.ndim))
        zero = zero_mask(theta, n_rows=self.D, n_cols=self.n_in, eps=eps, axis=spectrum, where=keep)
        theta, w, zero, keep = (a[rows].reshape(-1) for a in (theta, w, zero, keep))
        return np.sqrt(theta[keep]), w[keep] / w[keep].sum(), zero[keep]

    def smoothed_density(
        self,
        grid: np.ndarray,
        *,
        bandwidth: float = 0.05,
        log: bool = True,
        example: int | None = None,
        dtype: Any = "float64",
    ) -> tuple[np.ndarray, float]:
        """Gaussian-kernel density of ``log s`` (or ``s``) on ``grid`` and the zero atom's mass.

        ``bandwidth`` is the kernel's **standard deviation** (``docs/probes.md §4.3``). The atoms
        that count as zero by :func:`~isokit.probe.zero_mask` (singular values against ``s_1``,
        SLQ nodes as ``θ = s²`` against ``θ_max``, per example, with ``ε`` of ``dtype``, the probe
        dtype of ``Profile.meta["dtype"]``) form the separate zero atom; the density integrates to
        ``1 − zero_mass``.

        Example:
            >>> import torch, isokit
            >>> layer = torch.nn.Linear(3, 3, bias=False)
            >>> _ = layer.weight.data.copy_(torch.diag(torch.tensor([1.0, 2.0, 0.0])))
            >>> tap = isokit.probe.profile(torch.nn.Sequential(layer), torch.randn(2, 3)).taps[0]
            >>> rho, zero_mass = tap.smoothed_density(np.linspace(-3.0, 3.0, 601))
            >>> round(zero_mass, 6), round(float(rho.sum() * 0.01), 6)  # one of three is zero
            (0.333333, 0.666667)
        """
        s, w, zero = self._atoms(example, dtype_eps(dtype))
        grid = np.asarray(grid, dtype=np.float64)
        zero_mass = float(w[zero].sum())
        x = np.log(s[~zero]) if log else s[~zero]
        z = (grid[:, None] - x[None, :]) / bandwidth
        kernel = np.exp(-0.5 * z * z) / (bandwidth * np.sqrt(2 * np.pi))
        return kernel @ w[~zero], zero_mass

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict (module docstring)."""
        return {f.name: encode(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TapSpectrum:
        """Inverse of :meth:`to_dict`; every field is checked (:mod:`isokit.probe.schema`).

        Raises:
            ProfileFormatError: a missing, unknown, mistyped or wrongly sized field (named).
        """
        return cls(**read_tap("tap", d, cls))
