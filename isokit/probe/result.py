"""Result objects of the probes: :class:`TapSpectrum`, :class:`Signal`, :class:`Profile`.

**JSON convention.** :meth:`Profile.to_dict` returns plain JSON types: numpy arrays become nested
lists, tuples become lists, and the non-finite floats ``+inf``, ``−inf`` and ``nan`` become the
strings ``"inf"``, ``"-inf"`` and ``"nan"`` (strict JSON has no such numbers, and a browser's
``JSON.parse`` rejects ``Infinity``). :meth:`Profile.from_dict` knows which fields are numeric
and converts those strings back, so ``Profile.from_dict(p.to_dict())`` reproduces every array
bit for bit (finite floats are written with ``repr`` precision). Strings inside the free-form
``meta`` dict are left as they are. :meth:`Profile.to_json` writes atomically (a temporary file in
the same directory, then ``os.replace``).

**Missing versus infinite.** A tap's ``stats`` dict holds only the statistics that were measured
(the matrix-free tier measures the moments at every tap and the node-based statistics only at
the SLQ taps). Degenerate spectra (``J = 0``) carry the documented values of
:mod:`isokit.probe.stats` with ``var = +inf`` instead of NaN, and the ``degenerate`` flag; so a
Profile's spectra carry no NaN. :meth:`Profile.stat` returns NaN only for "not measured at this
tap". The one other NaN is :attr:`Signal.cos` at a tap with fewer than two non-zero examples.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from isokit._atomic import write_atomic

__all__ = ["Profile", "Signal", "TapSpectrum", "decode", "encode"]

SCHEMA_VERSION = 1
_SPECIAL = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def encode(value: Any) -> Any:
    """Plain JSON types, with non-finite floats as the strings ``"inf"``, ``"-inf"``, ``"nan"``."""
    if isinstance(value, np.ndarray):
        return encode(value.tolist())
    if isinstance(value, np.generic):
        return encode(value.item())
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)


def _numeric(value: Any) -> Any:
    if isinstance(value, list):
        return [_numeric(v) for v in value]
    if isinstance(value, str):
        return _SPECIAL[value]
    return value


def decode(value: Any, dtype: Any = np.float64) -> np.ndarray:
    """A numeric field of :func:`encode`'s output back to an array of ``dtype``."""
    return np.asarray(_numeric(value), dtype=dtype)


def _arr_dict(d: dict[str, Any] | None, dtype: Any = np.float64) -> dict[str, np.ndarray] | None:
    if d is None:
        return None
    return {k: decode(v, dtype) for k, v in d.items()}


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
        stats: ``{name: [B] array}`` — see :mod:`isokit.probe.stats`.
        se: standard errors of the matrix-free statistics (same keys, subset of ``stats``).
        traces: raw traces ``t1, t2, t3`` (``tr A^k``) per example, so any normalization can be
            recovered.
        density: SLQ quadratures (lanczos tier, SLQ taps): ``nodes`` and ``weights``
            ``[B, P, m]`` (eigenvalues ``θ`` of the ``r``-side Gram; padding has weight 0).
        ritz: Ritz bounds per example: ``sigma_max_lower``, ``sigma_min_upper``,
            ``residual_max``, ``residual_min``, ``converged`` (``[B]`` arrays).
        degenerate, saturated, gram_unreliable: ``[B]`` bool flags (``probes.md`` §3.4, §6).
        n_products: Jacobian products used (matrix-free tier).
        warnings: messages worth keeping (e.g. vmap slow paths).
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
        rows = range(self.n_examples) if example is None else [example]
        if self.singular_values is not None:
            s = np.asarray(self.singular_values)[list(rows)].reshape(-1)
            return s, np.full(s.shape, 1.0 / s.size)
        if self.density is None:
            raise ValueError(f"tap {self.name!r} has neither singular values nor SLQ nodes")
        theta = np.asarray(self.density["nodes"])[list(rows)].reshape(-1)
        w = np.asarray(self.density["weights"])[list(rows)].reshape(-1)
        keep = w > 0
        w = w[keep] / w[keep].sum()
        return np.sqrt(np.maximum(theta[keep], 0.0)), w

    def smoothed_density(
        self,
        grid: np.ndarray,
        *,
        bandwidth: float = 0.05,
        log: bool = True,
        example: int | None = None,
        zero_tol: float | None = None,
    ) -> tuple[np.ndarray, float]:
        """Gaussian-kernel density of ``log s`` (or ``s``) on ``grid`` and the zero atom's mass.

        ``bandwidth`` is the kernel's **standard deviation** (``probes.md`` §4.3). Atoms with
        ``s ≤ zero_tol·s_max`` (default ``max(D, n_in)·ε₆₄``) form the separate zero atom; the
        density integrates to ``1 − zero_mass``.
        """
        s, w = self.atoms(example)
        grid = np.asarray(grid, dtype=np.float64)
        smax = float(s.max()) if s.size else 0.0
        tol = max(self.D, self.n_in) * np.finfo(np.float64).eps if zero_tol is None else zero_tol
        zero = s <= tol * smax
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
        """Inverse of :meth:`to_dict`."""
        return cls(
            name=d["name"],
            depth=int(d["depth"]),
            D=int(d["D"]),
            n_in=int(d["n_in"]),
            r=int(d["r"]),
            shape=tuple(d["shape"]),
            method=d["method"],
            side=d["side"],
            stats=_arr_dict(d["stats"]),
            degenerate=decode(d["degenerate"], bool),
            saturated=decode(d["saturated"], bool),
            gram_unreliable=decode(d["gram_unreliable"], bool),
            singular_values=(
                None if d.get("singular_values") is None else decode(d["singular_values"])
            ),
            se=_arr_dict(d.get("se") or {}),
            traces=_arr_dict(d.get("traces") or {}),
            density=_arr_dict(d.get("density")),
            ritz=(
                None
                if d.get("ritz") is None
                else {
                    k: decode(v, bool if k.startswith("converged") else np.float64)
                    for k, v in d["ritz"].items()
                }
            ),
            n_products=int(d.get("n_products", 0)),
            warnings=list(d.get("warnings", [])),
        )


@dataclass(kw_only=True, eq=False)
class Signal:
    """Forward signal and gradient norms per tap (``probes.md`` §5, "Forward signal").

    Arrays are over taps (depth 1..L); the ``input_*`` scalars are depth 0.

    Attributes:
        taps, D: tap names and sizes.
        q, q_std: mean squared activation ``(1/B)·Σ_b ‖h_b‖²/D`` and its spread over examples.
        cos: mean pairwise uncentered cosine between examples (NaN if fewer than two non-zero
            examples); cos_dropped: zero-norm examples left out.
        grad, grad_std: ``g = (1/B)·Σ_b ‖∂ℓ_b/∂h_b‖²`` and its spread; grad_per_unit: ``g/D``.
        param_grad: ``‖∇_θ (1/B)Σ_b ℓ_b‖_F`` over the parameters of the modules that run between
            tap ``l−1`` and tap ``l`` (the block of tap ``l``; a tap module's own layers count).
        input_q, input_cos: the same at the input.
        loss: ``"projection"`` (``ℓ_b = ⟨u_b, f(x_b)⟩``, ``u_b ~ N(0, I)``) or ``"custom"``.
        seed: seed of the projection vectors.
        n_examples: ``B``.
    """

    taps: list[str]
    D: list[int]
    q: np.ndarray
    q_std: np.ndarray
    cos: np.ndarray
    cos_dropped: np.ndarray
    grad: np.ndarray
    grad_std: np.ndarray
    grad_per_unit: np.ndarray
    param_grad: np.ndarray
    input_q: float
    input_cos: float
    loss: str
    seed: int | None
    n_examples: int

    _ARRAYS = ("q", "q_std", "cos", "grad", "grad_std", "grad_per_unit", "param_grad")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict."""
        return {f.name: encode(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Signal:
        """Inverse of :meth:`to_dict`."""
        kw = dict(d)
        for name in cls._ARRAYS:
            kw[name] = decode(d[name])
        kw["cos_dropped"] = decode(d["cos_dropped"], np.int64)
        kw["input_q"] = float(_numeric(d["input_q"]))
        kw["input_cos"] = float(_numeric(d["input_cos"]))
        kw["taps"] = list(d["taps"])
        kw["D"] = [int(v) for v in d["D"]]
        return cls(**kw)


@dataclass(kw_only=True, eq=False)
class Profile:
    """Jacobian spectra at every tap of one model on one batch (``probes.md`` §7).

    Attributes:
        taps: one :class:`TapSpectrum` per tap, in depth order.
        meta: model class, scheme (from the caller's ``meta=``), seed, method and the reason it
            was chosen, dtype, device, torch and isokit versions, input shape, ...
        signal: optional :class:`Signal`.
        blocks: optional local (per-block) spectra, one :class:`TapSpectrum` per tap.
    """

    taps: list[TapSpectrum]
    meta: dict[str, Any]
    signal: Signal | None = None
    blocks: list[TapSpectrum] | None = None

    # ----------------------------------------------------------------------------- access

    @property
    def names(self) -> list[str]:
        """Tap names in depth order."""
        return [t.name for t in self.taps]

    @property
    def depths(self) -> np.ndarray:
        """Tap depths ``1..L``."""
        return np.array([t.depth for t in self.taps], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.taps)

    def __getitem__(self, key: int | str) -> TapSpectrum:
        if isinstance(key, str):
            for t in self.taps:
                if t.name == key:
                    return t
            raise KeyError(f"no tap named {key!r}; taps: {', '.join(self.names)}")
        return self.taps[key]

    def stat(self, name: str, reduce: str | None = "mean", *, section: str = "taps") -> np.ndarray:
        """A statistic over depth: ``[L]`` (``reduce="mean"|"median"``) or ``[L, B]`` (``None``).

        NaN marks taps where the statistic was not measured (e.g. node statistics outside the
        SLQ taps). Infinite values (degenerate or rank-deficient spectra) propagate.
        """
        taps = self._section(section)
        rows = []
        for t in taps:
            if name in t.stats:
                rows.append(np.asarray(t.stats[name], dtype=np.float64))
            else:
                rows.append(np.full(t.n_examples, math.nan))
        if not rows:
            return np.zeros((0,) if reduce else (0, 0))
        known = {n for t in taps for n in t.stats}
        if name not in known:
            raise KeyError(f"unknown statistic {name!r}; measured: {', '.join(sorted(known))}")
        values = np.stack(rows)
        if reduce is None:
            return values
        if reduce == "mean":
            with np.errstate(invalid="ignore"):
                return values.mean(axis=1)
        if reduce == "median":
            return np.median(values, axis=1)
        raise ValueError(f"reduce must be 'mean', 'median' or None, got {reduce!r}")

    def _section(self, section: str) -> list[TapSpectrum]:
        if section == "taps":
            return self.taps
        if section == "blocks":
            if self.blocks is None:
                raise ValueError("this profile has no blocks section (use block_profile)")
            return self.blocks
        raise ValueError(f"section must be 'taps' or 'blocks', got {section!r}")

    def table(self, *, section: str = "taps", se: bool = False) -> list[dict[str, Any]]:
        """Tidy rows ``{model, scheme, tap, depth, example, statistic, value}``.

        ``pandas.DataFrame(profile.table())`` reads them directly; pandas is not needed here.
        With ``se=True`` each row also carries ``se`` (NaN where none was estimated).
        ``section="signal"`` gives one row per tap and signal quantity with ``example = None``.
        """
        model = self.meta.get("model")
        scheme = self.meta.get("scheme")
        rows: list[dict[str, Any]] = []
        if section == "signal":
            if self.signal is None:
                raise ValueError(
                    "this profile has no signal section (profile(..., with_signal=True))"
                )
            s = self.signal
            for i, tap in enumerate(s.taps):
                for stat in Signal._ARRAYS:
                    rows.append(
                        {
                            "model": model,
                            "scheme": scheme,
                            "tap": tap,
                            "depth": i + 1,
                            "example": None,
                            "statistic": stat,
                            "value": float(getattr(s, stat)[i]),
                        }
                    )
            return rows
        for t in self._section(section):
            for stat, values in t.stats.items():
                errors = t.se.get(stat)
                for b, value in enumerate(np.asarray(values).tolist()):
                    row = {
                        "model": model,
                        "scheme": scheme,
                        "tap": t.name,
                        "depth": t.depth,
                        "example": b,
                        "statistic": stat,
                        "value": float(value),
                    }
                    if se:
                        row["se"] = math.nan if errors is None else float(errors[b])
                    rows.append(row)
        return rows

    # ----------------------------------------------------------------------------- JSON

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict (module docstring)."""
        return {
            "schema": SCHEMA_VERSION,
            "meta": encode(self.meta),
            "taps": [t.to_dict() for t in self.taps],
            "signal": None if self.signal is None else self.signal.to_dict(),
            "blocks": None if self.blocks is None else [t.to_dict() for t in self.blocks],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Profile:
        """Inverse of :meth:`to_dict`."""
        if d.get("schema", SCHEMA_VERSION) > SCHEMA_VERSION:
            raise ValueError(
                f"profile schema {d['schema']} is newer than this isokit ({SCHEMA_VERSION})"
            )
        return cls(
            taps=[TapSpectrum.from_dict(t) for t in d["taps"]],
            meta=dict(d["meta"]),
            signal=None if d.get("signal") is None else Signal.from_dict(d["signal"]),
            blocks=(
                None if d.get("blocks") is None else [TapSpectrum.from_dict(t) for t in d["blocks"]]
            ),
        )

    def to_json(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_dict` as JSON atomically (temporary file + ``os.replace``)."""
        write_atomic(path, json.dumps(self.to_dict(), allow_nan=False))

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> Profile:
        """Read a profile written by :meth:`to_json`."""
        with open(path, encoding="utf-8") as fh:
            return cls.from_dict(json.load(fh))

    def __repr__(self) -> str:
        m = self.meta
        return (
            f"Profile(model={m.get('model')!r}, scheme={m.get('scheme')!r}, "
            f"method={m.get('method')!r}, taps={len(self.taps)}, "
            f"examples={self.taps[0].n_examples if self.taps else 0})"
        )
