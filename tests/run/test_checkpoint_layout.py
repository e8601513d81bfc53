"""Checkpoints are checked against the algorithm's declared layout before
``restore`` (issue 12, still-open item 1): a re-signed checkpoint (valid
checksum) with a wrong shape, a wrong dtype, a missing or a surplus array, or
NaN particles is one ``phasic-mpi: error:`` line naming the array, the
expected and found shapes and the file, exit 2 at one and at two ranks, and
no file changes.

The declarations themselves are tested against what each algorithm's
``checkpoint`` really writes (SVGD, PT, MAP), so a declaration cannot drift
from the state it describes.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import numpy as np
import pytest

import phasic_mpi as pm
from phasic_mpi.errors import ConfigError, RunFileError, RunInterrupted
from phasic_mpi.inference.comm import SerialCommunicator
from phasic_mpi.inference.posterior import FunctionDensity
from phasic_mpi.inference.priors import Normal
from phasic_mpi.inference.registry import algorithm_class
from phasic_mpi.io.checkpoint import CheckpointError, check_layout

sys.path.insert(0, str(Path(__file__).parent))
from test_faults import MPIEXEC, cli, resign, snapshot, stopped_run  # noqa: E402


def gaussian(d=2):
    names = [f"p{i}" for i in range(d)]
    return FunctionDensity(lambda th: (-0.5 * (th ** 2).sum(axis=1), -th), names,
                           priors=[Normal(0, 1)] * d)


ALGORITHMS = {
    "svgd": {"particles": 5, "iterations": 3, "stop_early": False},
    "pt": {"replicas": 3, "chains": 2, "rounds": 3, "warmup_rounds": 1},
    "map": {"starts": 3},
}


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_each_algorithm_declares_exactly_what_it_checkpoints(name):
    cls = algorithm_class(name)
    algorithm = cls(cls.Settings(**ALGORITHMS[name]))
    ctx = algorithm.context(gaussian(3), SerialCommunicator())
    state = algorithm.start(ctx)
    layout = algorithm.checkpoint_layout(ctx)
    for _ in range(min(algorithm.n_iterations, 3) + 1):  # before, during and after steps
        arrays = algorithm.checkpoint(state, ctx)
        check_layout("c.npz", arrays, layout)  # raises if anything differs
        # the declaration is not vacuous: every fixed axis is the array's
        for key, (shape, kinds) in layout.items():
            assert arrays[key].dtype.kind in kinds
            assert [n for n in shape if n is not None] == [
                m for n, m in zip(shape, arrays[key].shape) if n is not None]
        if state.iteration >= algorithm.n_iterations:
            break
        state, _ = algorithm.step(state, ctx)


def arrays_and_layout():
    layout = {"particles": ((4, 2), "f"), "pool": ((4, None), "f"), "count": ((1,), "iu")}
    arrays = {"particles": np.zeros((4, 2)), "pool": np.zeros((4, 7)),
              "count": np.array([3], dtype=np.int64)}
    return arrays, layout


@pytest.mark.parametrize("edit, message", [
    (lambda a: a.update(particles=np.zeros((4, 3))),
     "array 'particles' has shape (4, 3), expected (4, 2)"),
    (lambda a: a.update(particles=np.zeros((4,))),
     "array 'particles' has shape (4,), expected (4, 2)"),
    (lambda a: a.update(pool=np.zeros((3, 7))), "array 'pool' has shape (3, 7), expected (4, *)"),
    (lambda a: a.update(particles=np.zeros((4, 2), np.int64)),
     "array 'particles' has dtype int64, expected float"),
    (lambda a: a.update(count=np.array([3.0])), "array 'count' has dtype float64, expected int or "
                                                 "unsigned int"),
    (lambda a: a.pop("pool"), "array 'pool' is missing (expected shape (4, *))"),
    (lambda a: a.update(extra=np.zeros(2)), "unexpected array 'extra' (shape (2,)) for this algorithm"),
])
def test_check_layout_names_the_array_and_both_shapes(edit, message):
    arrays, layout = arrays_and_layout()
    check_layout("run.h5.ckpt.npz", arrays, layout)  # the untouched arrays pass
    edit(arrays)
    with pytest.raises(CheckpointError) as info:
        check_layout("run.h5.ckpt.npz", arrays, layout)
    assert str(info.value) == f"checkpoint run.h5.ckpt.npz: {message}"
    assert isinstance(info.value, RunFileError) and isinstance(info.value, ConfigError)


# -- through the run loop -------------------------------------------------------------


def interrupted_pt(tmp_path, monkeypatch):
    """A PT run with a file, stopped by SIGTERM after its first scans (in process)."""
    calls = [0]

    def loglik(theta):
        calls[0] += 1
        if calls[0] == 12:  # well past set-up: the run loop records it
            signal.raise_signal(signal.SIGTERM)
        return -0.5 * (theta ** 2).sum(axis=1), -theta

    density = FunctionDensity(loglik, ["a", "b"], priors=[Normal(0, 1)] * 2)
    # a handler of our own: the run's flag records the signal instead of acting on it
    previous = signal.signal(signal.SIGTERM, lambda *a: None)
    out = tmp_path / "pt.h5"
    kwargs = dict(algorithm="pt", replicas=3, chains=2, rounds=6, warmup_rounds=2, seed=1,
                  out=out, progress="none", checkpoint_every=1000)
    try:
        with pytest.raises(RunInterrupted):
            pm.sample(density, **kwargs)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return density, kwargs, out


def test_a_misshapen_pt_checkpoint_never_reaches_restore(tmp_path, monkeypatch):
    density, kwargs, out = interrupted_pt(tmp_path, monkeypatch)
    ckpt = Path(str(out) + ".ckpt.npz")
    good = ckpt.read_bytes()
    cases = {
        "x": (lambda a: a.update(x=a["x"][:, :1].copy()),
              "array 'x' has shape (6, 1), expected (6, 2)"),
        "betas": (lambda a: a.update(betas=a["betas"][:1].copy()),
                  "array 'betas' has shape (1, 3), expected (2, 3)"),
        "samples": (lambda a: a.pop("samples"), "array 'samples' is missing"),
        "NaN state": (lambda a: a["x"].__setitem__((0, 0), np.nan), "holds NaN"),
    }
    for name, (edit, message) in cases.items():
        ckpt.write_bytes(good)
        resign(ckpt, array_edit=edit)
        before = snapshot(tmp_path)
        with pytest.raises(CheckpointError) as info:
            pm.sample(density, resume=True, **kwargs)
        assert message in str(info.value) and str(ckpt) in str(info.value), name
        assert snapshot(tmp_path) == before, name
    ckpt.write_bytes(good)  # the untouched checkpoint resumes to the end
    result = pm.sample(density, resume=True, **kwargs)
    assert result.completed and not ckpt.exists()


def edit_particles(shape=None, dtype=None, nan=False):
    def edit(arrays):
        p = arrays["particles"]
        if shape is not None:
            p = np.resize(p, shape)
        if dtype is not None:
            p = p.astype(dtype)
        if nan:
            p = p.copy()
            p[1, 0] = np.nan
        arrays["particles"] = p
    return edit


CRAFTED = {
    "wrong shape": (edit_particles(shape=(6, 3)),
                    "array 'particles' has shape (6, 3), expected (6, 2)"),
    "wrong dtype": (edit_particles(dtype=np.int64),
                    "array 'particles' has dtype int64, expected float"),
    "missing array": (lambda a: a.pop("moment2"), "array 'moment2' is missing (expected shape "
                                                  "(6, 2))"),
    "NaN particles": (edit_particles(nan=True), "array 'particles' holds NaN"),
}


@pytest.mark.skipif(not MPIEXEC.exists(), reason="needs the mpich wheel's mpiexec")
def test_crafted_checkpoints_fail_alike_at_one_and_two_ranks(tmp_path):
    cfg = stopped_run(tmp_path)
    ckpt = tmp_path / "out.h5.ckpt.npz"
    good = ckpt.read_bytes()
    for name, (edit, message) in CRAFTED.items():
        ckpt.write_bytes(good)
        resign(ckpt, array_edit=edit)  # a valid checksum: only the layout check can tell
        for ranks in (None, 2):
            before = snapshot(tmp_path)
            done = cli(tmp_path, "run", cfg, "--resume", ranks=ranks, timeout=60)
            lines = done.stderr.strip().splitlines()
            assert done.returncode == 2, (name, ranks, done.stderr)
            assert len(lines) == 1, (name, ranks, done.stderr)  # no [rank r] lines, no abort
            assert lines[0].startswith(f"phasic-mpi: error: checkpoint {ckpt}: "), lines[0]
            assert message in lines[0], (name, ranks, lines[0])
            assert snapshot(tmp_path) == before, (name, ranks)
