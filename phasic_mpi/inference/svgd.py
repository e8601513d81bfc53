"""Stein variational gradient descent, distributed over MPI ranks.

The update of particle i is (Liu & Wang 2016)

    phi(x_i) = 1/n sum_j [ k(x_j, x_i) grad log p(x_j) + grad_{x_j} k(x_j, x_i) ],

with the RBF kernel k(x, y) = exp(-|x - y|^2 / h). The second term is the
*repulsive* one: grad_{x_j} k(x_j, x_i) = (2/h) k(x_j, x_i) (x_i - x_j) pushes
x_i away from its neighbours; with the wrong sign the particles collapse onto
the mode. The bandwidth is h = med |x_i - x_j|^2 / log(n + 1) (Liu & Wang's
convention) over a pseudo-random subset of the pairs (``"median_subset"``,
the default: no communication), over all pairs (``"median"``: an exact
distributed selection), or fixed.

Distribution: each rank owns a contiguous block of particles. An iteration
is one collective (``Allgather`` for equal blocks, else ``Allgatherv``): each rank evaluates the scores of its own block, and
the particles, scores, log p, invalid flags and the diagnostics of the step
just taken (|phi_i|^2, KSD row sums) travel together; the state keeps these
global arrays for the next iteration. Each rank updates its own block from
them in global order (the Stein kernel in C sums over j in order,
:mod:`phasic_mpi.inference.stein`), and the density's rows do not depend on the
rows evaluated with them (a ``rowwise`` density is evaluated on the block
alone, any other inside an array of the global shape), so every bit of the
result is the same for any number of ranks. Initial particles come from
streams keyed by (seed, particle id), the bandwidth's pairs from
counter-based draws keyed by (seed, iteration).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np

from phasic_mpi.settings import (boolean, check_settings, choice, fail, from_mapping, integer, is_number,
                                number, setting)
from phasic_mpi.inference.comm import as_communicator
from phasic_mpi.inference.parallel import BlockLayout, block_layout, gather_rows, stream
from phasic_mpi.inference.protocol import FinalRecord, Resources
from phasic_mpi.inference.resources import svgd_resources
from phasic_mpi.inference.bandwidth import (PAIR_BLOCK, STREAM_BANDWIDTH, median_bandwidth,  # noqa: F401
                                           pair_count, pair_sq_distances, subset_median_bandwidth)
from phasic_mpi.inference.stein import (column_sums, kernelized_stein_discrepancy, ksd_from_rows,
                                        stein_direction, stein_terms)
from phasic_mpi.inference.svgd_monitor import (SVGDMonitor, anneal_beta, end_of_run, monitor_arrays, monitor_from_arrays,
                                               monitor_layout, new_monitor, relative_to_score, update_monitor)

__all__ = [
    "SVGDAlgorithm",
    "SVGDContext",
    "SVGDDiagnostics",
    "SVGDSettings",
    "SVGDShared",
    "SVGDState",
    "initial_state",
    "kernelized_stein_discrepancy",
    "median_bandwidth",
    "pair_count",
    "pair_sq_distances",
    "stein_direction",
    "subset_median_bandwidth",
    "svgd_step",
]

STREAM_INIT = 1  # purpose id of the initial-particle streams
ADAGRAD_MOMENTUM, ADAGRAD_FUDGE = 0.9, 1e-6  # as in the reference SVGD code
ADAM_BETA1, ADAM_BETA2, ADAM_EPS = 0.9, 0.999, 1e-8


BANDWIDTH_RULES = ("median_subset", "median")
SCHEDULES = ("inverse_time", "exponential", "cosine", "constant")


def _bandwidth(value: Any, path: str) -> str | float:
    if isinstance(value, str) and value in BANDWIDTH_RULES:
        return value
    if not is_number(value) or not np.isfinite(value) or value <= 0:
        fail(path, f"expected 'median_subset', 'median' or a positive number, got {value!r}")
    return float(value)


def _schedule(value: Any, path: str) -> str | Callable[[int], float]:
    if callable(value) or (isinstance(value, str) and value in SCHEDULES):
        return value
    fail(path, f"expected one of {', '.join(map(repr, SCHEDULES))} or a callable "
               f"iteration -> step size, got {value!r}")


@dataclass(frozen=True)
class SVGDSettings:
    """Settings of an SVGD run: the ``[svgd]`` config section.

    Every field has the config's default and is checked on construction
    (``SVGDSettings(particles=1)`` raises ``ConfigError("svgd.particles:
    expected an integer >= 2, got 1")``).
    """

    section: ClassVar[str] = "svgd"

    particles: int = setting(integer(2), 64, "number of particles")
    iterations: int = setting(integer(1), 1000, "number of SVGD iterations")
    seed: int = setting(integer(0), 0, "seed of the counter-based random streams")
    optimizer: str = setting(choice("adagrad", "adam"), "adagrad", "step-size adaptation")
    step_size: float = setting(number(positive=True), 0.05, "base step size")
    decay: float = setting(number(0.0), 0.01, "rate of the step-size schedule")
    schedule: Any = setting(_schedule, "inverse_time",
                            "step size at iteration t: 'inverse_time' step_size/(1+decay t), "
                            "'exponential' step_size exp(-decay t), 'cosine' (to 0 at the last "
                            "iteration), 'constant'; from Python also a callable t -> step size",
                            what=" | ".join(f'"{s}"' for s in SCHEDULES))
    bandwidth: Any = setting(_bandwidth, "median_subset",
                             "'median_subset' (median heuristic over bandwidth_pairs random "
                             "pairs), 'median' (over all pairs) or a fixed h > 0",
                             what='"median_subset" | "median" | number > 0')
    bandwidth_pairs: int = setting(integer(1), 4096, "pairs drawn per iteration by 'median_subset'")
    history_every: int = setting(integer(0), 10, "store every k-th iteration (0: none)")
    ksd_every: int = setting(integer(0), 50,
                             "kernel Stein discrepancy every k iterations (0: never)")
    tolerance: float = setting(number(0.0), 0.02, "convergence threshold per window (0: no check)")
    convergence_window: int = setting(integer(1), 50, "iterations per convergence check")
    min_iterations: int = setting(integer(0), 100, "iterations before convergence can be declared")
    stop_early: bool = setting(boolean, True, "end the run when it has converged")
    anneal_iterations: int = setting(integer(0), 0, "iterations of likelihood tempering (0: none)")

    def __post_init__(self) -> None:
        check_settings(self)

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> "SVGDSettings":
        """From a config table (unknown keys are errors)."""
        return from_mapping(cls, section)

    def step_size_at(self, iteration: int) -> float:
        """The step size of update number ``iteration`` (0-based)."""
        rule, t = self.schedule, iteration
        if callable(rule):
            value = float(rule(t))
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"svgd.schedule: the callable gave step size {value!r} at "
                                 f"iteration {t}; expected a positive number")
            return value
        if rule == "inverse_time":
            return self.step_size / (1.0 + self.decay * t)
        if rule == "exponential":
            return self.step_size * float(np.exp(-self.decay * t))
        if rule == "cosine":
            return self.step_size * 0.5 * (1.0 + float(np.cos(np.pi * t / self.iterations)))
        return self.step_size


class SVGDShared(NamedTuple):
    """Global arrays at the current particles, the same on every rank."""

    z: np.ndarray  # (n, d) all particles
    scores: np.ndarray  # (n, d) grad log p
    logp: np.ndarray  # (n,)
    invalid: np.ndarray  # (n,) bool
    # the run loop's stop request (signal number, 0: none) that travelled in the
    # gather: the maximum over the ranks, so the same on every rank
    stop_request: int = 0
    logp_total: float = np.nan  # logp.sum() (numpy's order), for the diagnostics' mean


class SVGDState(NamedTuple):
    """This rank's block of the SVGD state (and the global arrays it was gathered into)."""

    iteration: int  # updates done so far
    particles: np.ndarray  # (n_local, d), unconstrained coordinates z
    moment1: np.ndarray  # (n_local, d), Adam's first moment (unused by AdaGrad)
    moment2: np.ndarray  # (n_local, d), squared-gradient history
    # the global arrays at ``particles`` (None until gathered: a new or restored
    # state); derived from the particles alone, so not part of a checkpoint
    shared: SVGDShared | None = None
    monitor: SVGDMonitor = new_monitor()  # convergence bookkeeping (checkpointed)


class SVGDDiagnostics(NamedTuple):
    """Per-iteration diagnostics, identical on every rank."""

    step_norm: float  # sqrt(mean_i |phi(x_i)|^2)
    bandwidth: float
    step_size: float
    ksd: float  # NaN unless computed this iteration
    n_invalid: int  # particles with log p = -inf
    mean_logp: float  # over the valid particles
    net_force: float  # |mean_i phi(x_i)| / sqrt(mean_i |grad log p(x_i)|^2)


class SVGDContext(NamedTuple):
    """What a step needs besides the state."""

    density: Any  # a LogDensity: evaluate(z_global, rows=slice) -> PosteriorEval
    settings: SVGDSettings
    comm: Any
    layout: BlockLayout


def initial_state(density: Any, settings: SVGDSettings, layout: BlockLayout,
                  init: np.ndarray | None = None) -> SVGDState:
    """Initial particles: prior draws mapped to z, one stream per particle id,
    or rows 0..n-1 of ``init`` ((k, d) points in z, k >= n: a warm start)."""
    d = density.n_params
    if init is not None:
        init = np.asarray(init, dtype=np.float64)
        if init.ndim != 2 or init.shape[1] != d or init.shape[0] < layout.n:
            raise ValueError(f"svgd: init must hold at least {layout.n} points of {d} "
                             f"parameters (one per particle), got shape {init.shape}")
        if not np.all(np.isfinite(init[:layout.n])):
            raise ValueError("svgd: init holds non-finite points")
        particles = np.array(init[layout.rows], dtype=np.float64)
    else:
        rows = [
            density.sample_prior_z(stream(settings.seed, STREAM_INIT, i), 1)[0]
            for i in range(layout.start, layout.stop)
        ]
        particles = np.array(rows, dtype=np.float64).reshape(layout.local_count, d)
    zeros = np.zeros_like(particles)
    return SVGDState(0, particles, zeros, zeros.copy())


def bandwidth(z: np.ndarray, iteration: int, ctx: "SVGDContext") -> float:
    """The bandwidth of ``ctx.settings`` at the global particles z (collective for "median")."""
    settings, layout = ctx.settings, ctx.layout
    if settings.bandwidth == "median_subset":
        return subset_median_bandwidth(z, settings.seed, iteration, settings.bandwidth_pairs)
    if settings.bandwidth == "median":
        return median_bandwidth(z, ctx.comm, range(layout.start, layout.stop))
    return float(settings.bandwidth)


def _optimizer_update(state: SVGDState, phi: np.ndarray, settings: SVGDSettings) -> SVGDState:
    t = state.iteration
    lr = settings.step_size_at(t)
    if settings.optimizer == "adam":
        m1 = ADAM_BETA1 * state.moment1 + (1 - ADAM_BETA1) * phi
        m2 = ADAM_BETA2 * state.moment2 + (1 - ADAM_BETA2) * phi * phi
        m1_hat = m1 / (1 - ADAM_BETA1 ** (t + 1))
        m2_hat = m2 / (1 - ADAM_BETA2 ** (t + 1))
        step = lr * m1_hat / (np.sqrt(m2_hat) + ADAM_EPS)
    elif settings.optimizer == "adagrad":
        m1 = state.moment1
        m2 = phi * phi if t == 0 else ADAGRAD_MOMENTUM * state.moment2 + (1 - ADAGRAD_MOMENTUM) * phi * phi
        step = lr * phi / (ADAGRAD_FUDGE + np.sqrt(m2))
    else:
        raise ValueError(f"unknown optimizer {settings.optimizer!r} (adagrad, adam)")
    return SVGDState(t + 1, state.particles + step, m1, m2)


def gather_block(ctx: "SVGDContext", particles: np.ndarray, like: np.ndarray | None,
                 extra: np.ndarray, beta: float = 1.0) -> tuple[SVGDShared, np.ndarray]:
    """Scores of this rank's particles, then one ``Allgatherv`` of everything.

    Parameters
    ----------
    ctx : SVGDContext
    particles : (n_local, d) array
        This rank's block.
    like : (n, d) array or None
        Global particles of the previous iteration (None: this rank's rows
        repeated). A density that is not ``rowwise`` (see
        :class:`~phasic_mpi.inference.posterior.LogDensity`) is evaluated on
        this array with the local block written in, as the whole batch would
        be (the other rows only fill it); a ``rowwise`` one (Posterior,
        FunctionDensity) on the block alone.
    extra : (n_local, k) array
        Per-particle values to gather along (diagnostics of the last step).
    beta : float
        Power of the likelihood in the scores (annealing; log p stays the
        posterior's).

    Returns
    -------
    SVGDShared
        The global arrays at the new particles.
    (n, k) array
        ``extra`` of all ranks in global order.
    (k,) array
        Its column sums (``column_sums``: numpy's ``gathered[:, c].sum()``).
    """
    layout, d = ctx.layout, particles.shape[1]
    if getattr(ctx.density, "rowwise", False):  # the block alone: O(n_local) work
        ev = ctx.density.evaluate(particles)
    else:
        full = np.resize(particles, (layout.n, d)) if like is None else like.copy()
        full[layout.rows] = particles
        ev = ctx.density.evaluate(full, rows=layout.rows)
    grad = ev.grad if beta == 1.0 else ev.logprior_grad + beta * ev.loglik_grad
    # one preallocated row block, columns written in place (no column_stack temporaries)
    local = np.empty((particles.shape[0], 2 * d + 2 + extra.shape[1]))
    local[:, :d], local[:, d:2 * d], local[:, 2 * d] = particles, grad, ev.logp
    # status = invalid + 2 x this rank's stop request: the run loop's signal flag travels
    # in this gather instead of an Allreduce of its own (integers, exact in a double)
    comm = as_communicator(ctx.comm)  # the facade (tests may hand an mpi4py communicator)
    local[:, 2 * d + 1] = ev.invalid + 2.0 * comm.stop_request()
    local[:, 2 * d + 2:] = extra
    rows = comm.allgather_rows(layout, local)
    status = rows[:, 2 * d + 1]
    # every sum of the step over the buffer's columns (log p, status, extra) in one C call
    totals = column_sums(rows[:, 2 * d:])
    # z and scores stay views into the gathered buffer (a new one each iteration): the Stein
    # kernel, the bandwidth and the sums take row strides, so no rank copies them out
    # status >= 0: a zero sum (the usual case) means no invalid particle and no stop request
    invalid = np.fmod(status, 2.0) > 0 if totals[1] else np.zeros(layout.n, dtype=bool)
    shared = SVGDShared(rows[:, :d], rows[:, d:2 * d], rows[:, 2 * d], invalid,
                        int(status.max()) // 2 if totals[1] else 0, float(totals[0]))
    return shared, rows[:, 2 * d + 2:], totals[2:]


def svgd_step(state: SVGDState, ctx: SVGDContext) -> tuple[SVGDState, SVGDDiagnostics]:
    """One SVGD iteration; a collective call on ``ctx.comm``.

    One ``Allgatherv`` (see :func:`gather_block`), and one more in the first
    iteration of a new or restored state (its global arrays); the
    ``"median"`` bandwidth adds its selection's collectives.
    """
    settings, layout = ctx.settings, ctx.layout
    shared, t = state.shared, state.iteration
    if shared is None:
        shared, _, _ = gather_block(ctx, state.particles, None, np.empty((layout.local_count, 0)),
                                    anneal_beta(settings, t))
    h = bandwidth(shared.z, state.iteration, ctx)
    last = state.iteration + 1 == settings.iterations
    want_ksd = bool(settings.ksd_every) and (state.iteration % settings.ksd_every == 0 or last)
    phi, ksd_rows = stein_terms(shared.z, shared.scores, range(layout.start, layout.stop), h, ksd=want_ksd)
    new = _optimizer_update(state, phi, settings)
    # |phi_i|^2, the KSD row sums (only when due: a column less in the gather
    # otherwise) and phi_i travel with the new particles
    extra = np.empty((len(phi), 1 + want_ksd + phi.shape[1]))
    extra[:, 0] = (phi * phi).sum(axis=1)
    if want_ksd:
        extra[:, 1] = ksd_rows
    extra[:, 1 + want_ksd:] = phi
    new_shared, gathered, sums = gather_block(ctx, new.particles, shared.z, extra,
                                              anneal_beta(settings, t + 1))
    step_norm = float(np.sqrt(sums[0] / layout.n))
    # mean_i phi_i from the column sums (each in numpy's pairwise order, as the row sums
    # of a (d, n) copy were: numpy reduces axis 0 of an (n, d) array one row at a time)
    mean_phi = sums[1 + want_ksd:] / layout.n
    rel = relative_to_score(float(np.linalg.norm(mean_phi)), shared.scores)
    n_invalid = int(shared.invalid.sum())
    # all valid (the usual case): the mean of the column, the bits of the mean of its
    # valid entries (the same values summed in the same order), from the gather's sum
    if n_invalid == 0 and np.isfinite(shared.logp_total):
        mean_logp = float(np.float64(shared.logp_total) / layout.n)
    else:
        valid = shared.logp if n_invalid == 0 else shared.logp[~shared.invalid]
        mean_logp = float(valid.mean()) if valid.size else -np.inf
    diag = SVGDDiagnostics(
        step_norm=step_norm,
        bandwidth=h,
        step_size=settings.step_size_at(state.iteration),
        ksd=ksd_from_rows(gathered[:, 1]) if want_ksd else np.nan,
        n_invalid=n_invalid,
        mean_logp=mean_logp,
        net_force=rel,
    )
    monitor = update_monitor(state.monitor, t + 1, rel, new_shared.z, settings)
    return new._replace(shared=new_shared, monitor=monitor), diag


def gather_state(state: SVGDState, ctx: SVGDContext) -> dict[str, np.ndarray] | None:
    """The global state on rank 0 (None elsewhere), for checkpoints."""
    parts = {
        name: gather_rows(ctx.comm, ctx.layout, getattr(state, name))
        for name in ("particles", "moment1", "moment2")
    }
    if ctx.comm.rank != 0:
        return None
    return {**parts, **monitor_arrays(state.monitor, state.particles.shape[1])}


def scatter_state(arrays: dict[str, np.ndarray], iteration: int, ctx: SVGDContext) -> SVGDState:
    """This rank's block of a global state (every rank holds ``arrays``)."""
    rows = ctx.layout.rows
    return SVGDState(
        iteration,
        *(np.ascontiguousarray(arrays[name][rows]) for name in ("particles", "moment1", "moment2")),
        monitor=monitor_from_arrays(arrays),
    )


class SVGDAlgorithm:
    """SVGD as a plug-in of the run loop (:class:`~phasic_mpi.inference.protocol.Algorithm`).

    The loop owns files, checkpoints and progress; this class only maps its
    calls to the pure functions above and returns arrays.
    """

    name = "svgd"
    Settings = SVGDSettings
    iteration_label = "iteration"
    figures = ("svgd_trajectories", "svgd_diagnostics")  # names in plotting's figure table

    def __init__(self, settings: SVGDSettings) -> None:
        self.settings = settings
        self.n_iterations = settings.iterations

    def context(self, density: Any, comm: Any) -> SVGDContext:
        comm = as_communicator(comm)
        if self.settings.particles < comm.size:
            raise ValueError(
                f"svgd.particles = {self.settings.particles} is smaller than the number of MPI "
                f"ranks ({comm.size}); use at least one particle per rank"
            )
        return SVGDContext(density, self.settings, comm,
                           block_layout(self.settings.particles, comm.size, comm.rank))

    def resources(self, n_params: int, n_ranks: int, kept_iterations: int = 0) -> Resources:
        """Memory per rank and a time lower bound (:func:`svgd_resources`)."""
        return svgd_resources(self.settings, n_params, n_ranks, kept_iterations)

    def start(self, ctx: SVGDContext, init: np.ndarray | None = None) -> SVGDState:
        return initial_state(ctx.density, self.settings, ctx.layout, init)

    def step(self, state: SVGDState, ctx: SVGDContext) -> tuple[SVGDState, SVGDDiagnostics]:
        return svgd_step(state, ctx)

    def describe(self, diag: SVGDDiagnostics) -> str:
        """One progress-line summary of an iteration's diagnostics."""
        text = f"step_norm {diag.step_norm:.3g}  net_force {diag.net_force:.3g}  h {diag.bandwidth:.3g}"
        if not np.isnan(diag.ksd):
            text += f"  ksd {diag.ksd:.3g}"
        if diag.n_invalid:
            text += f"  invalid {diag.n_invalid}"
        return text

    def agreed_stop(self, state: SVGDState) -> int | None:
        """The run loop's stop request that travelled in the step's gather (the
        maximum over the ranks, the same on every rank); None before any step."""
        return None if state.shared is None else state.shared.stop_request

    def converged(self, state: SVGDState, diag: SVGDDiagnostics) -> bool:
        """Whether to end the run now (``stop_early`` and the check passed; the
        same on every rank: see :mod:`phasic_mpi.inference.svgd_monitor`)."""
        return self.settings.stop_early and state.monitor.converged_at >= 0

    def history_due(self, iteration: int) -> bool:
        every = self.settings.history_every
        return bool(every) and (iteration % every == 0 or iteration == self.n_iterations)

    def history(self, state: SVGDState, ctx: SVGDContext) -> dict[str, np.ndarray] | None:
        """Particles in parameter space after ``state.iteration`` updates (rank 0)."""
        if state.shared is not None:  # every rank holds them already: no gather
            if ctx.comm.rank != 0:
                return None
            z = np.ascontiguousarray(state.shared.z)  # a density's to_theta sees the usual layout
        else:
            z = ctx.comm.gather_rows(ctx.layout, state.particles)
            if z is None:
                return None
        return {"particles": ctx.density.to_theta(z)[None],
                "particle_iteration": np.array([state.iteration])}

    def checkpoint(self, state: SVGDState, ctx: SVGDContext) -> dict[str, np.ndarray] | None:
        return gather_state(state, ctx)

    def checkpoint_layout(self, ctx: SVGDContext) -> dict[str, tuple]:
        """Shapes and dtype kinds of :meth:`checkpoint`'s arrays (checked before :meth:`restore`)."""
        n, d = self.settings.particles, ctx.density.n_params
        return {**{name: ((n, d), "f") for name in ("particles", "moment1", "moment2")}, **monitor_layout(d)}

    def restore(self, arrays: dict[str, np.ndarray], iteration: int, ctx: SVGDContext) -> SVGDState:
        return scatter_state(arrays, iteration, ctx)

    def finish(self, state: SVGDState, ctx: SVGDContext) -> FinalRecord | None:
        """Final particles as draws (chain 1, draw = particle) and their log density."""
        z = (np.ascontiguousarray(state.shared.z) if state.shared is not None
             else ctx.comm.allgather_rows(ctx.layout, state.particles))
        ev = ctx.density.evaluate(z, rows=ctx.layout.rows)
        local = np.column_stack([ev.logp, ev.loglik, ev.invalid.astype(np.float64)])
        stats = ctx.comm.gather_rows(ctx.layout, local)
        if stats is None:
            return None
        theta = ctx.density.to_theta(z)
        report, warnings = end_of_run(self.settings, state.monitor, state.iteration, stats[:, 0],
                                      z.shape[1])
        return FinalRecord(
            draws={name: theta[None, :, m] for m, name in enumerate(ctx.density.param_names)},
            sample_stats={"lp": stats[None, :, 0], "log_likelihood_total": stats[None, :, 1]},
            arrays={"final_z": z},
            diagnostics={"n_invalid_final": int((stats[:, 2] > 0).sum()), **report},
            independent=True,  # particles, not Markov draws: no R-hat, ESS = n
            final_z=z,
            warnings=tuple(warnings),
        )
