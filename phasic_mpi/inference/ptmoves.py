"""Preconditioned local moves of parallel tempering and the warm-up adaptation
of their metric (``pt.mass_matrix = "diagonal"`` or ``"dense"``).

Each level j has a factor L_j with M_j^-1 = L_j L_j^T, an estimate of the
covariance of pi_{b_j} in z: ``diagonal`` stores the standard deviations
(N, d), ``dense`` the lower Cholesky factor (N, d, d). The moves run the
unit-metric MALA, random-walk or HMC kernels in whitened coordinates
y = L^-1 z: a y-step dy is the z-step L dy and the y-gradient is L^T grad_z.
The map is linear, so its Jacobian cancels in every Metropolis-Hastings
ratio, and neither L^-1 nor y itself is ever formed. log pi_b and grad_z come
from the slots' path (``slots.path``, inference/ptreference.py): prior L^b, or
q^(1-b) (prior L)^b on a variational leg. The metric is pooled per level over
all chains, so with ``stabilised`` it mixes a level's prior and variational legs. Products with L run as
elementwise multiply-adds over columns (no BLAS), so a row's bits do not
depend on how many rows a rank holds.

Warm-up: every slot accumulates (Welford) the mean and the (co)variance of
the states its level held after each scan of the round. At the end of warm-up
round r, for ``METRIC_FIRST_ROUND <= r <= warmup_rounds - 2``, the per-slot
accumulators are gathered, pooled over the chains in chain order (Chan et
al.'s formula, every rank alike) and shrunk towards the current metric with
weight ``SHRINK`` draws; the step sizes restart from a whitened default and
the Robbins-Monro clock restarts. The last warm-up round adapts the step
sizes for the final metric only.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from phasic_mpi.inference.counters import STEP_SHIFT, normals
from phasic_mpi.inference import ptcold
from phasic_mpi.inference.parallel import allgather_rows
from phasic_mpi.inference.ptscan import (STREAM_LOCAL, _metropolis, evaluate_block, global_map, hmc_move, local_move,
                                         slot_ids, slot_index)

__all__ = ["METRIC_FIRST_ROUND", "accumulate", "adapt_clock", "after_scan", "apply_factor", "apply_factor_t",
           "gathered", "initial_metric", "kernel", "local_phase", "metric_kind", "metric_layout", "metric_rounds",
           "moment_width", "preconditioned_hmc", "preconditioned_step", "restored", "round_end", "updated_metric",
           "whitened_step", "with_metric"]

METRIC_FIRST_ROUND = 3  # round 3 has 8 scans: the first with enough draws per level to pool
SHRINK = 5.0  # the previous metric counts as this many draws (Stan's regularisation, towards it)
MAX_DENSE_PARAMS = 64  # a dense metric costs d^2 per slot and scan
AUTO_DENSE_PARAMS = 16  # mass_matrix = "auto": dense from 2 parameters up to here


def metric_kind(setting: str, d: int) -> str:
    """The metric ``pt.mass_matrix`` means for d parameters (resolves ``auto``)."""
    if setting == "auto":  # with one parameter a metric is a scale, which the step size already adapts;
        # above AUTO_DENSE_PARAMS no gain has been measured (a short warm-up gives few draws per entry)
        return "dense" if 2 <= d <= AUTO_DENSE_PARAMS else "none"
    return setting


def metric_rounds(warmup_rounds: int) -> range:
    """Warm-up rounds after which the metric is re-estimated."""
    return range(METRIC_FIRST_ROUND, warmup_rounds - 1)


def adapt_clock(scan: int, warmup_rounds: int) -> int:
    """Scans since the step-size adaptation last restarted (at a metric update)."""
    done = [r for r in metric_rounds(warmup_rounds) if 2 ** (r + 1) - 1 <= scan]
    return scan - (2 ** (done[-1] + 1) - 1) if done else scan


def whitened_step(move: str, d: int) -> float:
    """Optimal-scaling step of a move on a standard normal in d dimensions
    (Roberts & Rosenthal 1998/2001; Beskos et al. 2013 for HMC)."""
    return {"mala": 1.65 * d ** (-1 / 6), "rwm": 2.38 / math.sqrt(d), "hmc": 1.0 * d ** (-1 / 4)}[move]


def initial_metric(kind: str, n_levels: int, d: int) -> np.ndarray:
    """The unit metric: ones (N, d) for ``diagonal``, identities (N, d, d) for ``dense``."""
    if kind == "dense":
        return np.tile(np.eye(d), (n_levels, 1, 1))
    return np.ones((n_levels, d))


def moment_width(kind: str, d: int) -> int:
    """Columns of a slot's accumulator: count, mean (d), M2 (d or d*d)."""
    return 1 + d + (d * d if kind == "dense" else d)


def apply_factor(factor: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rows L v for per-row factors ``factor`` ((m, d) diagonal or (m, d, d))."""
    if factor.ndim == 2:
        return factor * v
    out = factor[:, :, 0] * v[:, :1]
    for k in range(1, v.shape[1]):
        out = out + factor[:, :, k] * v[:, k:k + 1]
    return out


def apply_factor_t(factor: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Rows L^T g for per-row factors (see :func:`apply_factor`)."""
    if factor.ndim == 2:
        return factor * g
    out = factor[:, 0, :] * g[:, :1]
    for k in range(1, g.shape[1]):
        out = out + factor[:, k, :] * g[:, k:k + 1]
    return out


def preconditioned_step(slots: Any, beta: np.ndarray, ids: np.ndarray, ctx: Any, factor: np.ndarray) -> np.ndarray:
    """One MALA or random-walk move of every local slot in whitened coordinates, in place
    (:func:`phasic_mpi.inference.ptscan.local_move` with the slots' metric factors
    ``factor``). Returns the acceptance probabilities."""
    return local_move(slots, beta, ids, ctx, factor)


def preconditioned_hmc(slots: Any, beta: np.ndarray, ids: np.ndarray, ctx: Any, factor: np.ndarray) -> np.ndarray:
    """One HMC trajectory of every local slot with mass matrix (L L^T)^-1, in place.

    As :func:`phasic_mpi.inference.ptscan.hmc_move` in whitened coordinates:
    momentum p ~ N(0, I) in y, position steps L (eps p) in z, kicks with
    L^T grad_z. Returns the acceptance probabilities.
    """
    settings, layout = ctx.settings, ctx.layout
    eps, path = slots.step[:, None], slots.path  # log pi_b and its gradient (inference/ptreference.py)
    momentum0 = normals(settings.seed, STREAM_LOCAL, ids, slots.x.shape[1])
    logpi0 = path.logpi(beta, slots.loglik, slots.logprior, slots.x)
    x = slots.x
    momentum = momentum0 + 0.5 * eps * apply_factor_t(factor, path.grad(beta, slots.grad_ll, slots.grad_lp, x))
    finite = np.ones(len(x), dtype=bool)
    n_leap = settings.leapfrog_steps
    for s in range(n_leap):
        x = x + apply_factor(factor, eps * momentum)
        ll, lp, gll, glp = evaluated = evaluate_block(ctx.density, layout, x)
        logpi = path.logpi(beta, ll, lp, x)
        finite &= np.isfinite(logpi)
        kick = apply_factor_t(factor, path.grad(beta, gll, glp, x))
        momentum = momentum + (eps if s + 1 < n_leap else 0.5 * eps) * kick
    with np.errstate(invalid="ignore", over="ignore"):
        kinetic = global_map(lambda a: a.sum(axis=1), momentum0 * momentum0 - momentum * momentum,
                             layout.rows, layout.n)
        log_alpha = np.where(finite, logpi - logpi0 + 0.5 * kinetic, -math.inf)
    return _metropolis(slots, log_alpha, ids, ctx, x, evaluated)


def accumulate(moments: np.ndarray, x: np.ndarray, kind: str) -> np.ndarray:
    """Welford update of per-slot accumulators (count, mean, M2) with the rows of ``x``."""
    d = x.shape[1]
    count = moments[:, 0] + 1.0
    mean = moments[:, 1:1 + d]
    delta = x - mean
    new_mean = mean + delta / count[:, None]
    after = x - new_mean
    m2 = delta[:, :, None] * after[:, None, :] if kind == "dense" else delta * after
    out = np.empty_like(moments)
    out[:, 0], out[:, 1:1 + d] = count, new_mean
    out[:, 1 + d:] = moments[:, 1 + d:] + m2.reshape(len(x), -1)
    return out


def _pooled(moments: np.ndarray, chains: int, n_levels: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw counts (N,) and M2 sums (N, ...) of every level, pooled over the chains in order."""
    per = moments.reshape(chains, n_levels, -1)
    count, mean, m2 = per[0, :, 0].copy(), per[0, :, 1:1 + d].copy(), per[0, :, 1 + d:].copy()
    for c in range(1, chains):  # Chan, Golub & LeVeque: merge (count, mean, M2) pairwise
        n_b, mean_b, m2_b = per[c, :, 0], per[c, :, 1:1 + d], per[c, :, 1 + d:]
        total = count + n_b
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = mean_b - mean
            w = np.where(total > 0, count * n_b / total, 0.0)
            if m2.shape[1] == d:
                cross = delta * delta
            else:
                cross = (delta[:, :, None] * delta[:, None, :]).reshape(n_levels, -1)
            m2 = m2 + m2_b + w[:, None] * cross
            mean = mean + delta * np.where(total > 0, n_b / total, 0.0)[:, None]
        count = total
    return count, m2


def updated_metric(metric: np.ndarray, moments: np.ndarray, chains: int) -> np.ndarray:
    """The metric after a warm-up round from all slots' accumulators ((K*N, width), global order).

    Per level: the pooled sample covariance S of n draws, shrunk to
    (n S + SHRINK C) / (n + SHRINK) with C the current metric's covariance;
    a level whose result is not finite or not positive definite keeps its
    metric. Identical on every rank (same global arrays, same operations).
    """
    n_levels, d = metric.shape[0], metric.shape[1]
    count, m2 = _pooled(moments, chains, n_levels, d)
    new = metric.copy()
    for j in range(n_levels):
        if count[j] < 2:
            continue
        if metric.ndim == 2:
            current = metric[j] * metric[j]
            cov = (m2[j] + SHRINK * current) / (count[j] + SHRINK)  # M2 = n x the biased covariance
            if np.all(np.isfinite(cov)) and np.all(cov > 0):
                new[j] = np.sqrt(cov)
            continue
        current = metric[j] @ metric[j].T
        cov = (m2[j].reshape(d, d) + SHRINK * current) / (count[j] + SHRINK)
        cov = 0.5 * (cov + cov.T)
        if np.all(np.isfinite(cov)):
            try:
                new[j] = np.linalg.cholesky(cov)
            except np.linalg.LinAlgError:
                pass
    return new


# ------------------------------------------------ hooks of inference/pt.py
def round_end(metric: np.ndarray, moments: np.ndarray, slots: Any, ctx: Any,
              r: int) -> tuple[np.ndarray, np.ndarray]:
    """After warm-up round r: re-estimate the metric from every slot's draws if
    r is one of :func:`metric_rounds` (step sizes restart in the new
    whitened coordinates); the accumulators start afresh for the next round."""
    settings = ctx.settings
    if r in metric_rounds(settings.warmup_rounds):
        all_moments = allgather_rows(ctx.comm, ctx.layout, moments)
        metric = updated_metric(metric, all_moments, settings.chains)
        slots.step[:] = whitened_step(settings.local_move, metric.shape[1])
    return metric, np.zeros_like(moments)


class _Rows(NamedTuple):
    """The part of a BlockLayout the moves use: global size and the moved slots' global rows."""

    n: int
    rows: np.ndarray


class _Subset:
    """The arrays of some of a scan's slots (``pt._Slots``), moved like all of them, then written back."""

    FIELDS = ("x", "loglik", "logprior", "grad_ll", "grad_lp", "step")

    def __init__(self, slots: Any, index: np.ndarray) -> None:
        for name in self.FIELDS:
            setattr(self, name, getattr(slots, name)[index])
        self.path = slots.path.subset(index)

    def write_back(self, slots: Any, index: np.ndarray) -> None:
        for name in self.FIELDS:
            getattr(slots, name)[index] = getattr(self, name)


def local_phase(slots: Any, state: Any, ctx: Any) -> np.ndarray:
    """``local_steps`` moves of every local slot, then ``cold_steps`` more of
    the b = 1 slots (``auto``: :func:`phasic_mpi.inference.ptcold.moves`; in its
    probe scans ``slots.cold_trace`` keeps the b = 1 states after each of them);
    step sizes adapted in warm-up (Robbins-Monro on log step towards the target
    acceptance).

    Returns each slot's mean acceptance probability over the first
    ``local_steps`` moves. The cold-only moves evaluate the density at those
    slots' global rows only (one call per move, the other rows not computed).
    """
    settings, layout = ctx.settings, ctx.layout
    scan = state.iteration
    chain, level, level0 = slot_index(settings.replicas, layout.start, layout.stop)
    beta = state.betas[chain, level]
    ids = slot_ids(settings.replicas, layout.start, layout.stop).copy()
    ids[:, 2] = scan
    scan_accept = np.zeros(layout.local_count)
    warmup = (scan + 1).bit_length() - 1 < settings.warmup_rounds  # pt.round_of(scan) < warmup_rounds
    move, clock = kernel(state.metric, level, scan, settings)
    rate = 1.0 / (clock + 1) ** 0.6
    for s in range(settings.local_steps):
        ids[:, 3] = np.uint64(s) << np.uint64(STEP_SHIFT)
        accept = move(slots, beta, ids, ctx)
        scan_accept += accept / settings.local_steps
        if warmup:
            slots.step *= global_map(np.exp, (accept - settings.target) * rate, layout.rows, layout.n)
    n_cold = ptcold.moves(state, scan, settings)
    trace = [slots.x[level0].copy()] if ptcold.probing(scan, settings) else None  # auto's probe (ptcold)
    if n_cold and level0.size:
        cold, cold_ctx = _Subset(slots, level0), ctx._replace(layout=_Rows(layout.n, layout.start + level0))
        move = kernel(state.metric, level[level0], scan, settings)[0]
        cold_ids = ids[level0]
        for s in range(settings.local_steps, settings.local_steps + n_cold):
            cold_ids[:, 3] = np.uint64(s) << np.uint64(STEP_SHIFT)
            accept = move(cold, beta[level0], cold_ids, cold_ctx)
            if warmup:
                cold.step *= global_map(np.exp, (accept - settings.target) * rate, cold_ctx.layout.rows, layout.n)
            if trace is not None:
                trace.append(cold.x.copy())
        cold.write_back(slots, level0)
    slots.cold_trace = None if trace is None else np.stack(trace, axis=1)  # (m0, K + 1, d)
    return scan_accept


def kernel(metric: np.ndarray | None, level: np.ndarray, scan: int, settings: Any) -> tuple[Any, int]:
    """The local move ``move(slots, beta, ids, ctx)`` of this scan and the step-size adaptation's clock.

    Without a metric: the unit-metric moves of :mod:`~phasic_mpi.inference.ptscan`
    and the scan index; with one, the preconditioned moves on the slots'
    levels' factors and the scans since the metric last changed.
    """
    if metric is None:
        return (hmc_move if settings.local_move == "hmc" else local_move), scan
    factor = metric[level]
    pre = preconditioned_hmc if settings.local_move == "hmc" else preconditioned_step
    return (lambda slots, beta, ids, ctx: pre(slots, beta, ids, ctx, factor)), adapt_clock(scan, settings.warmup_rounds)


def after_scan(state: Any, slots: Any, ctx: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Metric and accumulators after scan ``state.iteration``: in warm-up, the
    slots' new states are accumulated and, at a round's end, :func:`round_end`."""
    settings, scan = ctx.settings, state.iteration
    r = (scan + 1).bit_length() - 1  # round of this scan (pt.round_of)
    if state.metric is None or r >= settings.warmup_rounds:
        return state.metric, state.moments
    moments = accumulate(state.moments, slots.x, "dense" if state.metric.ndim == 3 else "diagonal")
    if (scan + 2) & (scan + 1) == 0:  # the round ends after this scan (pt.round_ends_after)
        return round_end(state.metric, moments, slots, ctx, r)
    return state.metric, moments


def gathered(state: Any, ctx: Any) -> dict[str, np.ndarray]:
    """The metric and all slots' accumulators for a checkpoint (a collective; empty off rank 0)."""
    if state.metric is None:
        return {}
    moments = ctx.comm.gather_rows(ctx.layout, state.moments)
    return {"metric": state.metric, "moments": moments} if ctx.comm.rank == 0 else {}


def with_metric(state: Any, ctx: Any) -> Any:
    """``state`` with the unit metric and empty accumulators if ``mass_matrix`` asks for a metric."""
    kind, d = metric_kind(ctx.settings.mass_matrix, state.x.shape[1]), state.x.shape[1]
    if kind == "none":
        return state
    if kind == "dense" and d > MAX_DENSE_PARAMS:
        raise ValueError(f"pt.mass_matrix: 'dense' is for at most {MAX_DENSE_PARAMS} parameters "
                         f"(this model has {d}); use 'diagonal'")
    return state._replace(metric=initial_metric(kind, ctx.settings.replicas, d),
                          moments=np.zeros((len(state.x), moment_width(kind, d))))


def metric_layout(settings: Any, m: int, d: int) -> dict[str, tuple]:
    """Shapes and dtype kinds of :func:`gathered`'s arrays for ``m`` slots in all
    (``PTAlgorithm.checkpoint_layout``); none without a metric."""
    kind = metric_kind(settings.mass_matrix, d)
    if kind == "none":
        return {}
    factor = (settings.replicas, d, d) if kind == "dense" else (settings.replicas, d)
    return {"metric": (factor, "f"), "moments": ((m, moment_width(kind, d)), "f")}


def restored(arrays: dict[str, np.ndarray], rows: Any, ctx: Any) -> dict[str, Any]:
    """The metric fields of a PTState from checkpoint ``arrays`` (none without a metric)."""
    if metric_kind(ctx.settings.mass_matrix, ctx.density.n_params) == "none":
        return {}
    if "metric" not in arrays or "moments" not in arrays:
        raise ValueError("pt: the checkpoint holds no metric, but pt.mass_matrix = "
                         f"{ctx.settings.mass_matrix!r}: resume with the run's own settings")
    return {"metric": np.array(arrays["metric"]), "moments": np.array(arrays["moments"][rows])}
