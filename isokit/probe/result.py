"""Result objects of the probes: :class:`Profile` and :class:`Signal` (and
:class:`~isokit.probe.spectrum.TapSpectrum`, one tap's spectrum, in :mod:`isokit.probe.spectrum`).

:class:`Profile` is the only place probe results live: the spectra at every tap
(:attr:`Profile.taps`), optionally the forward signal (:attr:`Profile.signal`) and the local
block spectra (:attr:`Profile.blocks`), and the metadata (:attr:`Profile.meta`). Its JSON form
is in :mod:`isokit.probe.serialization` (values) and :mod:`isokit.probe.schema` (the checked
layout); :meth:`Profile.to_json` writes atomically (a temporary file in the same directory, then
``os.replace``).

**Missing versus infinite.** A tap's ``stats`` dict holds only the statistics that were measured
(the matrix-free tier measures the moments at every tap and the node-based statistics only at
the SLQ taps). Degenerate spectra (``J = 0``) carry the documented values of
:mod:`isokit.probe.statistics` with ``var = +inf`` instead of NaN, and the ``degenerate`` flag;
so a Profile's spectra carry no NaN. :meth:`Profile.stat` returns NaN only for "not measured at
this tap". The one other NaN is :attr:`Signal.cos` at a tap with fewer than two non-zero
examples.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from isokit._atomic import write_atomic
from isokit.probe.schema import PER_TAP, SCHEMA_VERSION, per_tap_arrays, read_profile, read_signal
from isokit.probe.serialization import ProfileFormatError, encode
from isokit.probe.spectrum import TapSpectrum

__all__ = ["Profile", "Signal"]


@dataclass(kw_only=True, eq=False)
class Signal:
    """Forward signal and gradient norms per tap (``docs/probes.md §5``, "Forward signal").

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

    Example:
        >>> import torch, isokit
        >>> from isokit.models import MLP
        >>> model = isokit.init.apply(MLP(6, 6, depth=2), "orthogonal", seed=0)
        >>> sig = isokit.probe.signal(model, torch.randn(3, 6))
        >>> sig.taps, sig.q.shape, sig.n_examples
        (['acts.0', 'acts.1'], (2,), 3)
        >>> Signal.from_dict(sig.to_dict()).grad.tolist() == sig.grad.tolist()
        True
    """

    taps: list[str]
    D: list[int]
    q: np.ndarray = field(metadata=PER_TAP)
    q_std: np.ndarray = field(metadata=PER_TAP)
    cos: np.ndarray = field(metadata=PER_TAP)
    cos_dropped: np.ndarray
    grad: np.ndarray = field(metadata=PER_TAP)
    grad_std: np.ndarray = field(metadata=PER_TAP)
    grad_per_unit: np.ndarray = field(metadata=PER_TAP)
    param_grad: np.ndarray = field(metadata=PER_TAP)
    input_q: float
    input_cos: float
    loss: str
    seed: int | None
    n_examples: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict."""
        return {f.name: encode(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Signal:
        """Inverse of :meth:`to_dict`; every field is checked (:mod:`isokit.probe.schema`).

        Raises:
            ProfileFormatError: a missing, unknown, mistyped or wrongly sized field (named).
        """
        return cls(**read_signal("signal", d, cls))


@dataclass(kw_only=True, eq=False)
class Profile:
    """Jacobian spectra at every tap of one model on one batch (``docs/probes.md §7``).

    Attributes:
        taps: one :class:`TapSpectrum` per tap, in depth order.
        meta: model class, scheme (from the caller's ``meta=``), seed, method and the reason it
            was chosen, dtype, device, torch and isokit versions, input shape, ...
        signal: optional :class:`Signal`.
        blocks: optional local (per-block) spectra, one :class:`TapSpectrum` per tap.

    Example:
        >>> import torch, isokit
        >>> from isokit.models import MLP
        >>> model = isokit.init.apply(MLP(6, 6, depth=3), "orthogonal", seed=0)
        >>> prof = isokit.probe.profile(model, torch.randn(2, 6), with_signal=True)
        >>> prof.names, prof.stat("m1").shape, prof.signal.q.shape
        (['acts.0', 'acts.1', 'acts.2'], (3,), (3,))
        >>> back = Profile.from_dict(prof.to_dict())
        >>> bool((back.taps[0].singular_values == prof.taps[0].singular_values).all())
        True
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
        base = {"model": self.meta.get("model"), "scheme": self.meta.get("scheme")}
        rows: list[dict[str, Any]] = []
        if section == "signal":
            if self.signal is None:
                raise ValueError(
                    "this profile has no signal section (profile(..., with_signal=True))"
                )
            sig = self.signal
            for i, tap in enumerate(sig.taps):
                for stat in per_tap_arrays(Signal):
                    value = float(getattr(sig, stat)[i])
                    rows.append(
                        {**base, "tap": tap, "depth": i + 1, "example": None, "statistic": stat}
                        | {"value": value}
                    )
            return rows
        for t in self._section(section):
            for stat, values in t.stats.items():
                errors = t.se.get(stat)
                for b, value in enumerate(np.asarray(values).tolist()):
                    row = {**base, "tap": t.name, "depth": t.depth, "example": b}
                    row |= {"statistic": stat, "value": float(value)}
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
        """Inverse of :meth:`to_dict`; every field is checked (:mod:`isokit.probe.schema`).

        Raises:
            ProfileFormatError: a missing, unknown, mistyped or wrongly sized field (named),
                or a schema newer than this isokit's.
        """
        parts = read_profile(d, cls, TapSpectrum, Signal)
        return cls(
            taps=[TapSpectrum(**t) for t in parts["taps"]],
            meta=parts["meta"],
            signal=None if parts["signal"] is None else Signal(**parts["signal"]),
            blocks=None if parts["blocks"] is None else [TapSpectrum(**t) for t in parts["blocks"]],
        )

    def to_json(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_dict` as JSON atomically (temporary file + ``os.replace``)."""
        write_atomic(path, json.dumps(self.to_dict(), allow_nan=False))

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> Profile:
        """Read a profile written by :meth:`to_json`, checking every field.

        Raises:
            ProfileFormatError: the file is not JSON, or a field is missing, unknown, mistyped
                or wrongly sized (named).
        """
        with open(path, encoding="utf-8") as fh:
            try:
                data = json.load(fh)
            except json.JSONDecodeError as err:
                raise ProfileFormatError(str(path), f"is not valid JSON ({err})") from None
        return cls.from_dict(data)

    def __repr__(self) -> str:
        m = self.meta
        return (
            f"Profile(model={m.get('model')!r}, scheme={m.get('scheme')!r}, "
            f"method={m.get('method')!r}, taps={len(self.taps)}, "
            f"examples={self.taps[0].n_examples if self.taps else 0})"
        )
