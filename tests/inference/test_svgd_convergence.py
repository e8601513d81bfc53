"""SVGD's defaults converge, the convergence check stops a run at the same
iteration whatever the rank layout or a resume, and particles stuck in a
separated mode are reported (issue 11, items 4 and 5).

Oracle: the exact posterior by quadrature on a grid in z (the posterior's
own coordinates), not anything SVGD computes.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest

import phasic_mpi as pm
from phasic_mpi import Graph
from phasic_mpi.errors import ConvergenceWarning
from phasic_mpi.inference.comm import SerialCommunicator
from phasic_mpi.inference.posterior import Posterior
from phasic_mpi.inference.priors import LogNormal
from phasic_mpi.inference.svgd import SVGDAlgorithm, SVGDSettings
from phasic_mpi.inference.svgd_monitor import (SVGDMonitor, monitor_arrays, monitor_from_arrays,
                                               new_monitor, relative_to_score, stranded_gap,
                                               update_monitor)

PRIORS = {"a": LogNormal(0.0, 1.0), "b": LogNormal(0.0, 1.0)}


def erlang_or_exponential() -> Graph:
    """T = min(Erlang(3, a), Exp(b)): phases 0, 1, 2 advance at a (the last one
    into absorption); every phase is left for absorption at b."""
    def transitions(state):
        j = state[0]
        if j < 0:
            return []
        return [((j + 1,) if j < 2 else (-1,), [1.0, 0.0]), ((-1,), [0.0, 1.0])]
    return Graph.from_callback(transitions, (0,), 2, param_names=["a", "b"])


def mixture(weight: float = 0.3) -> Graph:
    """Exp(l1) with probability ``weight``, else Exp(l2)."""
    def transitions(state):
        return [((0,), [1.0, 0.0] if state == (1,) else [0.0, 1.0])] if state != (0,) else []
    return Graph.from_callback(transitions, {(1,): weight, (2,): 1 - weight}, 2,
                               param_names=["l1", "l2"])


def quadrature(post: Posterior, center, half_width, n: int = 301):
    """Posterior weights of an n x n grid in z (midpoint sums of a smooth,
    rapidly decaying density: the grid spans +-8 sd, where it is < e^-32)."""
    axes = [np.linspace(c - w, c + w, n) for c, w in zip(center, half_width)]
    z = np.column_stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")])
    lp = post.evaluate(z).logp
    w = np.exp(lp - lp.max())
    return z, w / w.sum()


def posterior_moments(post: Posterior, center, half_width, n: int = 301):
    z, w = quadrature(post, center, half_width, n)
    theta = post.to_theta(z)
    mean = w @ theta
    return mean, np.sqrt(w @ (theta - mean) ** 2)


@pytest.fixture(scope="module")
def erlang_problem():
    graph = erlang_or_exponential()
    data = graph.sample(300, [3.0, 0.5], seed=1)
    post = Posterior(graph, data, PRIORS)
    # a coarse grid locates the posterior, a fine one +-8 sd around it is the oracle
    z, w = quadrature(post, [1.0, -1.25], [2.0, 2.75], 121)
    zm = w @ z
    zs = np.sqrt(w @ (z - zm) ** 2)
    mean, sd = posterior_moments(post, zm, 8 * zs)
    coarse_mean, coarse_sd = posterior_moments(post, zm, 8 * zs, 201)
    # the quadrature itself has converged far below the tolerances tested
    assert np.allclose(mean, coarse_mean, rtol=1e-8) and np.allclose(sd, coarse_sd, rtol=1e-6)
    return graph, data, mean, sd


def test_the_defaults_converge_on_a_two_parameter_posterior(erlang_problem):
    """Issue 11's done-when: only particles = 128 and iterations = 1000 set.

    Tolerance: 128 independent draws would give a mean to sd/sqrt(128) =
    0.088 sd and an sd to 1/sqrt(256) = 6 % (one standard error); SVGD's
    particles are a deterministic, more even cover, so its error is no
    larger (0.05 sd and 2 % measured with this seed). The issue's 0.1 sd and
    15 % are therefore > 1 and > 2.5 standard errors of an iid sample, and
    the old defaults (0.25 and 0.14 sd off, the issue's failure) fail them.
    """
    graph, data, mean, sd = erlang_problem
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # converged: no warning
        result = pm.svgd(graph, data, priors=PRIORS, particles=128, iterations=1000,
                         progress="none")
    theta = result.theta
    assert np.all(np.abs(theta.mean(axis=0) - mean) / sd < 0.1)
    assert np.all(np.abs(theta.std(axis=0, ddof=1) / sd - 1) < 0.15)
    diag = result.diagnostics
    assert diag["converged"] is True and diag["converged_at"] == result.iteration
    assert result.iteration < 1000 and result.iteration % 50 == 0  # stopped early, at a check
    assert diag["stranded_particles"] == 0
    rel = result.history["svgd/diagnostics/net_force"]
    assert rel.shape == (result.iteration,) and np.mean(rel[-50:]) <= 0.02


def test_a_constant_step_does_not_converge_and_says_so(erlang_problem):
    """decay = 0 (the old default): the particles jitter (net force
    ~0.08 > 0.02), the check never passes, and the run warns."""
    graph, data, _, _ = erlang_problem
    with pytest.warns(ConvergenceWarning, match="did not converge in 300 iterations"):
        result = pm.svgd(graph, data, priors=PRIORS, particles=32, iterations=300, decay=0.0,
                         progress="none")
    assert result.diagnostics["converged"] is False
    assert result.diagnostics["converged_at"] is None
    assert result.iteration == 300


def test_stop_early_false_runs_every_iteration_and_records_convergence(erlang_problem):
    graph, data, _, _ = erlang_problem
    kwargs = dict(priors=PRIORS, particles=32, iterations=800, progress="none")
    stopped = pm.svgd(graph, data, **kwargs)
    full = pm.svgd(graph, data, stop_early=False, **kwargs)
    at = stopped.diagnostics["converged_at"]
    assert at is not None and stopped.iteration == at < 800
    assert full.iteration == 800 and full.diagnostics["converged_at"] == at
    # the same trajectory up to the stop, bit for bit
    step = "svgd/diagnostics/step_norm"
    assert np.array_equal(stopped.history[step], full.history[step][:at])


def test_resume_from_a_checkpoint_mid_window_stops_at_the_same_iteration(erlang_problem):
    """The window's running sum and the moments of the last check are part of
    the checkpoint: a run restored mid-window takes the same decision."""
    graph, data, _, _ = erlang_problem
    post = Posterior(graph, data, PRIORS)
    algorithm = SVGDAlgorithm(SVGDSettings(particles=32, iterations=800))
    ctx = algorithm.context(post, SerialCommunicator())

    def run(state, stop_at=None):
        while state.iteration < algorithm.n_iterations and state.iteration != stop_at:
            state, diag = algorithm.step(state, ctx)
            if algorithm.converged(state, diag):
                break
        return state

    straight = run(algorithm.start(ctx))
    assert 0 < straight.monitor.converged_at == straight.iteration < 800
    half = run(algorithm.start(ctx), stop_at=straight.iteration - 27)
    assert half.monitor.rel_sum > 0  # mid-window
    arrays = {k: np.array(v) for k, v in algorithm.checkpoint(half, ctx).items()}
    resumed = run(algorithm.restore(arrays, half.iteration, ctx))
    assert resumed.iteration == straight.iteration
    assert np.array_equal(resumed.particles, straight.particles)


class Gaussian:
    """N(mean, sd^2 I) in z: log p and its score."""

    def __init__(self, mean, sd):
        self.mean, self.sd = np.asarray(mean, float), sd
        self.n_params = len(self.mean)

    def evaluate(self, z, rows=slice(None)):
        dz = (z[rows] - self.mean) / self.sd
        return SimpleNamespace(logp=-0.5 * (dz * dz).sum(axis=1), grad=-dz / self.sd,
                               invalid=np.zeros(len(dz), bool))


def test_the_net_force_does_not_depend_on_the_scale_of_z():
    """Scaling the target, the particles and (through the median) h by c
    scales phi and the scores by 1/c: r is unchanged; and r is |mean phi|
    over the score's root mean square, recomputed here from phi in numpy."""
    from stein_reference import stein_direction as stein_direction_reference

    z0 = np.random.default_rng(3).normal(size=(20, 2)) + [1.0, -0.5]
    values = []
    for c in (1.0, 7.0):
        target = Gaussian([0.0, 0.0], c)
        settings = SVGDSettings(particles=20, iterations=5, bandwidth="median", ksd_every=0)
        algorithm = SVGDAlgorithm(settings)
        ctx = algorithm.context(target, SerialCommunicator())
        state, diag = algorithm.step(algorithm.start(ctx, init=c * z0), ctx)
        values.append(diag.net_force)
        ev = target.evaluate(c * z0)
        phi = stein_direction_reference(c * z0, ev.grad, range(20), diag.bandwidth)
        rms = np.sqrt(np.mean(np.sum(ev.grad ** 2, axis=1)))
        assert diag.net_force == pytest.approx(np.linalg.norm(phi.mean(axis=0)) / rms, rel=1e-10)
    assert values[0] == pytest.approx(values[1], rel=1e-10) and values[0] > 0.01
    assert relative_to_score(0.0, np.zeros((4, 2))) == 0.0
    assert relative_to_score(1.0, np.full((4, 2), np.inf)) == np.inf


def test_the_check_needs_a_small_force_and_no_drift():
    settings = SVGDSettings(tolerance=0.02, convergence_window=10, min_iterations=20)
    z = np.random.default_rng(0).normal(size=(50, 2))
    m = new_monitor()
    for t in range(1, 31):  # r = 0.01 throughout, particles fixed
        m = update_monitor(m, t, 0.01, z, settings)
        # no decision before min_iterations, or without a previous check
        assert (m.converged_at >= 0) == (t >= 20)
    assert m.converged_at == 20
    # a force above the tolerance, or a drift of the mean, or of the spread
    base = update_monitor(new_monitor()._replace(rel_sum=0.0), 10, 0.0, z, settings)
    moved = z + np.array([0.03 * z[:, 0].std(), 0.0])
    spread = z * np.array([1.0, 1.03])
    for rel, after in [(0.03 * 10, z), (0.0, moved), (0.0, spread)]:
        done = update_monitor(base._replace(rel_sum=rel), 20, 0.0, after, settings)
        assert done.converged_at == -1
    assert update_monitor(base, 20, 0.0, z * 1.01, settings).converged_at == 20
    # annealing: the window must lie after it
    annealed = SVGDSettings(tolerance=0.02, convergence_window=10, min_iterations=0,
                            anneal_iterations=15)
    assert update_monitor(base, 20, 0.0, z, annealed).converged_at == -1
    assert update_monitor(base, 30, 0.0, z, annealed).converged_at == 30
    # tolerance 0: never checked
    off = SVGDSettings(tolerance=0.0, convergence_window=10, min_iterations=0)
    assert update_monitor(base, 20, 0.0, z, off).converged_at == -1


def test_monitor_checkpoint_arrays_round_trip():
    m = SVGDMonitor(0.25, np.array([1.0, -2.0]), np.array([0.5, 3.0]), 150)
    back = monitor_from_arrays(monitor_arrays(m, 2))
    assert back.rel_sum == 0.25 and back.converged_at == 150
    assert np.array_equal(back.mean, m.mean) and np.array_equal(back.sd, m.sd)
    assert monitor_from_arrays(monitor_arrays(new_monitor(), 2)) == new_monitor()
    assert monitor_from_arrays({}) == new_monitor()  # a checkpoint of an older version


def test_stranded_gap_is_the_chi_squared_quantile():
    """c = chi2_d(0.999)/2; for d = 2, chi2_2 is exponential with mean 2: c = ln 1000."""
    assert stranded_gap(2) == pytest.approx(np.log(1000.0), rel=1e-12)


@pytest.fixture(scope="module")
def mixture_problem():
    graph = mixture(0.3)
    data = graph.sample(200, [1.0, 4.0], seed=2)
    priors = {"l1": LogNormal(0.0, 1.0), "l2": LogNormal(0.0, 1.0)}
    post = Posterior(graph, data, priors)
    z, w = quadrature(post, [0.0, 0.0], [4.0, 4.0], 401)
    theta = post.to_theta(z)
    swapped_mass = float(w[theta[:, 0] > theta[:, 1]].sum())
    return graph, data, priors, swapped_mass


def run_mixture(graph, data, priors, **settings):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = pm.svgd(graph, data, priors=priors, progress="none", **settings)
    messages = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    theta = result.theta
    return result, float(np.mean(theta[:, 0] > theta[:, 1])), messages


def test_particles_stuck_in_a_label_swapped_mode_are_reported(mixture_problem):
    """The label-swapped mode (l1 > l2) holds < 1e-3 of the posterior mass by
    quadrature, yet most particles end there; exactly those are counted as
    stranded (8.9 below the best particle, beyond c = ln 1000 = 6.9, while the
    others are within 3.1), and the run advises parallel tempering."""
    graph, data, priors, swapped_mass = mixture_problem
    assert swapped_mass < 1e-3
    result, share, messages = run_mixture(graph, data, priors)
    assert share > 0.5  # 59 %: SVGD's share is not the mode's mass
    lp = result.sample_stats["lp"][0]
    theta = result.theta
    far = lp < lp.max() - stranded_gap(2)
    assert np.array_equal(far, theta[:, 0] > theta[:, 1])
    assert result.diagnostics["stranded_particles"] == int(far.sum())
    assert any("parallel tempering" in m and f"{far.sum()} of 64 particles" in m for m in messages)


def test_annealing_moves_particles_to_the_heavy_mode(mixture_problem):
    """Tempering the likelihood during the first 500 iterations leaves far
    fewer particles in the swapped mode (16 % against 59 %: measured), though
    still far more than its mass, so the warning stays."""
    graph, data, priors, swapped_mass = mixture_problem
    _, plain, _ = run_mixture(graph, data, priors)
    result, annealed, messages = run_mixture(graph, data, priors, anneal_iterations=500)
    assert annealed < plain / 2
    assert annealed > swapped_mass and any("parallel tempering" in m for m in messages)
    assert result.diagnostics["converged_at"] > 500  # not while tempered
