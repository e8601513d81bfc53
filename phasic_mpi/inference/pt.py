"""Parallel tempering over MPI ranks: non-reversible swaps, adaptive ladder,
stepping-stone evidence.

Targets are power posteriors pi_b(z) ∝ prior(z) L(z)^b on a ladder
1 = b_0 > b_1 > ... > b_{N-1} = 0 (b = 0 samples the prior). ``chains``
independent ensembles of N levels each make K*N *slots*; slot g = c*N + j
holds the state at level j of chain c. Slots are split over the ranks in
contiguous blocks (:func:`phasic_mpi.inference.parallel.block_layout`); a slot's level,
and so its temperature and step size, never moves: swaps exchange states.

One scan = ``local_steps`` MALA or random-walk moves per slot, then one swap
phase: pairs (j, j+1) with j even on even scans and odd on odd scans
(non-reversible, Okabe et al. 2001; Syed et al. 2022), or a random phase per
scan (reversible). A pair on two ranks exchanges its two states with one
``Sendrecv`` of O(d) numbers; both sides draw the same counter-based uniform
keyed by (seed, chain, scan, pair), compute the same acceptance from the
same two log-likelihoods, and so decide alike; each message also carries the
sender's previous decision on that pair, which the receiver checks.

Scans are grouped in rounds of 2^r scans. After each warm-up round the
ladder (one for all chains) is re-spaced so that adjacent pairs have equal
rejection rates, from the chains' pooled swap statistics, and
the step sizes are adapted per level during warm-up. Every round reports the
ladder, swap rejection per pair, the barrier Lambda = sum of rejections,
round trips, local acceptance and log Z by stepping stone in both directions.

With ``reference = "variational"`` the b = 0 end is a Gaussian fitted in warm-up
(:mod:`phasic_mpi.inference.ptreference`, also the stepping stone).

Each local step evaluates all of a rank's slots in one density call, in an
array of the global shape (K*N, d); randomness is keyed by (seed, purpose,
chain, level, scan, step), never by rank (:mod:`phasic_mpi.inference.counters`):
any rank count gives the same bits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np

from phasic_mpi.settings import (boolean, check_settings, choice, fail, from_mapping, integer, is_int,
                                is_number, number, setting)
from phasic_mpi.inference.comm import as_communicator, traffic_report
from phasic_mpi.inference.counters import counter_ids, uniforms
from phasic_mpi.inference.parallel import BlockLayout, allgather_rows, block_layout, stream
from phasic_mpi.inference.protocol import FinalRecord
from phasic_mpi.inference import ptcold, ptmoves
from phasic_mpi.inference.ptladder import initial_ladder, replica_warning, respace_ladder
from phasic_mpi.inference.ptstream import cold_rows, gather_cold, with_drained
from phasic_mpi.inference.ptreference import (Path, check_reference, evidence, join_legs, reference_layout,
                                              reference_state, respace_by_leg, stepping_stone, update_reference,
                                              variational_chains)
from phasic_mpi.inference.ptscan import (STREAM_INIT, STREAM_PHASE, Pairs, evaluate_block, pairs_of, round_trips,
                                         slot_index, swap_phase_arrays)

__all__ = ["PTAlgorithm", "PTSettings", "PTState", "stepping_stone", "respace_ladder", "swap_log_accept"]

DEFAULT_TARGET = {"mala": 0.574, "rwm": 0.234, "hmc": 0.651}  # optimal-scaling acceptances


def _probability_or_zero(value: Any, path: str) -> float:
    if not is_number(value) or not (value == 0 or 0 < value < 1):
        fail(path, f"expected 0 (the default for local_move) or a number in (0, 1), "
                   f"got {value!r}")
    return float(value)


def _cold_steps(value: Any, path: str) -> int | str:
    if value != "auto" and (not is_int(value) or value < 0):
        fail(path, f'expected an integer >= 0 or "auto", got {value!r}')
    return value if value == "auto" else int(value)


def _warmup_rounds(value: Any, path: str) -> int:
    if not is_int(value):  # the range needs pt.rounds: checked in __post_init__
        fail(path, f"expected an integer in [0, rounds), got {value!r}")
    return int(value)


@dataclass(frozen=True)
class PTSettings:
    """Settings of a PT run: the ``[pt]`` config section, checked on construction."""

    section: ClassVar[str] = "pt"

    replicas: int = setting(integer(2), 5, "temperatures per chain")
    chains: int = setting(integer(1), 4, "independent PT ensembles (R-hat needs >= 2)")
    rounds: int = setting(integer(1), 10, "rounds; round r has 2**r scans")
    warmup_rounds: int = setting(_warmup_rounds, 6,
                                 "first rounds adapt ladder and step sizes; < rounds",
                                 what="integer in [0, `rounds`)")
    local_move: str = setting(choice("mala", "rwm", "hmc"), "mala", "local move")
    local_steps: int = setting(integer(1), 1, "local moves (HMC: trajectories) per replica per scan")
    leapfrog_steps: int = setting(integer(1), 4, "leapfrog steps per HMC trajectory (local_move = hmc)")
    step_size: float = setting(number(positive=True), 0.5, "initial local step size in z units")
    target_accept: float = setting(_probability_or_zero, 0.0,
                                   "0: 0.574 for mala, 0.234 for rwm, 0.651 for hmc; else in (0, 1)",
                                   what="0, or number in (0, 1)")
    swap: str = setting(choice("nonreversible", "reversible"), "nonreversible",
                        "deterministic even/odd phases or a random phase")
    adapt_ladder: bool = setting(boolean, True, "re-space the temperatures during warm-up")
    mass_matrix: str = setting(choice("auto", "none", "diagonal", "dense"), "auto",
                               "metric of the local moves, adapted per level in warm-up; "
                               "auto: dense for 2 to 16 parameters, else none")
    cold_steps: int | str = setting(_cold_steps, 0, "extra local moves per scan of the b = 1 slots only; "
                                    "auto: chosen in warm-up (inference/ptcold.py)", what='integer ≥ 0 | "auto"')
    seed: int = setting(integer(0), 0, "seed of the counter-based random streams")
    reference: str = setting(choice("prior", "variational"), "prior", "b = 0 end: prior, or Gaussian fitted in warm-up")
    variational_family: str = setting(choice("diagonal", "full"), "diagonal", "covariance of the Gaussian")
    stabilised: bool = setting(boolean, True, "variational: chains in pairs, one prior-referenced (chains even)")

    def __post_init__(self) -> None:
        check_settings(self)
        if not 0 <= self.warmup_rounds < self.rounds:
            fail("pt.warmup_rounds", f"expected an integer in [0, rounds), got "
                                     f"{self.warmup_rounds} (rounds = {self.rounds})")
        check_reference(self)

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> "PTSettings":
        """From a config table (unknown keys are errors)."""
        return from_mapping(cls, section)

    @property
    def n_scans(self) -> int:
        return 2**self.rounds - 1

    @property
    def target(self) -> float:
        return self.target_accept or DEFAULT_TARGET[self.local_move]


def round_of(scan: int) -> int:
    """Round of scan index ``scan`` (round r holds scans 2^r - 1 .. 2^(r+1) - 2)."""
    return (scan + 1).bit_length() - 1


def round_ends_after(scans_done: int) -> bool:
    return scans_done > 0 and (scans_done + 1) & scans_done == 0


def swap_log_accept(beta_low: float, beta_high: float, loglik_low: float, loglik_high: float) -> float:
    """log of the swap acceptance between levels j (beta_low index, larger b) and j+1.

    alpha = min(1, exp((b_j - b_{j+1}) (L_{j+1} - L_j))) where L_j is the
    log-likelihood of the state at level j; -inf log-likelihoods are handled
    without NaN (a state outside the support never moves up to b > 0).
    """
    diff = loglik_high - loglik_low
    if math.isnan(diff):  # both -inf
        return -math.inf
    return min(0.0, (beta_low - beta_high) * diff)


class PTState(NamedTuple):
    """This rank's slots (m of them) and the ensemble-wide ladder."""

    iteration: int  # scans done
    betas: np.ndarray  # (K, N), identical on every rank
    x: np.ndarray  # (m, d) states in z
    loglik: np.ndarray  # (m,)
    logprior: np.ndarray  # (m,)
    grad_ll: np.ndarray  # (m, d)
    grad_lp: np.ndarray  # (m, d)
    label: np.ndarray  # (m,) replica identity (travels with the state)
    last_end: np.ndarray  # (m,) -1 none yet, 0 bottom (b = 1) last, 1 top (b = 0) last
    step: np.ndarray  # (m,) local step size of the slot's level
    stats: np.ndarray  # (m, 6) round sums: local accept, local moves, swap rejection, swap accepted, swap attempts, round trips
    decisions: np.ndarray  # (m, 4) last swap on the left pair (scan, accepted), then on the right pair
    round_loglik: np.ndarray  # (k, m) potential V (log L if prior-referenced) per scan since the ladder changed
    samples: np.ndarray  # (m0, S, d + 2) b = 1 draws of the local level-0 slots since the last drain
    report: dict  # the last round's report (identical on every rank)
    metric: np.ndarray | None = None  # (N, d) or (N, d, d) per-level metric factor (mass_matrix != none)
    moments: np.ndarray | None = None  # (m, width) this round's Welford sums of each slot's states
    reference: Any = None  # ptreference.Reference of the variational legs (None: prior reference)
    ref_sums: Any = None  # (m, w) this warm-up round's b = 1 moment sums per slot (ptreference)
    cold_auto: np.ndarray | None = None  # cold_steps = auto: [count, tau(0..K)], identical on every rank (ptcold)
    probe: np.ndarray | None = None  # (m, w) cold_steps = auto: the probe's moment sums per slot (ptcold)


STAT_LOCAL_ACC, STAT_LOCAL_N, STAT_REJ, STAT_SWAP_ACC, STAT_SWAP_N, STAT_TRIPS = range(6)


class PTContext(NamedTuple):
    density: Any
    settings: PTSettings
    comm: Any
    layout: BlockLayout


class PTDiagnostics(NamedTuple):
    """Per-scan diagnostics (round-end fields are NaN between round ends)."""

    round: int
    cold_loglik: float  # log-likelihood of chain 0's b = 1 state
    Lambda: float  # chain 0's barrier estimate at a round end
    log_z: float  # chain 0's forward stepping-stone estimate at a round end


# ---------------------------------------------------------------- one scan
# All of a rank's slots at once: one batched density call per local step,
# vectorised accept/reject, swaps and statistics (arithmetic in
# inference/ptscan.py), counter-based draws (inference/counters.py) keyed by
# (seed, purpose, chain, level, scan, step) or (seed, purpose, chain, pair, scan).
def _owner(layout: BlockLayout, slot: int) -> int:
    return int(np.searchsorted(layout.displs, slot, side="right") - 1)


SWAPPED = ("x", "loglik", "logprior", "grad_ll", "grad_lp", "label", "last_end")


class _Slots:
    """Mutable working copy of a PTState's per-slot arrays during one scan."""

    def __init__(self, state: PTState, path: Path | None = None) -> None:
        self.path = path if path is not None else Path(None, None)  # prior reference
        self.x = state.x.copy()
        self.loglik = state.loglik.copy()
        self.logprior = state.logprior.copy()
        self.grad_ll = state.grad_ll.copy()
        self.grad_lp = state.grad_lp.copy()
        self.label = np.array(state.label, dtype=np.int64)  # libphase swaps these in place
        self.last_end = np.array(state.last_end, dtype=np.int64)
        self.step = state.step.copy()
        self.stats = state.stats.copy()
        self.decisions = state.decisions.copy()

    def pack(self, i: int, decision: np.ndarray) -> np.ndarray:
        head = [self.loglik[i], self.logprior[i], self.label[i], self.last_end[i], *decision]
        return np.concatenate([head, self.x[i], self.grad_ll[i], self.grad_lp[i]])

    def unpack(self, i: int, buf: np.ndarray) -> None:
        d = self.x.shape[1]
        self.loglik[i], self.logprior[i] = buf[0], buf[1]
        self.label[i], self.last_end[i] = int(buf[2]), int(buf[3])
        self.x[i], self.grad_ll[i], self.grad_lp[i] = buf[6:6 + d], buf[6 + d:6 + 2 * d], buf[6 + 2 * d:]


def _active_pairs(settings: PTSettings, layout: BlockLayout, scan: int) -> Pairs:
    """This scan's pairs touching this rank."""
    n_levels, n_slots = settings.replicas, settings.chains * settings.replicas
    first, last = max(layout.start - 1, 0) // n_levels, max(min(layout.stop, n_slots - 1) - 1, 0) // n_levels
    if settings.swap == "nonreversible":
        parities = (scan % 2,) * (last - first + 1)
    else:  # one random phase per chain and scan
        draw = uniforms(settings.seed, STREAM_PHASE, counter_ids(np.arange(first, last + 1), 0, scan))
        parities = tuple(int(v) for v in draw[:, 0] >= 0.5)
    return pairs_of(n_levels, n_slots, layout.start, layout.stop, parities)


def _cross_pair(slots: _Slots, g: int, low_local: bool, ctx: PTContext) -> tuple[np.ndarray, float, float]:
    """One Sendrecv of our end of pair (g, g+1) with the rank of the other end.

    Returns the received state and the pair's two log-likelihoods; checks that
    both ranks recorded the same last decision on the pair.
    """
    layout, comm = ctx.layout, ctx.comm
    i = (g if low_local else g + 1) - layout.start
    side = 2 if low_local else 0  # our record of this pair: right pair of g, left pair of g+1
    other = _owner(layout, g + 1 if low_local else g)
    send = slots.pack(i, slots.decisions[i, side:side + 2])
    recv = comm.sendrecv(send, other, g % 32768)
    if tuple(recv[4:6]) != tuple(slots.decisions[i, side:side + 2]):
        c, j = divmod(g, ctx.settings.replicas)
        raise RuntimeError(
            f"swap decisions of chain {c}, levels {j}/{j + 1} disagree between ranks "
            f"{comm.rank} and {other}: {tuple(slots.decisions[i, side:side + 2])} vs {tuple(recv[4:6])}")
    theirs = slots.path.potential_of(recv, slots.x.shape[1], i)
    return recv, *((slots.v[i], theirs) if low_local else (theirs, slots.v[i]))


def _swap_phase(slots: _Slots, state: PTState, ctx: PTContext) -> None:
    """One swap phase: local pairs at once in place, cross-rank pairs by Sendrecv.

    Both ends of a cross-rank pair draw the same uniform (keyed by chain, pair
    and scan) and compute the same acceptance from the same two
    log-likelihoods. The (at most two) Sendrecvs go left neighbour first,
    then right: no cycle, no deadlock.
    """
    settings, layout = ctx.settings, ctx.layout
    scan = state.iteration
    pairs = _active_pairs(settings, layout, scan)
    if not pairs.g.size:
        return
    slots.v = slots.path.potential(slots.loglik, slots.logprior, slots.x)  # log L on a prior-referenced path
    ll_low, ll_high = slots.v[pairs.ends[0]], slots.v[pairs.ends[1]]
    received = {}
    for k in pairs.cross:
        received[k], ll_low[k], ll_high[k] = _cross_pair(slots, int(pairs.g[k]), bool(pairs.low_local[k]), ctx)
    accepted = swap_phase_arrays(slots, pairs, state.betas, scan, ll_low, ll_high, settings.seed)[1]
    for k, recv in received.items():
        if accepted[k]:
            slots.unpack(int(pairs.ends[0][k] if pairs.low_local[k] else pairs.ends[1][k]), recv)


def _round_report(state: PTState, stats: np.ndarray, round_loglik: np.ndarray, ctx: PTContext) -> tuple[np.ndarray, dict]:
    """Statistics of the round that just ended, and the next ladder (every rank alike)."""
    settings = ctx.settings
    n, k = settings.replicas, settings.chains
    r = round_of(state.iteration - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per = stats.reshape(k, n, 6)
        rejection = per[:, :-1, STAT_REJ] / per[:, :-1, STAT_SWAP_N]
        swap_accept = per[:, :-1, STAT_SWAP_ACC] / per[:, :-1, STAT_SWAP_N]
        local_accept = per[:, :, STAT_LOCAL_ACC] / per[:, :, STAT_LOCAL_N]
    barrier = rejection.sum(axis=1)
    # forward, reverse, bridge per chain; chains of a leg kind share a ladder, so their autocorrelations pool
    estimates, errors = evidence(state.betas, round_loglik, variational_chains(settings))
    betas = state.betas.copy()
    if settings.adapt_ladder and r < settings.warmup_rounds:
        # One ladder for all chains (of a leg kind), from their pooled swap statistics:
        betas = respace_by_leg(state.betas, per[:, :-1, STAT_REJ], per[:, :-1, STAT_SWAP_N],
                               variational_chains(settings), respace_ladder)
    report = {
        "pt/round": np.array([r]),
        "pt/round_scans": np.array([2**r]),
        "pt/betas": state.betas[None],
        "pt/rejection": rejection[None],
        "pt/swap_accept": swap_accept[None],
        "pt/Lambda": barrier[None],
        "pt/round_trips": per[:, 0, STAT_TRIPS][None],
        "pt/local_accept": local_accept[None],
        "pt/log_z": np.array(estimates[None, :, :2]),
        "pt/log_z_se": np.array(errors[None, :, :2]),
        "pt/log_z_bridge": np.array(estimates[None, :, 2]),
        "pt/log_z_bridge_se": np.array(errors[None, :, 2]),
        "pt/recommended_replicas": np.ceil(2 * barrier + 1)[None],
    }
    return betas, report


def pt_step(state: PTState, ctx: PTContext) -> tuple[PTState, PTDiagnostics]:
    """One scan (local moves, then a swap phase); a collective call."""
    settings, layout = ctx.settings, ctx.layout
    n = settings.replicas
    scan = state.iteration
    warmup = round_of(scan) < settings.warmup_rounds
    var_slots = (None if state.reference is None  # prior reference: no variational legs to mark
                 else variational_chains(settings)[slot_index(n, layout.start, layout.stop)[0]])
    slots = _Slots(state, Path(state.reference, var_slots))
    scan_accept = ptmoves.local_phase(slots, state, ctx)
    slots.stats[:, STAT_LOCAL_ACC] += scan_accept
    slots.stats[:, STAT_LOCAL_N] += 1
    _swap_phase(slots, state, ctx)
    join_legs(slots, layout, settings, scan, ctx.comm, SWAPPED)
    round_trips(slots, layout.start, n)  # after join_legs: the b = 1 states may have moved
    level0 = slot_index(n, layout.start, layout.stop)[2]
    cold_auto, probe = ptcold.after_scan(state, state.x[level0], slots.cold_trace, slots.x[level0], level0, ctx)

    potential = slots.path.potential(slots.loglik, slots.logprior, slots.x)
    round_loglik = np.vstack([state.round_loglik, potential[None]])
    reference, ref_sums = update_reference(state.reference, state.ref_sums, slots.x, var_slots, ctx,
                                           warmup, round_ends_after(scan + 1))
    samples = state.samples
    if not warmup:  # also on a rank without level-0 slots: (0, S, d + 2) keeps S known everywhere
        rows = np.column_stack([slots.x[level0], slots.loglik[level0], scan_accept[level0]])
        samples = np.concatenate([samples, rows[:, None, :]], axis=1)
    betas, report, stats = state.betas, state.report, slots.stats
    scans_done = scan + 1
    diag_lambda = diag_log_z = math.nan
    if round_ends_after(scans_done):
        all_stats = allgather_rows(ctx.comm, layout, slots.stats)
        all_loglik = allgather_rows(ctx.comm, layout, round_loglik.T)
        done = state._replace(iteration=scans_done)
        betas, report = _round_report(done, all_stats, all_loglik, ctx)
        report.update(ptcold.report(done, cold_auto, settings))
        diag_lambda, diag_log_z = float(report["pt/Lambda"][0, 0]), float(report["pt/log_z"][0, 0, 0])
        stats = np.zeros_like(stats)
        if round_of(scan) < settings.warmup_rounds:  # the ladder may change: start a new pool
            round_loglik = round_loglik[:0]
    metric, moments = ptmoves.after_scan(state, slots, ctx)  # the metric's warm-up (may reset the steps)
    new = PTState(scans_done, betas, slots.x, slots.loglik, slots.logprior, slots.grad_ll, slots.grad_lp,
                  slots.label, slots.last_end, slots.step, stats, slots.decisions, round_loglik, samples,
                  report, metric, moments, reference, ref_sums, cold_auto, probe)
    cold = float(slots.loglik[0]) if layout.start == 0 else math.nan
    return new, PTDiagnostics(round_of(scan), cold, diag_lambda, diag_log_z)


def _ladder_warnings(report: Mapping[str, Any], replicas: int) -> tuple[str, ...]:
    """The end-of-run warning of :func:`~phasic_mpi.inference.ptladder.replica_warning`
    on the last round's swap rejections (none before the first round ends)."""
    rejection = report.get("pt/rejection")
    message = None if rejection is None else replica_warning(rejection[0], replicas)
    return () if message is None else (message,)


# ------------------------------------------------------------ driver plug-in
def initial_state(ctx: PTContext, init: np.ndarray | None = None) -> PTState:
    """Every slot starts from a prior draw keyed by (seed, chain, level), or
    slot g from row g mod k of ``init`` ((k, d) points in z: a warm start)."""
    settings, layout, density = ctx.settings, ctx.layout, ctx.density
    n, d = settings.replicas, density.n_params
    m = layout.local_count
    if init is not None:
        init = np.asarray(init, dtype=np.float64)
        if init.ndim != 2 or init.shape[1] != d or len(init) == 0 or not np.all(np.isfinite(init)):
            raise ValueError(f"pt: init must hold finite points of {d} parameters, shape (k, {d}), "
                             f"got shape {init.shape}")
    chain, level, level0 = slot_index(n, layout.start, layout.stop)
    x = np.empty((m, d))
    for i, (g, c, j) in enumerate(zip(range(layout.start, layout.stop), chain, level)):
        x[i] = (density.sample_prior_z(stream(settings.seed, STREAM_INIT, c, j), 1)[0]
                if init is None else init[g % len(init)])
    loglik, logprior, grad_ll, grad_lp = evaluate_block(density, layout, x)
    labels = level.astype(np.int64)
    betas = np.tile(initial_ladder(n), (settings.chains, 1))
    n_level0 = level0.size
    decisions = np.tile([-1.0, 0.0, -1.0, 0.0], (m, 1))
    return PTState(0, betas, x, loglik, logprior, grad_ll, grad_lp, labels, np.full(m, -1, np.int64),
                   np.full(m, float(settings.step_size)), np.zeros((m, 6)), decisions,
                   np.zeros((0, m)), np.zeros((n_level0, 0, d + 2)), {}, **reference_state(settings, d, m))


PER_SLOT = ("x", "loglik", "logprior", "grad_ll", "grad_lp", "label", "last_end", "step", "stats", "decisions")


class PTAlgorithm:
    """Parallel tempering as a plug-in of the run loop (:class:`~phasic_mpi.inference.protocol.Algorithm`)."""

    name = "pt"
    Settings = PTSettings
    iteration_label = "scan"
    figures = ("pt_trace", "pt_ladder", "pt_swaps")  # names in plotting's figure table

    def __init__(self, settings: PTSettings) -> None:
        self.settings = settings
        self.n_iterations = settings.n_scans

    def context(self, density: Any, comm: Any) -> PTContext:
        comm = as_communicator(comm)
        slots = self.settings.chains * self.settings.replicas
        if slots < comm.size:
            raise ValueError(f"pt: {slots} replicas in all (chains x replicas) for {comm.size} MPI "
                             "ranks; use at least one replica per rank")
        return PTContext(density, self.settings, comm, block_layout(slots, comm.size, comm.rank))

    def resources(self, n_params: int, n_ranks: int, kept_iterations: int = 0) -> Any:
        from phasic_mpi.inference.resources import pt_resources  # memory, time lower bound

        return pt_resources(self.settings, n_params, n_ranks, kept_iterations)

    def start(self, ctx: PTContext, init: np.ndarray | None = None) -> PTState:
        return ptcold.with_auto(ptmoves.with_metric(initial_state(ctx, init), ctx), self.settings)

    def step(self, state: PTState, ctx: PTContext) -> tuple[PTState, PTDiagnostics]:
        return pt_step(state, ctx)

    def describe(self, diag: PTDiagnostics) -> str:
        text = f"round {diag.round}  cold loglik {diag.cold_loglik:.4g}"
        if not math.isnan(diag.Lambda):
            text += f"  Lambda {diag.Lambda:.3g}  log Z {diag.log_z:.4g}"
        return text

    def history_due(self, iteration: int) -> bool:
        return round_ends_after(iteration)

    def history(self, state: PTState, ctx: PTContext) -> dict[str, np.ndarray] | None:
        """The report of the round that just ended (computed alike on every rank)."""
        if ctx.comm.rank != 0:
            return None
        return {name.removeprefix("pt/"): value for name, value in state.report.items()}

    def drain(self, state: PTState, ctx: PTContext) -> tuple[PTState, dict[str, np.ndarray] | None]:
        """The b = 1 draws since the last drain as history rows (``ptstream.cold_rows``;
        rank 0), and the state without them. The run loop drains after every
        history call, before every checkpoint and before :meth:`finish`."""
        pending = state.samples.shape[1]  # the same on every rank: no collective when 0
        if pending == 0:
            return state, None
        samples = gather_cold(state.samples, ctx)
        state = state._replace(samples=state.samples[:, :0])
        return state, None if samples is None else cold_rows(samples, state.iteration)

    def checkpoint(self, state: PTState, ctx: PTContext) -> dict[str, np.ndarray] | None:
        """Per-slot arrays, the ladder and the undrained draws (none in a run loop)."""
        arrays = {name: ctx.comm.gather_rows(ctx.layout, np.asarray(getattr(state, name), float))
                  for name in PER_SLOT}
        arrays["round_loglik"] = ctx.comm.gather_rows(ctx.layout, state.round_loglik.T)
        arrays.update(ptmoves.gathered(state, ctx), **ptcold.auto_arrays(state, ctx))
        samples = gather_cold(state.samples, ctx)
        ref_sums = None if state.ref_sums is None else ctx.comm.gather_rows(ctx.layout, state.ref_sums)
        if ctx.comm.rank != 0:
            return None
        arrays["samples"] = samples
        arrays["betas"] = state.betas
        if state.reference is not None:
            arrays.update(state.reference.arrays(), ref_sums=ref_sums)
        return arrays

    def checkpoint_layout(self, ctx: PTContext) -> dict[str, tuple]:
        """Shapes and dtype kinds of :meth:`checkpoint`'s arrays; None: grows with the scans."""
        m, d, k, n = ctx.layout.n, ctx.density.n_params, self.settings.chains, self.settings.replicas
        wide = {"x": d, "grad_ll": d, "grad_lp": d, "stats": 6, "decisions": 4, "round_loglik": None}
        return {**{a: ((m, wide[a]) if a in wide else (m,), "f") for a in (*PER_SLOT, "round_loglik")},
                "samples": ((k, None, d + 2), "f"), "betas": ((k, n), "f"),
                **ptmoves.metric_layout(self.settings, m, d), **reference_layout(self.settings, m, d),
                **ptcold.auto_layout(self.settings, m, d)}

    def restore(self, arrays: dict[str, np.ndarray], iteration: int, ctx: PTContext) -> PTState:
        rows, n = ctx.layout.rows, self.settings.replicas
        local = {name: np.array(arrays[name][rows]) for name in PER_SLOT}
        for name in ("label", "last_end"):
            local[name] = local[name].astype(np.int64)
        level0 = [g // n for g in range(ctx.layout.start, ctx.layout.stop) if g % n == 0]
        samples = np.array(arrays["samples"][level0])
        return PTState(iteration, np.array(arrays["betas"]), local["x"], local["loglik"], local["logprior"],
                       local["grad_ll"], local["grad_lp"], local["label"], local["last_end"], local["step"],
                       local["stats"], local["decisions"], np.array(arrays["round_loglik"][rows]).T,
                       samples, {})._replace(**ptmoves.restored(arrays, rows, ctx),
                                             **reference_state(self.settings, arrays=arrays, rows=rows),
                                             **ptcold.restored(arrays, rows, self.settings))

    def finish(self, state: PTState, ctx: PTContext,
               history: Mapping[str, np.ndarray] | None = None) -> FinalRecord | None:
        """The b = 1 draws of the sampling rounds, per chain: the drained ones
        (``history``'s ``cold/*`` rows, rank 0), then those still in the state."""
        samples = gather_cold(state.samples, ctx)
        if samples is not None and history is not None:
            samples = with_drained(history, samples)
        traffic = ctx.comm.gather(ctx.comm.traffic(), root=0)  # measurement only
        if samples is None:
            return None
        k, s, width = samples.shape
        d = width - 2
        theta = ctx.density.to_theta(samples[:, :, :d].reshape(k * s, d)).reshape(k, s, d)
        return FinalRecord(
            draws={name: theta[:, :, m] for m, name in enumerate(ctx.density.param_names)},
            sample_stats={"log_likelihood_total": samples[:, :, d], "local_accept": samples[:, :, d + 1]},
            arrays={"final_betas": state.betas,  # and the variational Gaussian, if any (ptreference)
                    **({} if state.reference is None else state.reference.arrays())},
            diagnostics={"chains": k, "draws_per_chain": s, "replicas": self.settings.replicas,
                         # per rank: every call of the run's communicator (steps, the loop's
                         # stop-flag agreement, drains, checkpoints), and the swaps' Sendrecv alone
                         **traffic_report(traffic), **traffic_report(traffic, "swap", ("sendrecv",)),
                         # cold-chain draws whose log-likelihood is -inf or NaN
                         "n_invalid_final": int((~np.isfinite(samples[:, :, d])).sum())},
            independent=False,
            final_z=samples[:, -1, :d] if s else np.empty((0, d)),
            warnings=_ladder_warnings(state.report, self.settings.replicas),
        )
