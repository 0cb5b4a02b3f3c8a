"""Matrix-free tier of :func:`~isokit.probe.profile` (``"lanczos"``, ``docs/probes.md §4``).

Unbiased ``m1..m3`` with jackknife standard errors at every tap from ``n_probes`` Rademacher
tangents (one ``vmap``-ped ``jvp`` for all taps, :mod:`isokit.probe.moments`), plus stochastic
Lanczos quadrature (density, node statistics) and Ritz bounds on ``σ_max``/``σ_min`` at the
``slq_taps`` (:mod:`isokit.probe.krylov`, :mod:`isokit.probe.quadrature`), whose default is
:func:`default_slq_taps`. The operator is the ``r``-side Gram: ``A v = Jᵀ(J v)`` when
``n_in ≤ D``, else ``B u = J(Jᵀ u)``, both from batched ``jvp``/``vjp``
(:func:`_jacobian_products`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import jvp, vjp, vmap

from isokit.probe.checks import ProbeOptionError, SlqTapsOption
from isokit.probe.krylov import lanczos
from isokit.probe.moments import rademacher, trace_moments
from isokit.probe.node_statistics import saturated_from_ritz, slq_statistics
from isokit.probe.quadrature import ritz_bounds, slq_moments
from isokit.probe.spectrum import TapSpectrum
from isokit.probe.start import StartView
from isokit.probe.statistics import dtype_eps
from isokit.probe.taps import run_with_taps

__all__ = ["default_slq_taps", "lanczos_taps", "resolve_slq_taps"]


# ------------------------------------------------------------------------------- slq taps


def default_slq_taps(n_taps: int) -> list[int]:
    """Log-spaced depths plus the last one, as 0-based tap indices (``docs/probes.md §4.3``).

    Example:
        >>> default_slq_taps(10)
        [0, 1, 2, 5, 9]
    """
    if n_taps <= 0:
        return []
    k = min(n_taps, 1 + math.ceil(math.log2(n_taps)))
    depths = np.unique(np.round(np.geomspace(1, n_taps, k)).astype(int))
    return sorted({int(d) - 1 for d in depths} | {n_taps - 1})


def resolve_slq_taps(slq_taps: SlqTapsOption, names: list[str]) -> list[int]:
    """The 0-based indices of the SLQ taps among ``names`` for the ``slq_taps`` option.

    Example:
        >>> resolve_slq_taps(["c", 1], ["a", "b", "c"]), resolve_slq_taps("none", ["a", "b"])
        ([0, 2], [])
    """
    if slq_taps is None:
        return default_slq_taps(len(names))
    if isinstance(slq_taps, str):
        if slq_taps == "all":
            return list(range(len(names)))
        if slq_taps == "none":
            return []
        slq_taps = [slq_taps]
    out = set()
    for item in slq_taps:
        if isinstance(item, str):
            if item not in names:
                raise ProbeOptionError(
                    "slq_taps",
                    f"{item!r} is not one of the probed taps ({', '.join(names)}); name one of "
                    "them, a 1-based depth, 'all' or 'none'",
                )
            out.add(names.index(item))
        else:
            depth = int(item)
            if not 1 <= depth <= len(names):
                raise ProbeOptionError(
                    "slq_taps",
                    f"depth {depth} is outside 1..{len(names)} (the probed taps); pass a depth "
                    "in that range, a tap name, 'all' or 'none'",
                )
            out.add(depth - 1)
    return sorted(out)


# ----------------------------------------------------------------------------------- lanczos


def _tap_fn(model: nn.Module, mods: list[nn.Module], last: int) -> Callable[[Tensor], Tensor]:
    """``x ↦ h_last(x)`` flattened, for one example, stopping the forward after that tap."""
    sub = mods[: last + 1]

    def fn(x: Tensor) -> Tensor:
        return run_with_taps(model, sub, x.unsqueeze(0), stop_after=last).outputs[last].reshape(-1)

    return fn


def _jacobian_products(fn, xb: Tensor, D: int, in_shape: tuple[int, ...]):
    """Batched ``V ↦ J V`` and ``U ↦ Jᵀ U`` (rows are vectors) at one example.

    ``Jᵀu`` is one ``vmap``-ped call of the reusable ``vjp_fn`` (primal cached). ``Jv`` uses the
    double-vjp trick (``docs/probes.md §4.1``): ``u ↦ Jᵀu`` is linear, so its own ``vjp`` applied to
    ``v`` is ``Jv``. It reuses the same graph, and was 4× faster than ``vmap(jvp)`` on wide
    linear layers (where ``jvp`` re-runs the primal and copies the transposed weight). If the
    model lacks double backward, plain ``jvp`` is used.
    """
    _, vjp_fn = vjp(fn, xb)

    def jt_single(u: Tensor) -> Tensor:
        return vjp_fn(u)[0].reshape(-1)

    def jtu(U: Tensor) -> Tensor:
        return vmap(jt_single)(U)

    try:
        _, jv_fn = vjp(jt_single, torch.zeros(D, dtype=xb.dtype, device=xb.device))

        def jv(V: Tensor) -> Tensor:
            return vmap(lambda v: jv_fn(v)[0])(V)

        probe = torch.zeros(1, math.prod(in_shape), dtype=xb.dtype, device=xb.device)
        jv(probe)  # fails here if some op has no double backward
    except (RuntimeError, NotImplementedError):

        def jv(V: Tensor) -> Tensor:
            return vmap(lambda v: jvp(fn, (xb,), (v.reshape(in_shape),))[1])(V)

    return jv, jtu


def lanczos_taps(
    m: nn.Module,
    x: Tensor,
    names: list[str],
    mods: list[nn.Module],
    dims: list[int],
    shapes: list[tuple[int, ...]],
    *,
    n_probes: int,
    steps: int,
    slq_idx: list[int],
    generator: torch.Generator,
    band: float,
    progress: bool,
) -> list[TapSpectrum]:
    """The matrix-free spectra of every tap (module docstring): moments everywhere, SLQ and Ritz
    bounds at the taps ``slq_idx`` (from :func:`resolve_slq_taps`).

    ``m`` is the probe copy, ``x`` the batch in the probe dtype, ``mods``, ``dims`` and
    ``shapes`` the tap modules and their per-example output sizes and shapes (from
    :func:`~isokit.probe.prepare.prepare`).

    Example:
        >>> from isokit.models import MLP
        >>> from isokit.probe.options import ProbeOptions
        >>> from isokit.probe.prepare import prepare
        >>> with prepare(MLP(4, 4, depth=2), torch.randn(1, 4), ProbeOptions()) as p:
        ...     taps = lanczos_taps(p.copy, p.x, p.names, p.mods, p.dims, p.shapes, n_probes=4,
        ...                         steps=4, slq_idx=[1], band=0.1, progress=False,
        ...                         generator=torch.Generator().manual_seed(0))
        >>> [t.method for t in taps], [t.density is not None for t in taps]
        (['lanczos', 'lanczos'], [False, True])
    """
    B = x.shape[0]
    in_shape = tuple(x.shape[1:])
    n_in = int(math.prod(in_shape))
    L = len(names)
    last = L - 1
    dtype = x.dtype
    eps = dtype_eps(dtype)
    # A StartView holds every example's x: each example's function is its own view (§3.6).
    model_of = m.at if isinstance(m, StartView) else (lambda b: m)

    def g_all(mb: nn.Module, xx: Tensor) -> tuple[Tensor, ...]:
        call = run_with_taps(mb, mods, xx.unsqueeze(0), stop_after=last)
        return tuple(h.reshape(-1) for h in call.outputs)

    # Moments at every tap: one vmapped jvp of K Rademacher probes per example.
    mom: list[list[Any]] = [[None] * B for _ in range(L)]
    for b in range(B):
        omega = rademacher((n_probes, *in_shape), generator=generator, dtype=dtype, device=x.device)
        g_b = partial(g_all, model_of(b))
        Ys = vmap(lambda v, xb=x[b], g_b=g_b: jvp(g_b, (xb,), (v,))[1])(omega)
        for i in range(L):
            mom[i][b] = trace_moments(Ys[i], r=min(dims[i], n_in))
        del Ys

    iterator = slq_idx
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(slq_idx, desc="SLQ taps")
    slq: dict[int, list[Any]] = {}
    for i in iterator:
        r = min(dims[i], n_in)
        input_side = n_in <= dims[i]
        per_example = []
        for b in range(B):
            if mom[i][b].degenerate:
                per_example.append(None)  # §6: no Lanczos on a zero operator
                continue
            xb = x[b]
            jv, jtu = _jacobian_products(_tap_fn(model_of(b), mods, i), xb, dims[i], in_shape)

            if input_side:  # A v = Jᵀ(J v)

                def matvec(V: Tensor, jv=jv, jtu=jtu) -> Tensor:
                    return jtu(jv(V))

            else:  # B u = J(Jᵀ u)

                def matvec(U: Tensor, jv=jv, jtu=jtu) -> Tensor:
                    return jv(jtu(U))

            res = lanczos(
                matvec,
                r,
                steps=min(steps, r),
                n_probes=n_probes,
                generator=generator,
                dtype=dtype,
                device=x.device,
            )
            per_example.append((res, slq_moments(res, 3), ritz_bounds(res)))
        slq[i] = per_example

    out = []
    for i in range(L):
        r = min(dims[i], n_in)
        ms = mom[i]
        degenerate = np.array([t.degenerate for t in ms], dtype=bool)
        st: dict[str, np.ndarray] = {}
        se: dict[str, np.ndarray] = {}
        for _k, key in ((1, "m1"), (2, "m2"), (3, "m3")):
            st[key] = np.array([getattr(t, key) for t in ms])
            se[key] = np.array([getattr(t, f"{key}_se") for t in ms])
        var = np.array([t.var for t in ms])
        var_se = np.array([t.var_se for t in ms])
        var = np.where(degenerate, math.inf, var)
        var_se = np.where(degenerate, 0.0, np.where(np.isnan(var_se), math.inf, var_se))
        # The jackknife-corrected ratio can dip below 0 at small K; the true value cannot.
        st["var"], se["var"] = np.maximum(var, 0.0), var_se
        with np.errstate(divide="ignore", invalid="ignore"):
            st["pr"] = np.where(degenerate, 0.0, r / (1.0 + st["var"]))
            se["pr"] = np.where(degenerate, 0.0, r * var_se / (1.0 + st["var"]) ** 2)
        for key in ("m1", "m2", "m3"):
            st[key] = np.where(degenerate, 0.0, st[key])
            se[key] = np.where(degenerate, 0.0, se[key])
        st["var_raw"] = np.maximum(st["m2"] - st["m1"] ** 2, 0.0)
        traces = {
            "t1": np.array([t.t1 for t in ms]),
            "t2": np.array([t.t2 for t in ms]),
            "t3": np.array([t.t3 for t in ms]),
        }
        density = ritz = None
        n_products = n_probes * B  # moments: K jvps per example, shared by all taps
        if i in slq:
            node_st, node_se, density, ritz, prods = slq_statistics(
                slq[i],
                r=r,
                moments=st,
                n_probes=n_probes,
                steps=min(steps, r),
                band=band,
                eps=eps,
                D=dims[i],
                n_in=n_in,
            )
            st.update(node_st)
            se.update(node_se)
            n_products += prods
        out.append(
            TapSpectrum(
                name=names[i],
                depth=i + 1,
                D=dims[i],
                n_in=n_in,
                r=r,
                shape=shapes[i],
                method="lanczos",
                side="input" if n_in <= dims[i] else "output",
                stats=st,
                se=se,
                traces=traces,
                density=density,
                ritz=ritz,
                degenerate=degenerate,
                saturated=degenerate
                if ritz is None
                else degenerate | saturated_from_ritz(ritz, eps),
                gram_unreliable=np.zeros(len(ms), dtype=bool),
                n_products=n_products,
            )
        )
    return out
