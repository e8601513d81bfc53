"""SVGD: the update against an independent implementation, and accuracy on
targets with known moments (run serially, on MPI.COMM_SELF)."""

from types import SimpleNamespace

import numpy as np

from phasic_mpi.inference.comm import as_communicator
import pytest

from phasic_mpi.inference.parallel import block_layout
from phasic_mpi.inference.svgd import (
    SVGDContext,
    SVGDSettings,
    initial_state,
    kernelized_stein_discrepancy,
    median_bandwidth,
    pair_count,
    pair_sq_distances,
    stein_direction,
    svgd_step,
)
from phasic_mpi.inference import selection
from phasic_mpi.inference import svgd as svgd_module
from pairs_reference import pair_value, pairs_median_bandwidth


class GaussianDensity:
    """A multivariate normal target in z = theta (for tests of SVGD only)."""

    def __init__(self, mean, cov, init_scale=1.0):
        self.mean = np.asarray(mean, float)
        self.prec = np.linalg.inv(cov)
        self.n_params = len(self.mean)
        self.param_names = tuple(f"x{i}" for i in range(self.n_params))
        self.init_scale = init_scale

    def evaluate(self, z, rows=slice(None)):
        dz = z[rows] - self.mean
        logp = -0.5 * np.einsum("ij,jk,ik->i", dz, self.prec, dz)
        grad = -dz @ self.prec
        zeros = np.zeros(len(dz))
        return SimpleNamespace(logp=logp, grad=grad, loglik=logp, invalid=zeros.astype(bool),
                               logprior=zeros)

    def sample_prior_z(self, rng, n):
        return rng.normal(0.0, self.init_scale, size=(n, self.n_params))

    def to_theta(self, z):
        return z


def comm_self():
    from mpi4py import MPI

    return MPI.COMM_SELF


def run_svgd(density, settings):
    comm = comm_self()
    layout = block_layout(settings.particles, 1, 0)
    ctx = SVGDContext(density, settings, comm, layout)
    state = initial_state(density, settings, layout)
    diags = []
    for _ in range(settings.iterations):
        state, diag = svgd_step(state, ctx)
        diags.append(diag)
    run_svgd.first = diags[0]
    return state, diag


def test_stein_direction_against_finite_difference_kernel_gradient():
    """phi = 1/n sum_j [k(x_j, x_i) s_j + d/dx_j k(x_j, x_i)], with the kernel
    gradient taken numerically: checks the repulsive term's sign and size."""
    rng = np.random.default_rng(0)
    z, s = rng.normal(size=(7, 3)), rng.normal(size=(7, 3))
    h = 0.8

    def kernel(a, b):
        return np.exp(-np.sum((a - b) ** 2) / h)

    want = np.zeros_like(z)
    eps = 1e-6
    for i in range(7):
        for j in range(7):
            grad_j = np.array([
                (kernel(z[j] + eps * e, z[i]) - kernel(z[j] - eps * e, z[i])) / (2 * eps) for e in np.eye(3)
            ])
            want[i] += kernel(z[j], z[i]) * s[j] + grad_j
    want /= 7
    np.testing.assert_allclose(stein_direction(z, s, range(7), h), want, rtol=1e-7, atol=1e-9)
    # repulsion alone (zero scores) pushes two particles apart
    pair = np.array([[0.0], [1.0]])
    phi = stein_direction(pair, np.zeros_like(pair), range(2), 1.0)
    assert phi[0, 0] < 0 < phi[1, 0]


def test_rows_do_not_depend_on_the_block():
    rng = np.random.default_rng(1)
    z, s = rng.normal(size=(11, 2)), rng.normal(size=(11, 2))
    whole = stein_direction(z, s, range(11), 0.7)
    parts = np.vstack([stein_direction(z, s, range(0, 4), 0.7), stein_direction(z, s, range(4, 11), 0.7)])
    assert np.array_equal(whole, parts)


def test_median_bandwidth():
    z = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    d2 = [25.0, 1.0, 18.0]
    assert median_bandwidth(z) == pytest.approx(np.median(d2) / np.log(4.0))
    assert median_bandwidth(np.zeros((5, 2))) == 1.0


def particle_sets():
    rng = np.random.default_rng(7)
    for n in (2, 3, 4, 5, 20, 21, 131, 200):
        yield rng.normal(size=(n, 2))
        yield np.round(rng.normal(size=(n, 2)))  # many tied distances
        yield rng.integers(0, 3, size=(n, 1)).astype(float)  # few distinct distances
        yield rng.normal(size=(n, 17))  # numpy's pairwise sum over d
    yield np.array([[0.0], [1.0], [np.nan]])  # a NaN distance: h = 1
    yield np.array([[0.0, 1.0], [np.nan, 0.0], [1.0, 2.0], [3.0, 0.0]])


def test_median_bandwidth_is_numpys_median_of_the_pairs():
    """Exact (==) against numpy's median of the pairs, computed row by row in a plain loop."""
    for z in particle_sets():
        assert median_bandwidth(z) == pairs_median_bandwidth(z), z.shape


def test_median_bandwidth_is_mains_pdist_median_bit_for_bit():
    """Each pair's value is scipy's sqeuclidean, so h has main's bits (np.median of pdist)."""
    from scipy.spatial.distance import pdist

    rng = np.random.default_rng(4)
    for n, d in ((2, 1), (7, 3), (64, 1), (65, 4), (300, 16), (301, 9)):
        z = rng.normal(size=(n, d))
        assert median_bandwidth(z) == float(np.median(pdist(z, "sqeuclidean"))) / np.log(n + 1.0)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7, 20, 21, 150, 151])
def test_pair_sq_distances_has_each_pair_once(monkeypatch, n):
    """Blocks of rows together give every pair i < j exactly once, with the plain
    loop's bits, about n/2 values per row; also with blocks of 1 and 3 rows per cdist."""
    z = np.random.default_rng(n).normal(size=(n, 9))
    for block in (64, 3, 1):
        monkeypatch.setattr(svgd_module, "PAIR_BLOCK", block)
        for cuts in ([0, n], [0, n // 2, n], [0, 1, n - 1, n], [0, n // 3, 2 * n // 3, n]):
            got = set()
            for start, stop in zip(cuts[:-1], cuts[1:]):
                rows = range(start, stop)
                values = pair_sq_distances(z, rows)
                assert values.shape == (pair_count(n, rows),)
                pos = 0
                for i in rows:
                    count = (n - 1) // 2 + (n % 2 == 0 and i < n // 2)
                    for j in ((i + t) % n for t in range(1, count + 1)):
                        pair = (min(i, j), max(i, j))
                        assert pair not in got
                        got.add(pair)
                        assert values[pos] == pair_value(z, i, j)
                        pos += 1
                assert pos == values.size
            assert sorted(got) == [(i, j) for i in range(n) for j in range(i + 1, n)]


@pytest.mark.parametrize("sample, gather", [(1 << 10, 1 << 11), (4, 4), (16, 8)])
def test_select_pair_gives_exact_order_statistics(monkeypatch, sample, gather):
    """On one rank too, through many selection rounds (small sample/gather limits)."""
    from mpi4py import MPI

    monkeypatch.setattr(selection, "SELECT_SAMPLE", sample)
    monkeypatch.setattr(selection, "SELECT_GATHER", gather)
    rng = np.random.default_rng(3)
    for values in (rng.normal(size=5000), np.round(rng.normal(size=3001)), rng.integers(0, 3, 400) * 1.0,
                   np.full(50, 2.5), np.array([1.0, 0.0])):
        ordered = np.sort(values)
        for k in {0, (values.size - 1) // 2, values.size // 2 - 1, values.size - 2}:
            assert selection.select_pair(MPI.COMM_SELF, values.copy(), k) == (ordered[k], ordered[k + 1])


def test_kernelized_stein_discrepancy_against_a_direct_double_sum():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(9, 2))
    s = -z  # score of N(0, I)
    h = 1.3

    def k(a, b):
        return np.exp(-np.sum((a - b) ** 2) / h)

    eps = 1e-5
    total = 0.0
    for i in range(9):
        for j in range(9):
            x, y = z[i], z[j]
            gx = np.array([(k(x + eps * e, y) - k(x - eps * e, y)) / (2 * eps) for e in np.eye(2)])
            gy = np.array([(k(x, y + eps * e) - k(x, y - eps * e)) / (2 * eps) for e in np.eye(2)])
            trace = sum(
                (k(x + eps * e, y + eps * e) - k(x + eps * e, y - eps * e)
                 - k(x - eps * e, y + eps * e) + k(x - eps * e, y - eps * e)) / (4 * eps**2)
                for e in np.eye(2)
            )
            total += s[i] @ s[j] * k(x, y) + s[i] @ gy + s[j] @ gx + trace
    assert kernelized_stein_discrepancy(z, s, h) == pytest.approx(np.sqrt(total / 81), rel=1e-6)


def test_correlated_gaussian_moments():
    mean = np.array([1.0, -2.0])
    cov = np.array([[1.0, 0.8], [0.8, 2.0]])
    settings = SVGDSettings(particles=200, iterations=1000, seed=3, step_size=0.05, ksd_every=0)
    state, diag = run_svgd(GaussianDensity(mean, cov), settings)
    z = state.particles
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(z.mean(axis=0) - mean) < 0.05 * sd)
    assert np.linalg.norm(np.cov(z.T) - cov) < 0.10 * np.linalg.norm(cov)
    assert diag.step_norm < 0.05 * run_svgd.first.step_norm


def test_adam_optimizer_reaches_the_same_target():
    mean = np.array([0.5])
    settings = SVGDSettings(particles=60, iterations=800, seed=4, optimizer="adam", step_size=0.05,
                            decay=1e-3, ksd_every=0)
    state, _ = run_svgd(GaussianDensity(mean, [[0.25]]), settings)
    assert abs(state.particles.mean() - 0.5) < 0.05 * 0.5
    assert abs(state.particles.std(ddof=1) - 0.5) < 0.1 * 0.5


def test_ksd_falls_as_particles_converge():
    settings = SVGDSettings(particles=50, iterations=1, seed=5, ksd_every=1)
    density = GaussianDensity([0.0, 0.0], np.eye(2), init_scale=4.0)
    _, first = run_svgd(density, settings)
    _, later = run_svgd(density, SVGDSettings(particles=50, iterations=400, seed=5, ksd_every=1))
    assert later.ksd < 0.2 * first.ksd


def test_exponential_model_with_gamma_prior_matches_the_conjugate_posterior():
    from phasic_mpi import models
    from phasic_mpi.inference.posterior import Posterior
    from phasic_mpi.inference.priors import Gamma

    graph = models.exponential()
    times = graph.sample(40, [2.0], seed=8)
    a, b = 3.0, 1.0
    density = Posterior(graph, times, [Gamma(a, b)])
    settings = SVGDSettings(particles=100, iterations=600, seed=9, step_size=0.05, ksd_every=0)
    state, _ = run_svgd(density, settings)
    theta = density.to_theta(state.particles)[:, 0]
    shape, rate = a + times.size, b + times.sum()
    assert abs(theta.mean() - shape / rate) < 0.02 * shape / rate
    assert abs(theta.std(ddof=1) - np.sqrt(shape) / rate) < 0.10 * np.sqrt(shape) / rate


def test_lognormal_through_the_log_transform():
    """A flat likelihood leaves the prior: theta ~ LogNormal(0.3, 0.4), particles in z = log theta."""
    from phasic_mpi.inference.posterior import FunctionDensity
    from phasic_mpi.inference.priors import LogNormal

    def flat(theta):
        return np.zeros(len(theta)), np.zeros_like(theta)

    mu, sigma = 0.3, 0.4
    density = FunctionDensity(flat, ["rate"], priors=[LogNormal(mu, sigma)])
    settings = SVGDSettings(particles=200, iterations=800, seed=10, step_size=0.05, ksd_every=0)
    state, _ = run_svgd(density, settings)
    theta = density.to_theta(state.particles)[:, 0]
    mean = np.exp(mu + sigma**2 / 2)
    var = (np.exp(sigma**2) - 1) * np.exp(2 * mu + sigma**2)
    assert abs(theta.mean() - mean) < 0.01 * mean
    assert abs(theta.var(ddof=1) - var) < 0.05 * var


# ---- the Stein kernel in C against the numpy reference; the subset bandwidth;
# ---- one collective per iteration

def test_c_kernel_matches_the_numpy_reference():
    """phase_stein vs the old numpy rows: relative 1e-13 of each sum's magnitude
    (sum of |terms|, the scale of its rounding), over d = 1..16 and several h."""
    from stein_reference import stein_direction as reference, stein_magnitude

    rng = np.random.default_rng(21)
    for d in range(1, 17):
        for n in (1, 5, 37, 150):
            z, s = rng.normal(size=(n, d)), rng.normal(size=(n, d)) * 3.0
            for h in (0.05, 0.7, 3.0 * d, 100.0):
                rows = range(n // 3, n)
                got, want = stein_direction(z, s, rows, h), reference(z, s, rows, h)
                scale = stein_magnitude(z, s, rows, h)
                assert np.all(np.abs(got - want) <= 1e-13 * scale), (d, n, h)
                assert np.all(scale > 0)


def test_c_ksd_against_the_direct_double_sum():
    """KSD^2 = mean of the n x n Stein kernel matrix (built term by term), and
    the KSD row sums of any row range are those of the whole."""
    from stein_reference import kernelized_stein_discrepancy as reference, ksd_terms
    from phasic_mpi.inference.stein import stein_terms

    rng = np.random.default_rng(22)
    for d in (1, 2, 3, 4, 7, 16):
        for n, h in ((1, 1.0), (9, 0.3), (60, 2.0 * d), (131, 0.9)):
            z = rng.normal(size=(n, d))
            s = -z + 0.3 * rng.normal(size=(n, d))
            u = ksd_terms(z, s, h)
            _, rows = stein_terms(z, s, range(n), h, phi=False, ksd=True)
            assert np.all(np.abs(rows - u.sum(axis=1)) <= 1e-13 * np.abs(u).sum(axis=1))
            ksd2 = kernelized_stein_discrepancy(z, s, h) ** 2
            assert abs(ksd2 - u.sum() / n**2) <= 1e-13 * np.abs(u).sum() / n**2
            assert kernelized_stein_discrepancy(z, s, h) == pytest.approx(reference(z, s, h), rel=1e-12, abs=1e-15)
            parts = [stein_terms(z, s, range(a, b), h, phi=False, ksd=True)[1]
                     for a, b in ((0, n // 2), (n // 2, n))]
            assert np.array_equal(np.concatenate(parts), rows)


def test_c_kernel_rejects_a_bad_bandwidth():
    from phasic_mpi.inference.stein import stein_direction as c_stein

    with pytest.raises(ValueError, match="bandwidth"):
        c_stein(np.zeros((3, 1)), np.zeros((3, 1)), range(3), 0.0)


def test_subset_median_is_numpys_median_of_the_drawn_pairs():
    """The pairs from numpy's Philox words (pairs_reference.subset_pairs), the
    values as a Python loop, numpy's median: equal (==), odd and even counts."""
    from pairs_reference import subset_pairs
    from phasic_mpi.inference.svgd import subset_median_bandwidth

    rng = np.random.default_rng(23)
    for n, d, pairs in ((50, 2, 100), (300, 3, 4096), (301, 17, 999), (1000, 1, 4096), (7000, 2, 5)):
        z = rng.normal(size=(n, d))
        for iteration in (0, 1, 77):
            drawn = subset_pairs(n, 5, iteration, pairs)
            assert all(0 <= i < n and 0 <= j < n and i != j for i, j in drawn)
            values = np.array([pair_value(z, i, j) for i, j in drawn])
            want = np.median(values) / np.log(n + 1.0)
            assert subset_median_bandwidth(z, 5, iteration, pairs) == want
        # another iteration or seed draws other pairs
        assert subset_median_bandwidth(z, 5, 0, pairs) != subset_median_bandwidth(z, 5, 1, pairs)
        assert subset_median_bandwidth(z, 5, 0, pairs) != subset_median_bandwidth(z, 6, 0, pairs)


def test_subset_median_with_ties():
    """Many equal values (integer particles): the selection still gives numpy's median."""
    from pairs_reference import subset_pairs
    from phasic_mpi.inference.svgd import subset_median_bandwidth

    rng = np.random.default_rng(26)
    for pairs in (1, 2, 3, 64, 65, 1000):
        z = rng.integers(0, 3, size=(400, 2)).astype(float)
        values = np.array([pair_value(z, i, j) for i, j in subset_pairs(400, 8, 4, pairs)])
        want = np.median(values) / np.log(401.0)
        assert subset_median_bandwidth(z, 8, 4, pairs) == (want if want > 0 else 1.0)


def test_subset_pairs_are_uniform():
    """i and the offset u = j - i mod n are uniform (chi-square, 200 000 pairs of n = 10)."""
    from pairs_reference import subset_pairs
    from scipy import stats

    drawn = np.array(subset_pairs(10, 3, 0, 200_000))
    for counts in (np.bincount(drawn[:, 0], minlength=10), np.bincount((drawn[:, 1] - drawn[:, 0]) % 10)[1:]):
        assert stats.chisquare(counts).pvalue > 1e-4


def test_subset_median_with_all_pairs_is_the_exact_median():
    from phasic_mpi.inference.svgd import subset_median_bandwidth

    for z in particle_sets():
        n = len(z)
        if n * (n - 1) // 2 <= 4096:
            assert subset_median_bandwidth(z, 1, 3, 4096) == median_bandwidth(z), z.shape
    nan = np.random.default_rng(24).normal(size=(200, 2))
    nan[::2, 0] = np.nan  # 3/4 of the pairs are NaN: numpy's median is NaN, h = 1
    assert subset_median_bandwidth(nan, 1, 0, 50) == 1.0
    assert subset_median_bandwidth(np.zeros((200, 2)), 1, 0, 50) == 1.0  # h = 0: 1


def test_subset_median_is_close_to_the_exact_median():
    """4096 of the 124 750 pairs of 500 particles: within 5 % (the median's
    sampling error is about 2 %)."""
    from phasic_mpi.inference.svgd import subset_median_bandwidth

    z = np.random.default_rng(25).normal(size=(500, 3)) * [1.0, 2.0, 0.5]
    exact = median_bandwidth(z)
    for iteration in range(5):
        assert abs(subset_median_bandwidth(z, 9, iteration, 4096) / exact - 1.0) < 0.05


class CountingComm:
    """COMM_SELF that counts its collective calls by name."""

    def __init__(self):
        self.comm, self.calls = comm_self(), {}

    def __getattr__(self, name):
        attr = getattr(self.comm, name)
        if name[:1].isupper() or name in ("allgather", "allreduce", "bcast", "gather"):
            def counted(*args, **kwargs):
                self.calls[name] = self.calls.get(name, 0) + 1
                return attr(*args, **kwargs)
            return counted
        return attr


@pytest.mark.parametrize("bandwidth, pairs", [("median_subset", 4096), ("median_subset", 10), (0.7, 4096)])
def test_one_collective_per_iteration(bandwidth, pairs):
    """After the first iteration (which gathers the new state's arrays), a step is one
    collective: Allgather, the blocks being equal on one rank (Allgatherv for unequal
    blocks: tests/mpi/test_svgd_mpi.py)."""
    comm = CountingComm()
    settings = SVGDSettings(particles=30, iterations=6, seed=3, bandwidth=bandwidth, bandwidth_pairs=pairs,
                            ksd_every=2)
    layout = block_layout(30, 1, 0)
    ctx = SVGDContext(GaussianDensity([0.0, 1.0], np.eye(2)), settings, as_communicator(comm), layout)
    state = initial_state(ctx.density, settings, layout)
    counts = []
    for _ in range(settings.iterations):
        comm.calls = {}
        state, diag = svgd_step(state, ctx)
        counts.append(dict(comm.calls))
    assert counts[0] == {"Allgather": 2}
    assert all(c == {"Allgather": 1} for c in counts[1:])
    assert np.isfinite(diag.ksd)


def test_diagnostics_are_those_of_the_step():
    """step_norm, bandwidth and KSD of an iteration, recomputed from the state
    before it with the reference kernel."""
    from stein_reference import kernelized_stein_discrepancy as reference_ksd, stein_direction as reference

    density = GaussianDensity([0.0, 1.0], [[1.0, 0.3], [0.3, 0.5]])
    settings = SVGDSettings(particles=120, iterations=3, seed=4, bandwidth_pairs=500, ksd_every=1)
    layout = block_layout(120, 1, 0)
    ctx = SVGDContext(density, settings, comm_self(), layout)
    state = initial_state(density, settings, layout)
    for _ in range(3):
        z = state.particles.copy()
        scores = density.evaluate(z).grad
        state, diag = svgd_step(state, ctx)
        h = svgd_module.subset_median_bandwidth(z, 4, state.iteration - 1, 500)
        assert diag.bandwidth == h
        phi = reference(z, scores, range(120), h)
        assert diag.step_norm == pytest.approx(np.sqrt((phi * phi).sum() / 120), rel=1e-12)
        assert diag.ksd == pytest.approx(reference_ksd(z, scores, h), rel=1e-12)
        assert np.array_equal(state.shared.z, state.particles)


def test_the_stop_request_travels_in_the_gather_without_changing_the_bits():
    """A rank's stop request rides in the step's one gather (a status column:
    invalid + 2 x request) and comes back as ``agreed_stop``; the particles
    and diagnostics are those of a run without it, bit for bit."""
    settings = SVGDSettings(particles=30, iterations=4, seed=3, ksd_every=2)
    layout = block_layout(30, 1, 0)
    algorithm = svgd_module.SVGDAlgorithm(settings)
    runs = []
    for request in (0, 15):
        comm = CountingComm()
        ctx = SVGDContext(GaussianDensity([0.0, 1.0], np.eye(2)), settings, as_communicator(comm), layout)
        ctx.comm.watch_stop(lambda: request)
        state, diags, agreed = initial_state(ctx.density, settings, layout), [], []
        assert algorithm.agreed_stop(state) is None  # no step yet: the run loop agrees itself
        for _ in range(settings.iterations):
            comm.calls = {}
            state, diag = svgd_step(state, ctx)
            diags.append(diag)
            agreed.append(algorithm.agreed_stop(state))
            assert comm.calls == {"Allgather": 1} or not diags[1:]  # no collective of its own
        assert agreed == [request] * settings.iterations
        runs.append((state.particles, np.array(diags, dtype=float)))
    assert np.array_equal(runs[0][0], runs[1][0])
    assert np.array_equal(runs[0][1], runs[1][1], equal_nan=True)


def test_an_svgd_run_agrees_on_signals_without_an_allreduce_per_iteration(monkeypatch):
    """The run loop takes SVGD's carried stop request: its exact reductions do not
    grow with the iterations (the count of a 5- and a 25-iteration run is the same)."""
    from mpi4py import MPI

    import phasic_mpi as pm
    from phasic_mpi.inference.comm import MPICommunicator

    calls = []
    reduce = MPICommunicator.allreduce_exact
    monkeypatch.setattr(MPICommunicator, "allreduce_exact",
                        lambda self, *args: calls.append(args) or reduce(self, *args))
    graph = pm.rabbits(n=2)
    times = graph.sample(30, [1.0, 2.0, 4.0], seed=1)
    counts = []
    for iterations in (5, 25):
        calls.clear()
        result = pm.svgd(graph, times, particles=6, iterations=iterations, seed=2, tolerance=0.0,
                         progress="none", comm=MPI.COMM_SELF)
        assert result.completed and result.iteration == iterations
        counts.append(len(calls))
    assert counts[0] == counts[1]


def test_kernel_and_bandwidth_take_the_gathered_row_buffer_in_place():
    """z and scores as column views of one row buffer (svgd's gather): the Stein
    terms and the subset median have the bits of contiguous copies."""
    from phasic_mpi.inference.stein import row_pointer, stein_terms
    from phasic_mpi.inference.svgd import subset_median_bandwidth

    rng = np.random.default_rng(8)
    for n, d in ((5, 1), (97, 3), (700, 4)):
        buf = rng.normal(size=(n, 3 * d + 3))
        z, scores = buf[:, :d], buf[:, d:2 * d]
        assert not z.flags.c_contiguous and row_pointer(z)[1] == 3 * d + 3
        zc, sc = np.ascontiguousarray(z), np.ascontiguousarray(scores)
        for rows in (range(n), range(1, n // 2 + 1)):
            got, want = stein_terms(z, scores, rows, 0.7, ksd=True), stein_terms(zc, sc, rows, 0.7, ksd=True)
            assert all(a.tobytes() == b.tobytes() for a, b in zip(got, want))
        assert subset_median_bandwidth(z, 3, 5, 64) == subset_median_bandwidth(zc, 3, 5, 64)
    # layouts row_pointer cannot pass in place are copied: the same values
    z = rng.normal(size=(6, 4))
    for odd in (z[::-1], z[:, ::2], np.asfortranarray(z)):
        got = stein_terms(odd, odd, range(6), 1.3)[0]
        want = stein_terms(np.ascontiguousarray(odd), np.ascontiguousarray(odd), range(6), 1.3)[0]
        assert got.tobytes() == want.tobytes()


def test_column_sums_and_sum_of_squares_have_numpys_bits():
    """SVGD's sums over its gathered rows in C (phase_pairwise_sums) against numpy's own
    sums of the same views (the oracle and the code they replace), every size that
    exercises numpy's pairwise blocks (< 8, <= 128, splits), values over 6 decades."""
    from phasic_mpi.inference.stein import column_sums, sum_of_squares

    rng = np.random.default_rng(31)
    for n in list(range(0, 140)) + [255, 256, 257, 1000, 4096, 9001]:
        buf = rng.normal(size=(n, 9)) * 10.0 ** rng.uniform(-3, 3, (n, 9))
        for view in (buf[:, 2:7], buf[:, 4:5], np.ascontiguousarray(buf[:, 1:4])):
            got = column_sums(view)
            want = np.array([view[:, c].sum() for c in range(view.shape[1])])
            assert got.tobytes() == want.tobytes(), n
            assert sum_of_squares(view) == float(np.sum(np.ascontiguousarray(view) ** 2)), n
    special = np.array([[1.0, np.inf], [-0.0, 2.0], [np.nan, 1.0]])
    assert np.array_equal(column_sums(special), special.sum(axis=0), equal_nan=True)
