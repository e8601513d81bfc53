"""``pt.cold_steps = "auto"``: the number of extra b = 1 moves per scan, chosen
in warm-up from the chains' own draws, then fixed for sampling.

Extra moves of the b = 1 slots (``ptmoves.local_phase``) pay only where local
moves decorrelate what the swaps do not: on a unimodal posterior each move
lowers the correlation between consecutive b = 1 draws; on a multimodal one
the moves stay within a mode, and the mode identity, most of the draws'
variance there, changes only through swaps. The rule measures which case it
is in instead of assuming one.

Probe: in the last ``PROBE_ROUNDS`` warm-up round(s) (the metric is final)
every scan makes ``PROBE_MOVES`` = K extra b = 1 moves. Per b = 1 slot and
scan it records a = the state at the start of the scan, x_j = the state after
j extra moves (j = 0: after the ``local_steps`` moves of all slots) and e = the
state after the swap phase, and sums the moments of (a, z_j) with z_j = x_j
where the swap phase kept the state, else e. Pooled over chains and scans,
rho_k = corr(a, z_k) estimates the lag-1 correlation of the b = 1 draws had
every scan made k extra moves (swaps included; the swap decision taken as
observed), separately for every k = 0..K: measured, not extrapolated from one
lag, so the floor that modes put under what local moves can do shows as a
rho_k that stops falling. Correlations are per coordinate whitened by the
b = 1 metric factor (identity without one).

Choice: tau(k) = (1 + rho_k) / (1 - rho_k) of the worst coordinate (the
integrated autocorrelation time of a lag-1 process; rho clipped to [0, 1)), and
the k with the largest ESS per cost 1 / (tau(k) cost(k)) (the smallest on a
tie). Cost counts density rows per scan: ``local_steps`` calls of all
K*N rows and k calls of the K b = 1 rows, each call (HMC: ``leapfrog_steps``
calls per move) plus ``CALL_ROWS``, its fixed overhead in row units. Never wall
time: the count is a function of the draws, identical on every rank (the
per-slot sums are gathered in global slot order and reduced alike everywhere),
and travels in the checkpoint.

Why lag 1 and not a floor model: splitting the within-scan curve
corr(a, x_j) into a floor and a decaying part mistook the slow but steady
decay on rabbits(2) for a mode floor and chose no moves where one or two more
raised bulk ESS per CPU second by 17 % (``make bench-peers``); on the
symmetric hypoexponential the measured rho_k barely falls with k (the modes
dominate it), so lag 1 alone already declines the moves there. Where a floor
is both large and persistent, tau from lag 1 understates it and so overstates
what moves gain; the rule then buys moves only if rho_k still falls.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from phasic_mpi.inference.parallel import allgather_rows

__all__ = ["CALL_ROWS", "PROBE_MOVES", "PROBE_ROUNDS", "accumulate", "after_scan", "auto_arrays", "auto_layout",
           "choose", "is_auto", "moves", "probe_width", "probing", "report", "restored", "tau_curve", "with_auto"]

PROBE_MOVES = 4  # K: extra b = 1 moves per probe scan; the largest count the rule can choose
PROBE_ROUNDS = 1  # the last warm-up round probes (2**(W-1) scans; the metric is final)
# A density call's fixed cost in rows: rabbits(2) costs 77 us + 56 us per row, the
# hypoexponential 62 us + 59 us per row (one thread, benchmarks/peers_targets.py), and
# a move's proposal/accept calls add about as much again.
CALL_ROWS = 2.0


def is_auto(settings: Any) -> bool:
    """Whether ``pt.cold_steps`` is ``"auto"``."""
    return settings.cold_steps == "auto"


def probing(scan: int, settings: Any) -> bool:
    """Whether scan ``scan`` is a probe scan of ``cold_steps = "auto"``."""
    r = (scan + 1).bit_length() - 1  # pt.round_of
    return is_auto(settings) and settings.warmup_rounds - PROBE_ROUNDS <= r < settings.warmup_rounds


def moves(state: Any, scan: int, settings: Any) -> int:
    """Extra b = 1 moves of scan ``scan``: the setting, or with ``auto`` 0 before
    the probe, ``PROBE_MOVES`` during it and the chosen count after."""
    if not is_auto(settings):
        return settings.cold_steps
    if probing(scan, settings):
        return PROBE_MOVES
    return int(state.cold_auto[0])


def probe_width(d: int) -> int:
    """Columns of a slot's probe sums: count, sum a, sum a a^T, then per k = 0..K
    sum z_k, z_k z_k^T and a z_k^T."""
    return 1 + d + d * d + (PROBE_MOVES + 1) * (d + 2 * d * d)


def with_auto(state: Any, settings: Any) -> Any:
    """``state`` with count 0, tau 0 (not estimated yet) and empty probe sums if ``cold_steps = "auto"``."""
    if not is_auto(settings):
        return state
    m, d = state.x.shape
    return state._replace(cold_auto=np.zeros(PROBE_MOVES + 2),
                          probe=np.zeros((m, probe_width(d))))


def _moment_rows(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per row: x, x x^T and a x^T, flattened (elementwise products: a row's bits
    do not depend on the number of rows)."""
    m, d = x.shape
    return np.concatenate([x, (x[:, :, None] * x[:, None, :]).reshape(m, d * d),
                           (a[:, :, None] * x[:, None, :]).reshape(m, d * d)], axis=1)


def accumulate(probe: np.ndarray, level0: np.ndarray, start: np.ndarray, trace: np.ndarray,
               end: np.ndarray) -> np.ndarray:
    """Probe sums after one scan: ``start`` (m0, d) the b = 1 states before the
    scan, ``trace`` (m0, K + 1, d) after each extra move, ``end`` after the swaps."""
    m0, d = start.shape
    if m0 == 0:  # no b = 1 slot on this rank
        return probe
    kept = np.all(end == trace[:, -1], axis=1)  # the swap phase left the state in place
    rows = [np.ones((m0, 1)), start, (start[:, :, None] * start[:, None, :]).reshape(m0, d * d)]
    for j in range(PROBE_MOVES + 1):
        z = np.where(kept[:, None], trace[:, j], end)
        rows.append(_moment_rows(start, z))
    out = probe.copy()
    out[level0] += np.concatenate(rows, axis=1)
    return out


def _whitened_corr(sums: np.ndarray, n: float, sa: np.ndarray, saa: np.ndarray, w: np.ndarray) -> np.ndarray:
    """corr(a_i, x_i) per whitened coordinate i from the pooled sums of one x block."""
    d = len(sa)
    sx, sxx, sax = sums[:d], sums[d:d + d * d].reshape(d, d), sums[d + d * d:].reshape(d, d)
    ma, mx = sa / n, sx / n
    c_aa = saa.reshape(d, d) / n - np.outer(ma, ma)
    c_xx, c_ax = sxx / n - np.outer(mx, mx), sax / n - np.outer(ma, mx)
    va, vx, cov = (np.einsum("ij,jk,ik->i", w, c, w) for c in (c_aa, c_xx, c_ax))
    with np.errstate(invalid="ignore", divide="ignore"):
        return cov / np.sqrt(va * vx)


def tau_curve(total: np.ndarray, d: int, factor: np.ndarray | None) -> np.ndarray:
    """tau(k), k = 0..K, of the worst whitened coordinate from the pooled probe sums
    ``total`` (see the module doc); ``factor`` is the b = 1 metric factor
    ((d,) standard deviations or (d, d) lower Cholesky factor; None: identity)."""
    n, sa, saa = total[0], total[1:1 + d], total[1 + d:1 + d + d * d]
    if n < 3:
        return np.full(PROBE_MOVES + 1, math.inf)
    w = (np.eye(d) if factor is None else np.diag(1.0 / factor) if factor.ndim == 1
         else np.linalg.inv(factor))  # whitening y = W z
    block, base = d + 2 * d * d, 1 + d + d * d
    rho = np.stack([_whitened_corr(total[base + k * block:base + (k + 1) * block], n, sa, saa, w)
                    for k in range(PROBE_MOVES + 1)])
    rho = np.clip(rho, 0.0, 1.0 - 1e-9)  # negative: counted as independent draws
    with np.errstate(invalid="ignore"):
        tau = (1 + rho) / (1 - rho)
    return np.where(np.isfinite(tau), tau, math.inf).max(axis=1)


def choose(tau: np.ndarray, settings: Any) -> int:
    """The count k with the largest 1 / (tau(k) cost(k)), the smallest on a tie (0 if no tau is finite).

    No margin towards fewer moves: on rabbits(2) tau from lag 1 understated the
    gain of the first extra move (tau 3.7 -> 2.9 estimated, bulk ESS +47 %
    measured with a fixed count), and a 5 % margin chose 0 where 1 raised ESS
    per CPU second by 17 %."""
    calls = settings.leapfrog_steps if settings.local_move == "hmc" else 1
    slots, chains = settings.chains * settings.replicas, settings.chains
    k = np.arange(len(tau))
    cost = calls * (settings.local_steps * (slots + CALL_ROWS) + k * (chains + CALL_ROWS))
    value = 1.0 / (tau * cost)
    if not np.any(np.isfinite(tau)):
        return 0
    return int(np.argmax(value))


def after_scan(state: Any, start: np.ndarray, trace: np.ndarray | None, end: np.ndarray, level0: np.ndarray,
               ctx: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``cold_auto`` ([count, tau(0..K)]) and the probe sums after scan
    ``state.iteration``: a probe scan adds its moments; after the last warm-up
    round the sums of all slots (global order, a collective) give the count."""
    settings, scan = ctx.settings, state.iteration
    if not is_auto(settings) or not probing(scan, settings):
        return state.cold_auto, state.probe
    probe = accumulate(state.probe, level0, start, trace, end)
    if scan + 2 != 2 ** settings.warmup_rounds:  # not the last scan of warm-up
        return state.cold_auto, probe
    total = allgather_rows(ctx.comm, ctx.layout, probe).sum(axis=0)
    factor = None if state.metric is None else state.metric[0]
    tau = tau_curve(total, start.shape[1], factor)
    # tau 0: not estimated (checkpoints hold finite values only)
    return np.concatenate([[choose(tau, settings)], np.where(np.isfinite(tau), tau, 0.0)]), np.zeros_like(probe)


def report(state: Any, cold_auto: np.ndarray | None, settings: Any) -> dict[str, np.ndarray]:
    """Round-report rows: the extra b = 1 moves per scan of the round that just ended,
    and with ``auto`` tau(k) as estimated at the end of warm-up (0 before, and where not estimable)."""
    out = {"pt/cold_steps": np.array([moves(state, state.iteration - 1, settings)])}
    if cold_auto is not None:
        out["pt/cold_tau"] = cold_auto[None, 1:]
    return out


def auto_arrays(state: Any, ctx: Any) -> dict[str, np.ndarray]:
    """Checkpoint arrays of ``auto`` (a collective; empty off rank 0 and without ``auto``)."""
    if state.cold_auto is None:
        return {}
    probe = ctx.comm.gather_rows(ctx.layout, state.probe)
    return {"cold_auto": state.cold_auto, "probe": probe} if ctx.comm.rank == 0 else {}


def auto_layout(settings: Any, m: int, d: int) -> dict[str, tuple]:
    """Shapes and dtype kinds of :func:`auto_arrays` for ``m`` slots."""
    if not is_auto(settings):
        return {}
    return {"cold_auto": ((PROBE_MOVES + 2,), "f"), "probe": ((m, probe_width(d)), "f")}


def restored(arrays: dict[str, np.ndarray], rows: Any, settings: Any) -> dict[str, Any]:
    """The ``auto`` fields of a PTState from checkpoint ``arrays``."""
    if not is_auto(settings):
        return {}
    if "cold_auto" not in arrays or "probe" not in arrays:
        raise ValueError('pt: the checkpoint holds no cold-step probe, but pt.cold_steps = "auto": '
                         "resume with the run's own settings")
    return {"cold_auto": np.array(arrays["cold_auto"]), "probe": np.array(arrays["probe"][rows])}
