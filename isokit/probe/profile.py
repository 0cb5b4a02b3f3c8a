"""Jacobian spectra across depth: :func:`profile`, :func:`block_profile` and :func:`signal`.

``profile(model, inputs)`` measures, for every example ``x_b`` of the batch and every tap ``l``,
the spectrum of ``J_l = ∂h_l/∂x`` (``probes.md`` §1), on a float64 eval-mode copy of the model with
clean global flags (:mod:`isokit.probe.hygiene`). The input is depth 0; taps are depths ``1..L``.

Methods:

- ``"exact"`` (:mod:`isokit.probe.exact`): one forward-mode sweep for all taps with streamed Grams
  (or the chained sweep), ``eigvalsh`` of the ``r×r`` Gram with an ``svdvals`` fallback.
- ``"lanczos"`` (matrix-free, :mod:`isokit.probe.moments` and :mod:`isokit.probe.lanczos`):
  unbiased ``m1..m3`` with jackknife standard errors at every tap from ``n_probes`` Rademacher
  tangents (one ``vmap``-ped ``jvp`` for all taps), plus stochastic Lanczos quadrature (density,
  node statistics) and Ritz bounds on ``σ_max``/``σ_min`` at the ``slq_taps``. The operator is the
  ``r``-side Gram: ``A v = Jᵀ(J v)`` when ``n_in ≤ D``, else ``B u = J(Jᵀ u)``, both from batched
  ``jvp``/``vjp``.
- ``"auto"``: exact when its memory estimate fits ``max_memory`` in one sweep (default: half the
  free RAM, or 80 % of the free GPU memory), else lanczos. ``meta["method_reason"]`` says why.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import jvp, vjp, vmap

from isokit.probe.exact import ProbeMemoryError, exact_spectra
from isokit.probe.hygiene import model_device, probe_context
from isokit.probe.result import Profile, Signal, TapSpectrum
from isokit.probe.stats import saturated_mask, stats
from isokit.probe.taps import TapError, TapSpec, resolve_taps, run_with_taps

__all__ = ["block_profile", "default_slq_taps", "profile", "signal"]

_METHODS = ("auto", "exact", "lanczos")


# ----------------------------------------------------------------------------------- inputs


def _check_inputs(inputs: Any) -> None:
    if not isinstance(inputs, Tensor):
        raise TypeError(
            f"inputs must be a torch.Tensor batch (B, ...), got {type(inputs).__name__}"
        )
    if not inputs.dtype.is_floating_point:
        raise TypeError(
            "inputs must be floating point (Jacobians need a continuous input), got "
            f"{inputs.dtype}; "
            "embed discrete tokens first and probe from the embeddings"
        )
    if inputs.ndim < 2:
        raise ValueError(
            "inputs must be a batch of shape (B, ...) with B ≥ 1, got shape "
            f"{tuple(inputs.shape)}; "
            "add the batch axis with inputs[None]"
        )
    if inputs.shape[0] == 0:
        raise ValueError("inputs is an empty batch (B = 0)")
    if not bool(torch.isfinite(inputs).all()):
        raise ValueError("inputs contain NaN or inf")


def _input_hint(model: nn.Module) -> str:
    shape = getattr(model, "input_shape", None)
    if shape is not None:
        return f"(B, {', '.join(map(str, shape))})"
    if hasattr(model, "seq_len") and hasattr(model, "d_model"):
        return f"(B, {model.seq_len}, {model.d_model})"
    for module in model.modules():
        if isinstance(module, nn.Linear):
            n = module.in_features
            return f"(B, {n}) (the first Linear takes {n} features)"
        if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            spatial = ", ".join("HWD"[: module.weight.ndim - 2])
            return (
                f"(B, {module.in_channels}, {spatial}) (the first convolution takes "
                f"{module.in_channels} channels)"
            )
    return "the shape the model's forward accepts"


def _dry_run(model: nn.Module, mods: list[nn.Module], x: Tensor, original: nn.Module):
    """One primal forward on one example; errors about shapes become a clear ValueError."""
    try:
        return run_with_taps(model, mods, x[:1])
    except TapError:
        raise
    except (RuntimeError, ValueError, IndexError) as err:
        raise ValueError(
            f"inputs of shape {tuple(x.shape)} do not fit {type(original).__name__}: expected "
            f"{_input_hint(original)}, got (B={x.shape[0]}, {', '.join(map(str, x.shape[1:]))}). "
            f"The dry forward pass failed with: {err}"
        ) from err


def _meta(model, inputs, names, *, method, reason, dtype, device, seed, meta, extra=None):
    import isokit

    out: dict[str, Any] = {
        "model": type(model).__name__,
        "scheme": None,
        "method": method,
        "method_reason": reason,
        "dtype": str(dtype).replace("torch.", ""),
        "device": str(device),
        "seed": seed,
        "torch": torch.__version__,
        "isokit": getattr(isokit, "__version__", "unknown"),
        "n_examples": int(inputs.shape[0]),
        "input_shape": list(inputs.shape[1:]),
        "n_in": int(math.prod(inputs.shape[1:])),
        "taps": list(names),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    if extra:
        out.update(extra)
    if meta:
        out.update(meta)
    return out


def _eps(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).eps)


def _exact_tap(t, depth: int, *, dtype, band: float, method_prefix: str = "exact") -> TapSpectrum:
    s = t.singular_values.numpy().astype(np.float64, copy=False)
    st = stats(s, n_rows=t.D, n_cols=t.n_in, band=band, eps=_eps(dtype), degenerate_var=math.inf)
    lam = s * s
    degenerate = s[:, 0] <= np.finfo(np.float64).tiny
    return TapSpectrum(
        name=t.name,
        depth=depth,
        D=t.D,
        n_in=t.n_in,
        r=t.r,
        shape=tuple(t.shape),
        method=f"{method_prefix}-{t.mode}",
        side=t.side,
        singular_values=s,
        stats=st,
        traces={"t1": lam.sum(1), "t2": (lam**2).sum(1), "t3": (lam**3).sum(1)},
        degenerate=degenerate,
        saturated=np.asarray(saturated_mask(s, eps=_eps(dtype)), dtype=bool).reshape(-1),
        gram_unreliable=t.gram_unreliable.numpy().astype(bool),
    )


# ----------------------------------------------------------------------------------- profile


def default_slq_taps(n_taps: int) -> list[int]:
    """Log-spaced depths plus the last one, as 0-based tap indices (``probes.md`` §4.3)."""
    if n_taps <= 0:
        return []
    k = min(n_taps, 1 + math.ceil(math.log2(n_taps)))
    depths = np.unique(np.round(np.geomspace(1, n_taps, k)).astype(int))
    return sorted({int(d) - 1 for d in depths} | {n_taps - 1})


def _resolve_slq(slq_taps, names: list[str]) -> list[int]:
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
                raise TapError(
                    f"slq tap {item!r} is not one of the probed taps: {', '.join(names)}"
                )
            out.add(names.index(item))
        else:
            depth = int(item)
            if not 1 <= depth <= len(names):
                raise ValueError(f"slq tap depth {depth} is outside 1..{len(names)}")
            out.add(depth - 1)
    return sorted(out)


def profile(
    model: nn.Module,
    inputs: Tensor,
    *,
    taps: TapSpec = "auto",
    method: str = "auto",
    dtype: torch.dtype = torch.float64,
    chunk_size: int | None = None,
    example_chunk: int | None = None,
    max_memory: int | None = None,
    progress: bool = False,
    n_probes: int = 16,
    lanczos_steps: int = 64,
    slq_taps: Sequence[str | int] | str | None = None,
    seed: int = 0,
    generator: torch.Generator | None = None,
    meta: dict[str, Any] | None = None,
    svd: bool = False,
    band: float = 0.1,
    with_signal: bool = False,
    with_blocks: bool = False,
) -> Profile:
    """Spectra of ``J_l = ∂h_l/∂x`` at every tap for every example of ``inputs`` (module doc).

    Args:
        model: any ``nn.Module``; it is never modified (a float64 eval copy is probed).
        inputs: a floating batch ``(B, ...)``; each example is probed separately.
        taps: ``"auto"``, a list of module names, or a predicate ``(name, module) -> bool``.
        method: ``"auto"``, ``"exact"`` or ``"lanczos"``.
        dtype: probe dtype (float64 by default; the model copy and inputs are converted).
        chunk_size: input basis vectors per exact ``jvp`` batch (default: chosen from memory).
        example_chunk: examples per exact sweep (default 1 unless the chunks are tiny; larger
            is faster on small layers and holds more memory).
        max_memory: byte budget of the exact tier (default: half the free RAM / 80 % of the GPU's
            free memory); an exact probe over budget raises ``MemoryError``
            (:class:`~isokit.probe.exact.ProbeMemoryError`).
        progress: tqdm progress bars.
        n_probes: Rademacher probes per example for the moments and for SLQ (≥ 4).
        lanczos_steps: Lanczos steps ``m`` per SLQ probe.
        slq_taps: taps (names or 1-based depths, ``"all"``, ``"none"``) that get SLQ densities
            and Ritz bounds; default log-spaced depths plus the last.
        seed: seed of the probe generator (ignored if ``generator`` is given; recorded).
        generator: an explicit ``torch.Generator`` on the model's device.
        meta: extra metadata, e.g. ``{"scheme": "idinit"}``; copied into ``Profile.meta``.
        svd: exact tier: ``svdvals`` of ``J`` for every tap instead of the Gram.
        band: half-width of the ``near`` band (``[1/(1+band), 1+band]``).
        with_signal: also compute :func:`signal` into ``Profile.signal``.
        with_blocks: also compute :func:`block_profile` into ``Profile.blocks``.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {', '.join(_METHODS)}, got {method!r}")
    _check_inputs(inputs)
    if n_probes < 4:
        raise ValueError(f"n_probes must be at least 4 (the third moment needs it), got {n_probes}")
    names = resolve_taps(model, taps)
    if generator is not None:
        seed = int(generator.initial_seed())
    with probe_context(model, dtype=dtype) as m:
        device = model_device(m)
        x = inputs.detach().to(device=device, dtype=dtype)
        mods = [m.get_submodule(n) for n in names]
        dry = _dry_run(m, mods, x, model)
        dims = [h.numel() for h in dry.outputs]
        extra: dict[str, Any] = {}
        result_taps: list[TapSpectrum]
        chosen, reason = method, "requested"
        ex = None
        if method in ("auto", "exact"):
            try:
                ex = exact_spectra(
                    m,
                    x,
                    names,
                    chunk_size=chunk_size,
                    max_memory=max_memory,
                    svd=svd,
                    progress=progress,
                    allow_groups=(method == "exact"),
                    example_chunk=example_chunk,
                )
                chosen = "exact"
                reason = ("requested; " if method == "exact" else "auto: ") + ex.plan.reason
            except ProbeMemoryError as err:
                if method == "exact":
                    raise
                chosen, reason = "lanczos", f"auto: exact does not fit ({err})"
        if ex is not None:
            result_taps = [
                _exact_tap(t, i + 1, dtype=dtype, band=band) for i, t in enumerate(ex.taps)
            ]
            for t in result_taps:
                t.warnings.extend(ex.warnings)
            extra["exact"] = {
                "strategy": ex.plan.strategy,
                "chunk_size": ex.plan.chunk_size,
                "example_chunk": ex.plan.example_chunk,
                "n_sweeps": ex.n_sweeps,
                "memory_estimate": ex.plan.bytes,
                "max_memory": ex.plan.max_memory,
                "reverse_taps": [names[i] for i in ex.plan.reverse],
            }
        else:
            if generator is None:
                generator = torch.Generator(device=device).manual_seed(seed)
            slq_idx = _resolve_slq(slq_taps, names)
            result_taps = _lanczos_taps(
                m,
                x,
                names,
                mods,
                dims,
                [tuple(h.shape) for h in dry.outputs],
                n_probes=n_probes,
                steps=lanczos_steps,
                slq_idx=slq_idx,
                generator=generator,
                band=band,
                progress=progress,
            )
            extra["lanczos"] = {
                "n_probes": n_probes,
                "steps": lanczos_steps,
                "slq_taps": [names[i] for i in slq_idx],
            }
    prof = Profile(
        taps=result_taps,
        meta=_meta(
            model,
            inputs,
            names,
            method=chosen,
            reason=reason,
            dtype=dtype,
            device=device,
            seed=seed,
            meta=meta,
            extra=extra,
        ),
    )
    if with_signal:
        prof.signal = signal(model, inputs, taps=names, seed=seed, dtype=dtype)
    if with_blocks:
        prof.blocks = block_profile(
            model,
            inputs,
            taps=names,
            dtype=dtype,
            chunk_size=chunk_size,
            max_memory=max_memory,
            band=band,
            svd=svd,
        ).taps
    return prof


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
    double-vjp trick (``probes.md`` §4.1): ``u ↦ Jᵀu`` is linear, so its own ``vjp`` applied to
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


def _lanczos_taps(
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
    from isokit.probe.lanczos import lanczos, ritz_bounds, slq_moments
    from isokit.probe.moments import rademacher, trace_moments

    B = x.shape[0]
    in_shape = tuple(x.shape[1:])
    n_in = int(math.prod(in_shape))
    L = len(names)
    last = L - 1
    dtype = x.dtype
    eps = _eps(dtype)

    def g_all(xx: Tensor) -> tuple[Tensor, ...]:
        call = run_with_taps(m, mods, xx.unsqueeze(0), stop_after=last)
        return tuple(h.reshape(-1) for h in call.outputs)

    # Moments at every tap: one vmapped jvp of K Rademacher probes per example.
    mom: list[list[Any]] = [[None] * B for _ in range(L)]
    for b in range(B):
        omega = rademacher((n_probes, *in_shape), generator=generator, dtype=dtype, device=x.device)
        Ys = vmap(lambda v, xb=x[b]: jvp(g_all, (xb,), (v,))[1])(omega)
        for i in range(L):
            mom[i][b] = trace_moments(Ys[i], r=min(dims[i], n_in))
        del Ys

    iterator = slq_idx
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(slq_idx, desc="SLQ taps")
    slq: dict[int, list[Any]] = {}
    for i in iterator:
        fn = _tap_fn(m, mods, i)
        r = min(dims[i], n_in)
        input_side = n_in <= dims[i]
        per_example = []
        for b in range(B):
            if mom[i][b].degenerate:
                per_example.append(None)  # §6: no Lanczos on a zero operator
                continue
            xb = x[b]
            jv, jtu = _jacobian_products(fn, xb, dims[i], in_shape)

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
        var = np.array([t.sfvar for t in ms])
        var_se = np.array([t.sfvar_se for t in ms])
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
        traces = {
            "t1": np.array([t.t1 for t in ms]),
            "t2": np.array([t.t2 for t in ms]),
            "t3": np.array([t.t3 for t in ms]),
        }
        density = ritz = None
        n_products = n_probes * B  # moments: K jvps per example, shared by all taps
        if i in slq:
            node_st, node_se, density, ritz, prods = _slq_stats(
                slq[i],
                r=r,
                m1=st["m1"],
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
                else degenerate | (ritz["sigma_min_upper"] < 1e3 * eps * ritz["sigma_max_lower"]),
                gram_unreliable=np.zeros(len(ms), dtype=bool),
                n_products=n_products,
            )
        )
    return out


def _slq_stats(per_example, *, r, m1, n_probes, steps, band, eps, D, n_in):
    """Node statistics, their SEs across probes, the quadratures and the Ritz bounds."""
    B = len(per_example)
    names = (
        "gap",
        "mean_log_s",
        "near",
        "near_rel",
        "erank",
        "zero_frac",
        "sigma_max",
        "sigma_min",
        "cond",
        "lmax_over_m1",
    )
    st = {k: np.zeros(B) for k in names}
    se = {k: np.zeros(B) for k in ("gap", "mean_log_s", "near", "near_rel", "zero_frac")}
    nodes = np.zeros((B, n_probes, steps))
    weights = np.zeros((B, n_probes, steps))
    ritz = {
        k: np.zeros(B)
        for k in ("sigma_max_lower", "sigma_min_upper", "residual_max", "residual_min")
    }
    ritz["converged"] = np.zeros(B, dtype=bool)
    lim = math.log1p(band)
    prods = 0
    for b, item in enumerate(per_example):
        if item is None:  # degenerate example: the documented zero-spectrum values
            st["gap"][b] = st["cond"][b] = math.inf
            st["mean_log_s"][b] = -math.inf
            st["zero_frac"][b] = 1.0
            continue
        res, _, rb = item
        prods += res.n_products
        theta = res.nodes.clamp_min(0).numpy()
        w = res.weights.numpy()
        nodes[b, :, : theta.shape[1]] = theta
        weights[b, :, : w.shape[1]] = w
        mask = res.mask.numpy()
        tmax = float(theta[mask].max())
        zero = (theta <= max(D, n_in) * eps * tmax) & mask  # τ of the stats module, on λ = s²
        zero = zero | ((theta <= 0) & mask)
        with np.errstate(divide="ignore"):
            log_s = np.where(mask & ~zero, 0.5 * np.log(np.where(theta > 0, theta, 1.0)), 0.0)
        zmass = (w * zero).sum(1)  # per probe
        mlog = (w * log_s).sum(1)
        m1_q = (w * theta).sum(1)
        near = (w * ((np.abs(log_s) <= lim) & mask & ~zero)).sum(1)
        rel = log_s - 0.5 * np.log(np.where(m1_q > 0, m1_q, 1.0))[:, None]
        near_rel = (w * ((np.abs(rel) <= lim) & mask & ~zero)).sum(1)
        any_zero = bool((zmass > 0).any())

        def mean_se(v, n=n_probes):
            return float(v.mean()), (float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else math.inf)

        st["zero_frac"][b], se["zero_frac"][b] = mean_se(zmass)
        st["near"][b], se["near"][b] = mean_se(near)
        st["near_rel"][b], se["near_rel"][b] = mean_se(near_rel)
        if any_zero:
            st["mean_log_s"][b], st["gap"][b] = -math.inf, math.inf
            se["mean_log_s"][b] = se["gap"][b] = 0.0
        else:
            st["mean_log_s"][b], se["mean_log_s"][b] = mean_se(mlog)
            gap_p = np.log(m1_q) - 2 * mlog
            g = float(math.log(m1_q.mean()) - 2 * mlog.mean())
            st["gap"][b], se["gap"][b] = max(g, 0.0), mean_se(gap_p)[1]
        # Effective rank from the pooled quadrature: p_i ∝ s_i over r values.
        s_nodes = np.sqrt(theta) * mask
        es = float((w * s_nodes).sum() / n_probes)
        with np.errstate(divide="ignore", invalid="ignore"):
            eslogs = float(
                (w * np.where(s_nodes > 0, s_nodes * np.log(s_nodes), 0.0)).sum() / n_probes
            )
        st["erank"][b] = math.exp(math.log(r * es) - eslogs / es) if es > 0 else 0.0
        st["sigma_max"][b] = rb.sigma_max_lower
        st["sigma_min"][b] = rb.sigma_min_upper
        thr = max(D, n_in) * eps * rb.sigma_max_lower
        st["cond"][b] = (
            math.inf if rb.sigma_min_upper <= thr else rb.sigma_max_lower / rb.sigma_min_upper
        )
        st["lmax_over_m1"][b] = rb.theta_max / m1[b] if m1[b] > 0 else 0.0
        ritz["sigma_max_lower"][b] = rb.sigma_max_lower
        ritz["sigma_min_upper"][b] = rb.sigma_min_upper
        ritz["residual_max"][b] = rb.residual_max
        ritz["residual_min"][b] = rb.residual_min
        ritz["converged"][b] = rb.converged
    return st, se, {"nodes": nodes, "weights": weights}, ritz, prods


# ----------------------------------------------------------------------------------- blocks


class _Bound(nn.Module):
    """``u ↦ inner(u, *args, **kwargs)`` with the other arguments of the captured call."""

    def __init__(self, inner: nn.Module, args: tuple, kwargs: dict) -> None:
        super().__init__()
        self.inner = inner
        self._args, self._kwargs = args, kwargs

    def forward(self, u: Tensor) -> Any:
        return self.inner(u, *self._args, **self._kwargs)


def block_profile(
    model: nn.Module,
    inputs: Tensor,
    *,
    taps: TapSpec = "auto",
    dtype: torch.dtype = torch.float64,
    chunk_size: int | None = None,
    max_memory: int | None = None,
    svd: bool = False,
    band: float = 0.1,
    meta: dict[str, Any] | None = None,
    progress: bool = False,
) -> Profile:
    """Exact spectra of each tap module's local Jacobian ``∂h_l/∂u_l`` at its actual input.

    ``u_l`` is the first positional input of tap module ``l`` in a forward pass of the batch
    (captured with a hook; for the first tap it is whatever the model feeds it, e.g. the input
    itself). Each module is then differentiated alone (forward or reverse mode by dimensions,
    :mod:`isokit.probe.exact`), its other arguments as captured. ``n_in`` of each
    :class:`TapSpectrum` is ``d_l`` and ``r = min(D_l, d_l)``. On chains ``J_l = J_l^loc J_{l−1}``;
    with skips across tap boundaries the local spectra do not compose (``probes.md`` §1).
    """
    _check_inputs(inputs)
    names = resolve_taps(model, taps)
    with probe_context(model, dtype=dtype) as m:
        device = model_device(m)
        x = inputs.detach().to(device=device, dtype=dtype)
        mods = [m.get_submodule(n) for n in names]
        _dry_run(m, mods, x, model)
        call = run_with_taps(m, mods, x, capture_inputs=True)
        out = []
        reasons = []
        for i, (name, mod) in enumerate(zip(names, mods, strict=True)):
            u = call.inputs[i]
            args, kwargs = call.args[i]
            if u.shape[0] != x.shape[0]:
                raise TapError(
                    f"the input of tap {name!r} has no leading batch axis (shape "
                    f"{tuple(u.shape)}); block_profile needs per-example block inputs"
                )
            bound = _Bound(mod, args, kwargs)
            try:
                ex = exact_spectra(
                    bound,
                    u.detach(),
                    ["inner"],
                    chunk_size=chunk_size,
                    max_memory=max_memory,
                    svd=svd,
                    progress=progress,
                )
            except RuntimeError as err:
                raise TapError(
                    f"tap {name!r} cannot be differentiated alone on one example of its "
                    f"captured input (shape {tuple(u.shape[1:])}): {err}"
                ) from err
            tap = _exact_tap(ex.taps[0], i + 1, dtype=dtype, band=band, method_prefix="local")
            tap.name = name
            tap.warnings.extend(ex.warnings)
            out.append(tap)
            reasons.append(ex.plan.strategy)
    prof_meta = _meta(
        model,
        inputs,
        names,
        method="exact",
        reason="local Jacobians are always exact",
        dtype=dtype,
        device=device,
        seed=None,
        meta=meta,
        extra={"kind": "local"},
    )
    return Profile(taps=out, meta=prof_meta)


# ----------------------------------------------------------------------------------- signal


def signal(
    model: nn.Module,
    inputs: Tensor,
    *,
    taps: TapSpec = "auto",
    loss: Callable[[Tensor], Tensor] | None = None,
    generator: torch.Generator | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> Signal:
    """Forward signal ``q_l``, ``c_l`` and gradient norms ``g_l`` at every tap (``probes.md`` §5).

    One forward and one backward pass of the batch on the eval-mode probe copy. Zero tensors
    ``e_l`` are added to the tap outputs in the hooks and the loss is differentiated with respect
    to them, so ``∂ℓ_b/∂h_l^(b)`` comes out for all taps at once.

    Args:
        loss: ``output -> per-example losses [B]`` (summed) or their scalar sum. Default:
            ``ℓ_b = ⟨u_b, f(x_b)⟩`` with ``u_b ~ N(0, I)`` drawn from ``generator`` (or ``seed``),
            so that ``E g_l = ‖∂f/∂h_l‖_F²``.
    """
    _check_inputs(inputs)
    names = resolve_taps(model, taps)
    if generator is not None:
        seed = int(generator.initial_seed())
    with probe_context(model, dtype=dtype) as m:
        device = model_device(m)
        x = inputs.detach().to(device=device, dtype=dtype)
        mods = [m.get_submodule(n) for n in names]
        dry = _dry_run(m, mods, x, model)
        del dry
        shapes_call = run_with_taps(m, mods, x)
        B = x.shape[0]
        with torch.enable_grad():
            zeros = [torch.zeros_like(h, requires_grad=True) for h in shapes_call.outputs]
            del shapes_call
            for p in m.parameters():
                p.requires_grad_(True)
            with _segment_recorder(m, mods) as segments:
                call = run_with_taps(m, mods, x, add=dict(enumerate(zeros)))
            output = call.output
            if not isinstance(output, Tensor):
                raise TypeError(f"signal needs a tensor model output, got {type(output).__name__}")
            if loss is None:
                gen = generator or torch.Generator(device=device).manual_seed(seed)
                u = torch.randn(output.shape, generator=gen, dtype=output.dtype, device=device)
                total = (u * output).sum()
                loss_kind = "projection"
            else:
                value = loss(output)
                total = value.sum()
                loss_kind = "custom"
            tap_params = [
                [p for mod in segments.get(i, []) for p in mod.parameters(recurse=False)]
                for i in range(len(mods))
            ]
            unique = list({id(p): p for group in tap_params for p in group}.values())
            grads = torch.autograd.grad(total, zeros + unique, allow_unused=True)
        g_h = grads[: len(zeros)]
        g_by_id = {id(p): gp for p, gp in zip(unique, grads[len(zeros) :], strict=True)}
        hs = [h.detach() for h in call.outputs]
        q, q_std, cos, dropped, g, g_std, gpu, pg, dims = [], [], [], [], [], [], [], [], []
        for h, gh, group in zip(hs, g_h, tap_params, strict=True):
            H = h.reshape(B, -1).to(torch.float64)
            D = H.shape[1]
            dims.append(D)
            per = (H * H).sum(1) / D
            q.append(float(per.mean()))
            q_std.append(float(per.std(unbiased=False)))
            c, n_drop = _mean_cosine(H)
            cos.append(c)
            dropped.append(n_drop)
            G = torch.zeros_like(H) if gh is None else gh.reshape(B, -1).to(torch.float64)
            per_g = (G * G).sum(1)
            g.append(float(per_g.mean()))
            g_std.append(float(per_g.std(unbiased=False)))
            gpu.append(float(per_g.mean()) / D)
            sq = 0.0
            for p in group:
                gp = g_by_id[id(p)]
                if gp is not None:
                    sq += float((gp.to(torch.float64) / B).pow(2).sum())
            pg.append(math.sqrt(sq))
        X = x.reshape(B, -1).to(torch.float64)
        input_q = float(((X * X).sum(1) / X.shape[1]).mean())
        input_cos, _ = _mean_cosine(X)
    return Signal(
        taps=list(names),
        D=dims,
        q=np.array(q),
        q_std=np.array(q_std),
        cos=np.array(cos),
        cos_dropped=np.array(dropped, dtype=np.int64),
        grad=np.array(g),
        grad_std=np.array(g_std),
        grad_per_unit=np.array(gpu),
        param_grad=np.array(pg),
        input_q=input_q,
        input_cos=input_cos,
        loss=loss_kind,
        seed=seed if loss is None else None,
        n_examples=B,
    )


@contextlib.contextmanager
def _segment_recorder(model: nn.Module, mods: list[nn.Module]):
    """Map tap index ``l`` to the parametric modules that run between taps ``l−1`` and ``l``.

    A module belongs to the segment of the first tap that has not finished when the module
    finishes (so a block's own layers belong to the block's tap). Modules after the last tap
    are left out; a module that runs twice keeps its first segment.
    """
    fired = [0]
    segments: dict[int, list[nn.Module]] = {}
    seen: set[int] = set()
    handles = []

    def on_tap(module, args, out):
        fired[0] += 1

    def on_param(module, args, out):
        if id(module) not in seen:
            seen.add(id(module))
            segments.setdefault(fired[0], []).append(module)

    tap_ids = {id(mod) for mod in mods}
    try:
        for module in model.modules():
            if id(module) not in tap_ids and any(True for _ in module.parameters(recurse=False)):
                handles.append(module.register_forward_hook(on_param))
        for mod in mods:
            if any(True for _ in mod.parameters(recurse=False)):
                handles.append(mod.register_forward_hook(on_param))
            handles.append(mod.register_forward_hook(on_tap))
        yield segments
    finally:
        for handle in handles:
            handle.remove()


def _mean_cosine(H: Tensor) -> tuple[float, int]:
    """Mean pairwise uncentered cosine via the row-normalized Gram, zero rows dropped."""
    norms = H.norm(dim=1)
    keep = norms > 0
    n_drop = int((~keep).sum())
    Hk = H[keep] / norms[keep][:, None]
    n = Hk.shape[0]
    if n < 2:
        return math.nan, n_drop
    G = Hk @ Hk.T
    return float((G.sum() - G.trace()) / (n * (n - 1))), n_drop
