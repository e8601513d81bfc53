"""The vectorised arithmetic and local moves of a parallel-tempering scan
(:mod:`phasic_mpi.inference.pt`).

A scan works on all of a rank's slots at once. The MALA and random-walk
moves' proposal and accept/reject and the swap decisions run in libphase
(``ptstep.c``): one C call per half-move for every slot, each row computed by
the same code, so a row's bits never depend on how many rows a rank holds.
What stays in numpy and feeds a decision (HMC's exp and row sums, the
step-size adaptation, the density itself) runs on an array of the global
shape, K*N rows, with this rank's rows written in (:func:`global_map`,
:func:`evaluate_block`): numpy may round an element differently depending on
the array's shape, so this keeps every rank layout bitwise equal."""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import numpy as np

from phasic_mpi._libphase import ffi, lib
from phasic_mpi.model.native import c_buffer
from phasic_mpi.inference.counters import counter_ids, normals, uniforms
from phasic_mpi.inference.parallel import BlockLayout

__all__ = ["Pairs", "evaluate_block", "global_map", "hmc_move", "local_move", "pairs_of",
           "round_trips", "slot_ids", "slot_index", "swap_phase_arrays", "tempered"]

# MALA's drift (h^2/2) L^T grad is truncated to DRIFT_CAP noise norms h sqrt(d) (MALTA,
# Roberts & Tweedie 1996; exact, as both directions truncate alike). Far from equilibrium
# (scan 0, a metric update) the drift reached 29 x that on the hypoexponential target and
# proposed rates of 1e7, each costing the likelihood 0.2-0.4 s to reject; at stationarity
# it stayed below 3.2 in all 14,336 sampling rows of rabbits(2) and the hypoexponential.
DRIFT_CAP = 4.0

# purposes of the counter-based draws (the second key word; see inference/counters.py)
STREAM_INIT, STREAM_LOCAL, STREAM_SWAP, STREAM_PHASE, STREAM_ACCEPT = 11, 12, 13, 14, 15


def tempered(beta: np.ndarray, loglik: np.ndarray) -> np.ndarray:
    """beta * loglik, 0 where beta = 0 (the prior) even where loglik = -inf."""
    return beta * np.where(beta == 0.0, 0.0, loglik)


@functools.lru_cache(maxsize=16)
def slot_index(n_levels: int, start: int, stop: int) -> tuple[np.ndarray, ...]:
    """Chains and levels of the slots [start, stop), and the local indices of level 0."""
    chain, level = np.divmod(np.arange(start, stop), n_levels)
    out = chain, level, np.flatnonzero(level == 0)
    for arr in out:
        arr.flags.writeable = False  # shared by every scan
    return out


@functools.lru_cache(maxsize=16)
def slot_ids(n_levels: int, start: int, stop: int) -> np.ndarray:
    """Counter ids (chain, level, 0, 0) of the slots [start, stop) (read-only: copy, then set scan and step)."""
    chain, level = slot_index(n_levels, start, stop)[:2]
    ids = counter_ids(chain, level)
    ids.flags.writeable = False
    return ids


def global_map(fn: Any, values: np.ndarray, index: Any, n: int) -> np.ndarray:
    """``fn(values)`` computed on an (n, ...) array holding ``values`` at ``index``."""
    if len(values) == n:  # values already have the global shape (one rank holds every row)
        return fn(np.ascontiguousarray(values))
    full = np.zeros((n,) + values.shape[1:])
    full[index] = values
    return fn(full)[index]


def evaluate_block(density: Any, layout: BlockLayout, z: np.ndarray) -> tuple[np.ndarray, ...]:
    """loglik, logprior and their gradients at this rank's points ``z`` (one call).

    The density sees the global (K*N, d) shape with ``rows=`` restricting the
    work (the other rows repeat ours, so they are as valid as ours). A density
    that ignores ``rows`` and returns every row is cut to ours.
    """
    if len(z) == layout.n:
        ev = density.evaluate(z)
    else:
        full = np.resize(z, (layout.n, z.shape[1]))
        full[layout.rows] = z
        ev = density.evaluate(full, rows=layout.rows)
    parts = (ev.loglik, ev.logprior, ev.loglik_grad, ev.logprior_grad)
    if len(ev.loglik) != len(z):
        parts = tuple(p[layout.rows] for p in parts)
    return tuple(np.asarray(p, dtype=np.float64) for p in parts)


class Pairs(NamedTuple):
    """A swap phase's pairs (g, g+1) that touch a rank's slots [start, stop)."""

    g: np.ndarray  # lower slots, increasing (int64)
    low_local: np.ndarray  # bool: the lower end is here (the pair's statistics live with it)
    rows: tuple[np.ndarray, np.ndarray]  # local rows of the lower and upper ends, -1 on another rank (int64)
    ends: tuple[np.ndarray, np.ndarray]  # local indices of both ends (clipped for cross pairs)
    cross: tuple[int, ...]  # positions of the pairs with one end on another rank (at most 2)


@functools.lru_cache(maxsize=64)
def pairs_of(n_levels: int, n_slots: int, start: int, stop: int, parities: tuple[int, ...]) -> Pairs:
    """The pairs of a swap phase touching slots [start, stop) whose lower level has
    its chain's parity (``parities`` per chain, from the first chain touched)."""
    g = np.arange(max(start - 1, 0), min(stop, n_slots - 1), dtype=np.int64)
    chain, level = np.divmod(g, n_levels)
    parity = np.asarray(parities)[chain - chain[0]] if g.size else chain
    g = g[(level != n_levels - 1) & (level % 2 == parity)]  # level N-1 pairs with the next chain
    low_local, high_local = g >= start, g + 1 < stop
    i_low = g - start
    rows = np.where(low_local, i_low, -1), np.where(high_local, i_low + 1, -1)
    ends = np.clip(i_low, 0, stop - start - 1), np.clip(i_low + 1, 0, stop - start - 1)
    out = Pairs(g, low_local, rows, ends, tuple(int(k) for k in np.flatnonzero(~(low_local & high_local))))
    for arr in (g, low_local, *rows, *ends):
        arr.flags.writeable = False  # shared by every scan of the same parities
    return out


def _inplace(a: np.ndarray, dtype: type) -> Any:
    """A C pointer to an array libphase writes in place (it must not be a copy)."""
    if a.dtype != dtype or not a.flags.c_contiguous or not a.flags.writeable:
        raise TypeError(f"expected a writeable C-contiguous {np.dtype(dtype)} array, got {a.dtype}")
    return ffi.from_buffer("int64_t[]" if dtype is np.int64 else "double[]", a)


def swap_phase_arrays(slots: Any, pairs: Pairs, betas: np.ndarray, scan: int, v_low: np.ndarray,
                      v_high: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The decisions of a swap phase's pairs, applied to ``slots`` in place (``phase_pt_swap_phase``).

    A pair swaps iff its uniform, keyed by (chain, level, scan, 0) under
    ``STREAM_SWAP``, is below alpha = exp(``pt.swap_log_accept``) of its
    levels' inverse temperatures (``betas`` (K, N)) and swap potentials
    ``v_low``, ``v_high``; pairs with both ends here exchange their states,
    every end here records the decision and the lower end the statistics.
    Both ends of a cross-rank pair compute the same bits. Returns alpha and
    the decisions (the caller takes a cross-rank pair's received state).
    """
    n, (m, d) = len(pairs.g), slots.x.shape
    alpha, accepted = np.empty(n), np.empty(n, dtype=np.uint8)
    v_low, v_high = (np.ascontiguousarray(v, dtype=np.float64) for v in (v_low, v_high))
    fields = (_inplace(getattr(slots, f), np.float64) for f in ("x", "loglik", "logprior", "grad_ll", "grad_lp"))
    rows = (c_buffer(a, "int64_t[]") for a in (pairs.g, pairs.rows[0], pairs.rows[1]))
    _check(lib.phase_pt_swap_phase(
        n, *rows, c_buffer(np.ascontiguousarray(betas, dtype=np.float64)), betas.shape[1], scan,
        c_buffer(v_low), c_buffer(v_high), seed, STREAM_SWAP, m, d, *fields,
        _inplace(slots.label, np.int64), _inplace(slots.last_end, np.int64),
        _inplace(slots.decisions, np.float64), _inplace(slots.stats, np.float64), c_buffer(alpha),
        c_buffer(accepted, "uint8_t[]")))
    return alpha, accepted.view(bool)


def round_trips(slots: Any, start: int, n_levels: int) -> None:
    """Round trips after a swap phase, in place (``phase_pt_round_trips``): a replica back
    at b = 1 after visiting b = 0 counts one, credited to its level-0 slot."""
    _check(lib.phase_pt_round_trips(len(slots.last_end), start, n_levels, _inplace(slots.last_end, np.int64),
                                    _inplace(slots.stats, np.float64)))


def _metropolis(slots: Any, log_alpha: np.ndarray, ids: np.ndarray, ctx: Any,
                proposal: np.ndarray, evaluated: tuple[np.ndarray, ...]) -> np.ndarray:
    """Accept each slot's proposal with probability min(1, exp(log_alpha)), in place.

    ``evaluated`` is (loglik, logprior, grad_ll, grad_lp) at the proposals.
    Returns the acceptance probabilities (NaN ratios count as 0).
    """
    layout = ctx.layout
    with np.errstate(invalid="ignore"):
        accept_prob = global_map(np.exp, np.minimum(0.0, log_alpha), layout.rows, layout.n)
    accept_prob[np.isnan(accept_prob)] = 0.0
    take = uniforms(ctx.settings.seed, STREAM_ACCEPT, ids)[:, 0] < accept_prob
    rows = take[:, None]
    # copyto with a mask: one call per field instead of a masked read and a masked write
    for field, value, where in (("x", proposal, rows), ("loglik", evaluated[0], take),
                                ("logprior", evaluated[1], take), ("grad_ll", evaluated[2], rows),
                                ("grad_lp", evaluated[3], rows)):
        np.copyto(getattr(slots, field), value, where=where)
    return accept_prob




def _check(status: int) -> None:
    if status != lib.PHASE_OK:
        raise ValueError(ffi.string(lib.phase_last_error()).decode())


def _metric_code(factor: np.ndarray | None) -> int:
    if factor is None:
        return lib.PHASE_PT_UNIT
    return lib.PHASE_PT_DIAGONAL if factor.ndim == 2 else lib.PHASE_PT_DENSE


def local_move(slots: Any, beta: np.ndarray, ids: np.ndarray, ctx: Any, factor: np.ndarray | None = None) -> np.ndarray:
    """One MALA or random-walk Metropolis move of every local slot, in place.

    ``slots`` is the scan's working copy (``pt._Slots``), ``ctx`` the
    ``pt.PTContext``; ``beta`` (m,) are the slots' inverse temperatures and
    ``ids`` (m, 4) their counter ids for this step; ``factor`` the slots'
    metric factors (:mod:`~phasic_mpi.inference.ptmoves`; None: unit metric).
    MALA's drift is truncated to ``DRIFT_CAP`` noise norms.
    The proposal and the accept/reject run in libphase (``phase_pt_propose``,
    ``phase_pt_accept``: every row by the same code, so any rank layout
    gives the same bits); log pi_b and its gradient come from the slots'
    path (``slots.path``, inference/ptreference.py). Returns the acceptance
    probabilities (m,).
    """
    seed, path = ctx.settings.seed, slots.path
    mala = ctx.settings.local_move == "mala"
    m, d = slots.x.shape
    metric = _metric_code(factor)
    factor = None if factor is None else np.ascontiguousarray(factor, dtype=np.float64)
    ids = np.ascontiguousarray(ids, dtype=np.uint64)
    grad = np.ascontiguousarray(path.grad(beta, slots.grad_ll, slots.grad_lp, slots.x)) if mala else None
    jump, move, proposal = np.empty((3, m, d))
    ids_c = c_buffer(ids, "uint64_t[]")
    _check(lib.phase_pt_propose(m, d, mala, DRIFT_CAP, metric, *map(c_buffer, (factor, slots.step, slots.x, grad)),
                                seed, STREAM_LOCAL, ids_c, *map(c_buffer, (jump, move, proposal))))
    ll2, lp2, gll2, glp2 = (np.ascontiguousarray(a) for a in evaluate_block(ctx.density, ctx.layout, proposal))
    logpi = np.ascontiguousarray(path.logpi(beta, slots.loglik, slots.logprior, slots.x), dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        logpi2 = np.ascontiguousarray(path.logpi(beta, ll2, lp2, proposal), dtype=np.float64)
        grad2 = np.ascontiguousarray(path.grad(beta, gll2, glp2, proposal)) if mala else None
    accept = np.empty(m)
    _check(lib.phase_pt_accept(
        m, d, mala, DRIFT_CAP, metric, *map(c_buffer, (factor, slots.step, logpi, logpi2, grad2, jump, move)),
        seed, STREAM_ACCEPT, ids_c,
        *map(c_buffer, (proposal, ll2, lp2, gll2, glp2, slots.x, slots.loglik, slots.logprior, slots.grad_ll,
                        slots.grad_lp, accept))))
    return accept


def hmc_move(slots: Any, beta: np.ndarray, ids: np.ndarray, ctx: Any) -> np.ndarray:
    """One Hamiltonian Monte Carlo trajectory of every local slot, in place.

    ``leapfrog_steps`` leapfrog steps of the slot's step size, unit mass,
    momentum keyed like MALA's noise; each leapfrog step is one batched
    density call. A trajectory that meets a point outside the support is
    rejected (its reverse meets the same point, so this keeps detailed
    balance). Returns the acceptance probabilities (m,).
    """
    settings, layout = ctx.settings, ctx.layout
    eps, path = slots.step[:, None], slots.path
    momentum0 = normals(settings.seed, STREAM_LOCAL, ids, slots.x.shape[1])
    logpi0 = path.logpi(beta, slots.loglik, slots.logprior, slots.x)
    x = slots.x
    momentum = momentum0 + 0.5 * eps * path.grad(beta, slots.grad_ll, slots.grad_lp, x)
    finite = np.ones(len(x), dtype=bool)
    n_leap = settings.leapfrog_steps
    for s in range(n_leap):
        x = x + eps * momentum
        ll, lp, gll, glp = evaluated = evaluate_block(ctx.density, layout, x)
        logpi = path.logpi(beta, ll, lp, x)
        finite &= np.isfinite(logpi)
        momentum = momentum + (eps if s + 1 < n_leap else 0.5 * eps) * path.grad(beta, gll, glp, x)
    with np.errstate(invalid="ignore", over="ignore"):
        kinetic = global_map(lambda a: a.sum(axis=1), momentum0 * momentum0 - momentum * momentum,
                             layout.rows, layout.n)
        log_alpha = np.where(finite, logpi - logpi0 + 0.5 * kinetic, -math.inf)
    return _metropolis(slots, log_alpha, ids, ctx, x, evaluated)
