"""The vectorised arithmetic and local moves of a parallel-tempering scan
(:mod:`phasic_mpi.inference.pt`).

A scan works on all of a rank's slots at once. Elementwise arithmetic gives
the same bits whatever the array; everything else that feeds a decision
(exp, row sums, the density itself) runs on an array of the global shape,
K*N rows, with this rank's rows written in (:func:`global_map`,
:func:`evaluate_block`): numpy may round an element differently depending on
the array's shape, so this keeps every rank layout bitwise equal.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import numpy as np

from phasic_mpi.inference.counters import normals, uniforms
from phasic_mpi.inference.parallel import BlockLayout

__all__ = ["Pairs", "evaluate_block", "global_map", "hmc_move", "local_move", "move_parts", "pairs_of",
           "slot_index", "swap_log_accept_many", "tempered"]

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

    g: np.ndarray  # lower slots, increasing
    chain: np.ndarray
    level: np.ndarray  # level of g (the pair is level, level + 1)
    ids: np.ndarray  # counter ids (chain, level, 0, 0): the scan goes into column 2
    both: np.ndarray  # bool: both ends on this rank
    low: np.ndarray  # local index of the lower end of the pairs with both ends here
    low_local: np.ndarray  # bool: the lower end is here (the pair's statistics live with it)
    own: np.ndarray  # local index of those lower ends
    cross: tuple[int, ...]  # positions of the pairs with one end on another rank (at most 2)
    ends: tuple[np.ndarray, np.ndarray]  # local indices of both ends (clipped for cross pairs)


@functools.lru_cache(maxsize=64)
def pairs_of(n_levels: int, n_slots: int, start: int, stop: int, parities: tuple[int, ...]) -> Pairs:
    """The pairs of a swap phase touching slots [start, stop) whose lower level has
    its chain's parity (``parities`` per chain, from the first chain touched)."""
    g = np.arange(max(start - 1, 0), min(stop, n_slots - 1))
    chain, level = np.divmod(g, n_levels)
    parity = np.asarray(parities)[chain - chain[0]] if g.size else chain
    keep = (level != n_levels - 1) & (level % 2 == parity)  # level N-1 pairs with the next chain
    g, chain, level = g[keep], chain[keep], level[keep]
    low_local, high_local = g >= start, g + 1 < stop
    both = low_local & high_local
    ids = np.zeros((g.size, 4), dtype=np.uint64)
    ids[:, 0], ids[:, 1] = chain, level
    i_low = g - start
    ends = np.clip(i_low, 0, stop - start - 1), np.clip(i_low + 1, 0, stop - start - 1)
    out = Pairs(g, chain, level, ids, both, i_low[both], low_local, i_low[low_local],
                tuple(int(k) for k in np.flatnonzero(~both)), ends)
    for arr in (g, chain, level, ids, both, out.low, low_local, out.own, *ends):
        arr.flags.writeable = False  # shared by every scan of the same parities
    return out


def swap_log_accept_many(beta_low: np.ndarray, beta_high: np.ndarray, loglik_low: np.ndarray,
                         loglik_high: np.ndarray) -> np.ndarray:
    """``phasic_mpi.inference.pt.swap_log_accept`` elementwise."""
    with np.errstate(invalid="ignore"):
        diff = loglik_high - loglik_low
        log_alpha = np.minimum(0.0, (beta_low - beta_high) * diff)
    log_alpha[np.isnan(diff)] = -math.inf
    return log_alpha


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


def move_parts(slots: Any, beta: np.ndarray, ids: np.ndarray, ctx: Any) -> tuple[Any, ...]:
    """What a MALA or random-walk move starts from: the step column h (m, 1),
    the scaled noise h xi, log pi_b on the slots' path (``slots.path``, see
    inference/ptreference.py), whether it is MALA, h^2 / 2."""
    step = slots.step[:, None]
    jump = step * normals(ctx.settings.seed, STREAM_LOCAL, ids, slots.x.shape[1])
    logpi = slots.path.logpi(beta, slots.loglik, slots.logprior, slots.x)
    return step, jump, logpi, ctx.settings.local_move == "mala", 0.5 * step * step


def local_move(slots: Any, beta: np.ndarray, ids: np.ndarray, ctx: Any) -> np.ndarray:
    """One MALA or random-walk Metropolis move of every local slot, in place.

    ``slots`` is the scan's working copy (``pt._Slots``), ``ctx`` the
    ``pt.PTContext``; ``beta`` (m,) are the slots' inverse temperatures and
    ``ids`` (m, 4) their counter ids for this step. Returns the acceptance
    probabilities (m,).
    """
    layout = ctx.layout
    step, jump, logpi, mala, half_var = move_parts(slots, beta, ids, ctx)
    path = slots.path  # log pi_b and its gradient (inference/ptreference.py)
    proposal = (slots.x + half_var * path.grad(beta, slots.grad_ll, slots.grad_lp, slots.x) + jump if mala
                else slots.x + jump)
    ll2, lp2, gll2, glp2 = evaluated = evaluate_block(ctx.density, layout, proposal)
    with np.errstate(invalid="ignore", over="ignore"):
        log_alpha = path.logpi(beta, ll2, lp2, proposal) - logpi
        if mala:  # log q(z | z') - log q(z' | z), the forward residual being the jump itself
            back = slots.x - proposal - half_var * path.grad(beta, gll2, glp2, proposal)
            sums = global_map(lambda a: a.sum(axis=1), jump * jump - back * back, layout.rows, layout.n)
            log_alpha = np.where(np.isfinite(log_alpha), log_alpha + sums / (2.0 * slots.step * slots.step),
                                 log_alpha)
    return _metropolis(slots, log_alpha, ids, ctx, proposal, evaluated)


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
