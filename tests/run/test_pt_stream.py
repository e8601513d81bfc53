"""PT's cold-chain draws stream out of the state: ``drain`` hands them to the run
loop (history rows ``pt/cold/*``), checkpoints hold only per-slot state, and the
posterior assembled from the streamed rows equals the one a state that kept
every draw gives (the earlier design, still what a hand-driven loop without
``drain`` gets): bit for bit, with or without a run file, and across a
checkpoint and restore."""

import math

import numpy as np
import pytest

from phasic_mpi.inference.comm import SerialCommunicator
from phasic_mpi.inference.pt import PTAlgorithm, PTSettings
from phasic_mpi.io.runfile import read_run
from phasic_mpi.run import driver
from phasic_mpi.run.driver import execute
from phasic_mpi.run.settings import OutputSettings

SETTINGS = PTSettings(replicas=3, chains=2, rounds=6, warmup_rounds=3, seed=4)
COLD = ("cold/scan", "cold/z", "cold/log_likelihood_total", "cold/local_accept")


class Banana:
    """Prior N(0, 2^2 I) in z, a curved likelihood; theta = exp(z) (to_theta is not the identity)."""

    n_params = 2
    param_names = ("a", "b")

    def evaluate(self, z, rows=None):
        from phasic_mpi.inference.posterior import PosteriorEval

        z = np.asarray(z, float)
        u = z[:, 1] - z[:, 0] ** 2
        loglik = -0.5 * (z[:, 0] ** 2 + 4.0 * u**2)
        grad = np.column_stack([-z[:, 0] + 8.0 * u * z[:, 0], -4.0 * u])
        logprior = -(z * z).sum(axis=1) / 8.0 - math.log(8 * math.pi)
        return PosteriorEval(loglik, grad, logprior, -z / 4.0, np.zeros(len(z), bool))

    def sample_prior_z(self, rng, n):
        return 2.0 * rng.standard_normal((n, 2))

    def to_theta(self, z):
        return np.exp(np.asarray(z))


def hand_run(drain_at=(), stop=None, state=None, drain=True):
    """Step to the end (or ``stop``); drain after the scans in ``drain_at`` and at round
    ends (``drain=False``: never, as a loop that does not know ``drain``).

    Returns the algorithm, context, state and the drained rows (name -> list of row blocks).
    """
    algorithm = PTAlgorithm(SETTINGS)
    ctx = algorithm.context(Banana(), SerialCommunicator())
    state = algorithm.start(ctx) if state is None else state
    rows = {}
    end = algorithm.n_iterations if stop is None else stop
    while state.iteration < end:
        state, _ = algorithm.step(state, ctx)
        if drain and (state.iteration in drain_at or algorithm.history_due(state.iteration)):
            state, drained = algorithm.drain(state, ctx)
            for name, value in (drained or {}).items():
                rows.setdefault(name, []).append(value)
    return algorithm, ctx, state, rows


def joined(rows):
    return {name: np.concatenate(parts) for name, parts in rows.items()}


def assert_same_final(a, b):
    assert a.draws.keys() == b.draws.keys() and a.sample_stats.keys() == b.sample_stats.keys()
    for name in a.draws:
        assert np.array_equal(a.draws[name], b.draws[name]), name
    for name in a.sample_stats:
        assert np.array_equal(a.sample_stats[name], b.sample_stats[name]), name
    assert np.array_equal(a.final_z, b.final_z)
    assert a.diagnostics["draws_per_chain"] == b.diagnostics["draws_per_chain"]


def test_drained_draws_give_the_posterior_of_a_state_that_kept_them_all():
    algorithm, ctx, kept, none = hand_run(drain=False)
    assert none == {}  # no drains: the state kept every draw
    reference = algorithm.finish(kept, ctx)
    sampled = algorithm.n_iterations - (2**SETTINGS.warmup_rounds - 1)
    assert kept.samples.shape == (SETTINGS.chains, sampled, 4)
    assert reference.draws["a"].shape == (SETTINGS.chains, sampled)

    _, ctx2, state, rows = hand_run(drain_at=(9, 10, 20, 33, 50))
    assert state.samples.shape[1] == 0  # the last scan ends a round: all drained
    rows = joined(rows)
    # one row per sampling scan, in order, each (chain, ...) in z
    np.testing.assert_array_equal(rows["cold/scan"], np.arange(2**SETTINGS.warmup_rounds - 1,
                                                               algorithm.n_iterations))
    assert rows["cold/z"].shape == (sampled, SETTINGS.chains, 2)
    np.testing.assert_array_equal(rows["cold/z"].transpose(1, 0, 2), kept.samples[:, :, :2])
    np.testing.assert_array_equal(rows["cold/log_likelihood_total"].T, kept.samples[:, :, 2])
    np.testing.assert_array_equal(rows["cold/local_accept"].T, kept.samples[:, :, 3])
    assert_same_final(algorithm.finish(state, ctx2, rows), reference)
    # the parameter-space draws are exp of the streamed z
    np.testing.assert_array_equal(reference.draws["b"], np.exp(rows["cold/z"][:, :, 1]).T)


def test_undrained_draws_are_appended_after_the_drained_ones():
    algorithm, ctx, kept, _ = hand_run(drain=False)
    reference = algorithm.finish(kept, ctx)
    _, ctx2, part, rows = hand_run(drain_at=(20,), stop=27)  # drained up to scan 19
    assert part.samples.shape[1] == 27 - 20
    _, _, state, later = hand_run(state=part)
    for name, value in later.items():
        rows.setdefault(name, []).extend(value)
    assert_same_final(algorithm.finish(state, ctx2, joined(rows)), reference)


def test_checkpoints_after_a_drain_hold_no_draws_and_do_not_grow():
    algorithm, ctx, kept, _ = hand_run(drain=False)
    reference = algorithm.finish(kept, ctx)
    sizes = []
    for stop in (12, 40):  # both in the sampling rounds
        _, ctx2, state, rows = hand_run(stop=stop)
        state, drained = algorithm.drain(state, ctx2)
        arrays = algorithm.checkpoint(state, ctx2)
        assert arrays["samples"].shape == (SETTINGS.chains, 0, 4)
        sizes.append({name: a.shape for name, a in arrays.items()})
        for name, value in (drained or {}).items():
            rows.setdefault(name, []).append(value)
        # resume from the checkpoint's arrays alone, with the rows "in the file"
        restored = algorithm.restore({k: np.array(v) for k, v in arrays.items()}, stop, ctx2)
        _, _, final_state, later = hand_run(state=restored)
        for name, value in later.items():
            rows.setdefault(name, []).extend(value)
        assert_same_final(algorithm.finish(final_state, ctx2, joined(rows)), reference)
    # O(chains x replicas x d), not O(scans); except the stepping-stone pool
    # round_loglik (one value per slot and scan since the ladder last changed),
    # which the round reports need inside the step
    pool = [shapes.pop("round_loglik") for shapes in sizes]
    assert sizes[0] == sizes[1]
    assert pool[0][1] < pool[1][1]


def run_loop(tmp_path=None, checkpoint_every=0):
    out = None if tmp_path is None else tmp_path / "pt.h5"
    return execute(PTAlgorithm(SETTINGS), Banana(), comm=SerialCommunicator(), out=out,
                   output=OutputSettings(checkpoint_every=checkpoint_every, progress="none"))


@pytest.mark.parametrize("with_file", [False, True])
def test_run_loop_streams_the_draws_and_assembles_the_same_posterior(tmp_path, monkeypatch,
                                                                     with_file):
    algorithm, ctx, kept, _ = hand_run(drain=False)
    reference = algorithm.finish(kept, ctx)
    written = []
    real = driver.write_checkpoint
    monkeypatch.setattr(driver, "write_checkpoint",
                        lambda path, iteration, arrays, *rest: (written.append(arrays),
                                                                real(path, iteration, arrays, *rest)))
    outcome = run_loop(tmp_path if with_file else None, checkpoint_every=5)
    assert_same_final(outcome.final, reference)
    if with_file:
        run = read_run(outcome.path)
        cold = {name: run.history(f"pt/{name}") for name in COLD}
        assert outcome.history is None
        posterior = run.posterior()
        for m, name in enumerate(Banana.param_names):
            np.testing.assert_array_equal(posterior[name], reference.draws[name])
            np.testing.assert_array_equal(np.exp(cold["cold/z"][:, :, m]).T, posterior[name])
        np.testing.assert_array_equal(run.sample_stats()["local_accept"],
                                      cold["cold/local_accept"].T)
        # 12 checkpoints at scans 5, 10, ..., 60; each without draws, all of one size
        assert len(written) == 12
        assert all(a["samples"].shape == (SETTINGS.chains, 0, 4) for a in written)
        assert len({tuple((k, v.shape) for k, v in sorted(a.items()) if k != "round_loglik")
                    for a in written}) == 1
    else:
        cold = {name: outcome.history[f"pt/{name}"] for name in COLD}
        assert written == []  # no file, no checkpoints
    np.testing.assert_array_equal(cold["cold/z"].transpose(1, 0, 2), kept.samples[:, :, :2])
    np.testing.assert_array_equal(cold["cold/log_likelihood_total"].T,
                                  reference.sample_stats["log_likelihood_total"])
