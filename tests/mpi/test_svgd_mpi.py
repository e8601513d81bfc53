"""Distributed SVGD gives the serial bits at any rank count."""

from types import SimpleNamespace

import numpy as np
import pytest

from phasic_mpi.inference.parallel import allgather_rows, block_layout
from phasic_mpi.inference import selection
from pairs_reference import pairs_median_bandwidth
from phasic_mpi.inference.svgd import SVGDContext, SVGDSettings, initial_state, median_bandwidth, svgd_step


class Banana:
    """A curved 2-D target whose score needs exp/log-free arithmetic only."""

    n_params = 2
    param_names = ("a", "b")

    def evaluate(self, z, rows=slice(None)):
        x, y = z[rows, 0], z[rows, 1]
        r = y - x * x
        logp = -0.5 * x * x - 2.0 * r * r
        grad = np.column_stack([-x + 8.0 * r * x, -4.0 * r])
        return SimpleNamespace(logp=logp, grad=grad, invalid=np.zeros(len(x), bool))

    def sample_prior_z(self, rng, n):
        return rng.normal(size=(n, 2))


def run(comm, settings):
    layout = block_layout(settings.particles, comm.size, comm.rank)
    ctx = SVGDContext(Banana(), settings, comm, layout)
    state = initial_state(ctx.density, settings, layout)
    diags = []
    for _ in range(settings.iterations):
        state, diag = svgd_step(state, ctx)
        diags.append((diag.step_norm, diag.bandwidth, diag.mean_logp))
    return allgather_rows(comm, layout, state.particles), np.array(diags)


@pytest.mark.mpi
@pytest.mark.parametrize("optimizer", ["adagrad", "adam"])
def test_distributed_svgd_is_bitwise_serial(optimizer):
    from mpi4py import MPI

    comm = MPI.COMM_WORLD.Dup()
    try:
        settings = SVGDSettings(particles=13, iterations=25, seed=11, optimizer=optimizer, ksd_every=0)
        particles, diags = run(comm, settings)
        serial_particles, serial_diags = run(MPI.COMM_SELF, settings)
        assert np.array_equal(particles, serial_particles)
        assert np.array_equal(diags, serial_diags)
    finally:
        comm.Free()


@pytest.mark.mpi
@pytest.mark.parametrize("sample, gather", [(1 << 10, 1 << 11), (4, 4), (16, 8)])
def test_distributed_median_is_numpys_median_of_the_pairs(monkeypatch, sample, gather):
    """Exact (==) at any rank count, with ties, NaN, n odd and even, n = 2, 3 (fewer
    particles than ranks: empty blocks), and through many selection rounds."""
    from mpi4py import MPI

    monkeypatch.setattr(selection, "SELECT_SAMPLE", sample)
    monkeypatch.setattr(selection, "SELECT_GATHER", gather)
    comm = MPI.COMM_WORLD.Dup()
    try:
        rng = np.random.default_rng(12)
        for n in (2, 3, 4, 5, 20, 21, 131, 200):
            layout = block_layout(n, comm.size, comm.rank)
            rows = range(layout.start, layout.stop)
            nan = rng.normal(size=(n, 2))
            nan[n // 2, 1] = np.nan
            for z in (rng.normal(size=(n, 2)), np.round(rng.normal(size=(n, 2))),
                      rng.integers(0, 3, size=(n, 1)).astype(float), rng.normal(size=(n, 17)), nan):
                assert median_bandwidth(z, comm, rows) == pairs_median_bandwidth(z), (n, z[:3])
    finally:
        comm.Free()


@pytest.mark.mpi
@pytest.mark.parametrize("bandwidth, pairs", [("median_subset", 10), ("median", 4096), (0.9, 4096)])
def test_every_bandwidth_rule_and_the_ksd_are_bitwise_serial(bandwidth, pairs):
    """The subset median (10 of 78 pairs), the distributed exact median and a
    fixed h; KSD row sums gathered in global order: the serial bits."""
    from mpi4py import MPI

    def diagnostics(comm, settings):
        layout = block_layout(settings.particles, comm.size, comm.rank)
        ctx = SVGDContext(Banana(), settings, comm, layout)
        state, rows = initial_state(ctx.density, settings, layout), []
        for _ in range(settings.iterations):
            state, diag = svgd_step(state, ctx)
            rows.append([diag.step_norm, diag.bandwidth, diag.ksd, diag.mean_logp])
        return allgather_rows(comm, layout, state.particles), np.array(rows)

    comm = MPI.COMM_WORLD.Dup()
    try:
        settings = SVGDSettings(particles=13, iterations=12, seed=5, bandwidth=bandwidth,
                                bandwidth_pairs=pairs, ksd_every=3)
        particles, diags = diagnostics(comm, settings)
        serial_particles, serial_diags = diagnostics(MPI.COMM_SELF, settings)
        assert np.array_equal(particles, serial_particles)
        assert np.array_equal(diags, serial_diags, equal_nan=True)
        assert np.isfinite(diags[::3, 2]).all() and np.isnan(diags[1::3, 2]).all()
    finally:
        comm.Free()


@pytest.mark.mpi
def test_the_convergence_check_stops_every_layout_at_the_serial_iteration():
    """The net force and the drift come from global arrays: any rank count
    stops at the serial run's iteration with its bits."""
    from mpi4py import MPI

    from phasic_mpi.inference.comm import as_communicator
    from phasic_mpi.inference.svgd import SVGDAlgorithm

    def stop(comm):
        algorithm = SVGDAlgorithm(SVGDSettings(particles=13, iterations=2000, seed=11,
                                               convergence_window=20, min_iterations=0))
        ctx = algorithm.context(Banana(), as_communicator(comm))
        state = algorithm.start(ctx)
        while state.iteration < algorithm.n_iterations:
            state, diag = algorithm.step(state, ctx)
            if algorithm.converged(state, diag):
                break
        return state.iteration, allgather_rows(comm, ctx.layout, state.particles)

    comm = MPI.COMM_WORLD.Dup()
    try:
        at, particles = stop(comm)
        serial_at, serial_particles = stop(MPI.COMM_SELF)
        assert at == serial_at < 2000
        assert np.array_equal(particles, serial_particles)
    finally:
        comm.Free()


def rabbits_posterior():
    """A real, rowwise Posterior: each rank evaluates its block on its own."""
    from phasic_mpi import Observations, models
    from phasic_mpi.inference.posterior import Posterior
    from phasic_mpi.inference.priors import Gamma, LogNormal, Uniform

    graph = models.rabbits(2)
    data = Observations(graph.sample(30, [1.0, 2.0, 4.0], seed=3), right_censored=[1.5])
    return Posterior(graph, data, [Gamma(2.0, 1.5), LogNormal(0.5, 1.0), Uniform(0.5, 10.0)])


@pytest.mark.mpi
@pytest.mark.parametrize("particles", [12, 13])
def test_rowwise_posterior_is_bitwise_serial_with_one_collective_per_iteration(particles):
    """Blocks evaluated alone (Posterior.rowwise), the subset bandwidth (30 of
    66 / 78 pairs): the serial bits. Every step after the first is one
    collective: Allgather when the blocks are equal, Allgatherv otherwise."""
    from mpi4py import MPI

    from phasic_mpi.inference.comm import as_communicator

    class Counting:
        def __init__(self, comm):
            self.comm, self.calls = comm, []

        def __getattr__(self, name):
            attr = getattr(self.comm, name)
            if not name[:1].isupper():
                return attr

            def counted(*args, **kwargs):
                self.calls.append(name)
                return attr(*args, **kwargs)
            return counted

    def run_posterior(comm, settings):
        counting = Counting(comm)
        layout = block_layout(settings.particles, comm.size, comm.rank)
        ctx = SVGDContext(rabbits_posterior(), settings, as_communicator(counting), layout)
        state, diags, calls = initial_state(ctx.density, settings, layout), [], []
        for _ in range(settings.iterations):
            counting.calls = []
            state, diag = svgd_step(state, ctx)
            diags.append((diag.step_norm, diag.bandwidth, diag.ksd, diag.mean_logp))
            calls.append(counting.calls)
        return allgather_rows(comm, layout, state.particles), np.array(diags), calls

    comm = MPI.COMM_WORLD.Dup()
    try:
        settings = SVGDSettings(particles=particles, iterations=8, seed=7, bandwidth_pairs=30, ksd_every=2)
        z, diags, calls = run_posterior(comm, settings)
        serial_z, serial_diags, _ = run_posterior(MPI.COMM_SELF, settings)
        assert np.array_equal(z, serial_z)
        assert np.array_equal(diags, serial_diags, equal_nan=True)
        assert np.isfinite(diags).all(axis=0)[[0, 1, 3]].all()
        name = "Allgather" if particles % comm.size == 0 else "Allgatherv"
        assert calls[0] == [name, name] and all(c == [name] for c in calls[1:]), calls
    finally:
        comm.Free()


@pytest.mark.mpi
def test_a_stop_request_on_one_rank_is_agreed_by_every_rank_in_the_gather():
    """Only the last rank has a signal (from its third step on): every rank reads it
    from that step's gather, and the particles keep the serial bits."""
    from mpi4py import MPI

    from phasic_mpi.inference.comm import as_communicator
    from phasic_mpi.inference.svgd import SVGDAlgorithm

    comm = MPI.COMM_WORLD.Dup()
    try:
        settings = SVGDSettings(particles=13, iterations=5, seed=7, bandwidth_pairs=30)
        layout = block_layout(settings.particles, comm.size, comm.rank)
        ctx = SVGDContext(Banana(), settings, as_communicator(comm), layout)
        step = [0]
        ctx.comm.watch_stop(lambda: 15 if comm.rank == comm.size - 1 and step[0] >= 2 else 0)
        state, agreed = initial_state(ctx.density, settings, layout), []
        for step[0] in range(settings.iterations):
            state, _ = svgd_step(state, ctx)
            agreed.append(SVGDAlgorithm(settings).agreed_stop(state))
        assert agreed == [0, 0, 15, 15, 15]
        z = allgather_rows(comm, layout, state.particles)
        serial, _ = run(MPI.COMM_SELF, settings)
        assert np.array_equal(z, serial)
    finally:
        comm.Free()
