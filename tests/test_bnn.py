"""examples/bnn.py: the 10-50-50-1 Bayesian MLP given as a log-density."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from phasic_mpi.config import algorithm_name, load_config
from phasic_mpi.inference.posterior import FunctionDensity, LogDensity

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bnn():
    spec = importlib.util.spec_from_file_location("bnn_example", ROOT / "examples" / "bnn.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bnn_example"] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("bnn_example", None)


@pytest.fixture(scope="module")
def data(bnn):
    return bnn.make_data(n_data=100, noise=0.1, seed=0)


def test_parameters(bnn):
    names = bnn.param_names()
    assert len(names) == len(set(names)) == 3151 == 10 * 50 + 50 + 50 * 50 + 50 + 50 + 1
    assert names[:2] == ["w1_0_0", "w1_0_1"] and names[500] == "b1_0"
    assert names[-2:] == ["w3_0_49", "b3_0"] and max(map(len, names)) <= 8
    theta = np.arange(3151.0)[None]
    w1, b1, w2, b2, w3, b3 = bnn.unpack(theta)
    assert (w1.shape, b1.shape, w2.shape, b2.shape, w3.shape, b3.shape) == (
        (1, 50, 10), (1, 50), (1, 50, 50), (1, 50), (1, 1, 50), (1, 1))
    assert w1[0, 0, 1] == 1 and b1[0, 0] == 500 and w2[0, 1, 0] == 600 and b3[0, 0] == 3150


def test_data_is_seeded(bnn, data):
    x, y, teacher = data
    assert x.shape == (100, 10) and y.shape == (100,) and teacher.shape == (3151,)
    again = bnn.make_data(100, 0.1, 0)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(data, again))
    assert bnn.make_data(100, 0.1, 1)[1].tobytes() != y.tobytes()
    signal = bnn.forward(teacher[None], x)[0][0]
    assert np.std(signal) > 0.1 and np.std(y - signal) == pytest.approx(0.1, rel=0.3)


def _blocks_sample(rng: np.random.Generator) -> np.ndarray:
    """20 coordinates touching every array: w1, b1, w2, b2, w3 (3 each), b3 and 4 more."""
    starts = [0, 500, 550, 3050, 3100]
    picks = [s + rng.choice(n, 3, replace=False) for s, n in zip(starts, [500, 50, 2500, 50, 50])]
    return np.concatenate([*picks, [3150], rng.choice(3150, 4, replace=False)])


def test_gradient_matches_central_differences(bnn, data):
    x, y, _ = data
    rng = np.random.default_rng(5)
    theta = 0.3 * rng.standard_normal(3151)
    loglik, grad = bnn.gaussian_loglik(theta[None], x, y, 0.1)
    h = 1e-4
    for i in _blocks_sample(rng):
        step = np.zeros(3151)
        step[i] = h
        up = bnn.gaussian_loglik((theta + step)[None], x, y, 0.1)[0][0]
        down = bnn.gaussian_loglik((theta - step)[None], x, y, 0.1)[0][0]
        fd = (up - down) / (2 * h)
        assert abs(fd - grad[0, i]) <= 1e-6 * max(abs(grad[0, i]), 1.0), (i, fd, grad[0, i])
    resid = y - bnn.forward(theta[None], x)[0][0]
    expected = -0.5 * np.sum(resid**2) / 0.01 - 100 * math.log(0.1 * math.sqrt(2 * math.pi))
    assert loglik[0] == pytest.approx(expected, rel=1e-13)


def test_batch_equals_single_calls(bnn, data):
    x, y, _ = data
    theta = np.random.default_rng(7).standard_normal((3, 3151))
    loglik, grad = bnn.gaussian_loglik(theta, x, y, 0.1)
    assert loglik.shape == (3,) and grad.shape == (3, 3151)
    for p in range(3):
        one, one_grad = bnn.gaussian_loglik(theta[p:p + 1], x, y, 0.1)
        np.testing.assert_allclose(loglik[p], one[0], rtol=1e-14)
        np.testing.assert_allclose(grad[p], one_grad[0], rtol=1e-12, atol=1e-12)


def test_density(bnn, data):
    density = bnn.make_density(n_data=100, noise=0.1, seed=0, prior_sd=2.0)
    assert isinstance(density, FunctionDensity) and isinstance(density, LogDensity)
    assert density.n_params == 3151 and density.param_names[0] == "w1_0_0"
    z = density.sample_prior_z(np.random.default_rng(0), 2)
    assert z.shape == (2, 3151) and np.array_equal(density.to_theta(z), z)  # identity
    ev = density.evaluate(z)
    x, y, _ = data
    loglik, grad = bnn.gaussian_loglik(z, x, y, 0.1)
    np.testing.assert_array_equal(ev.loglik, loglik)
    np.testing.assert_array_equal(ev.loglik_grad, grad)
    np.testing.assert_allclose(
        ev.logprior, np.sum(-0.5 * (z / 2) ** 2 - math.log(2 * math.sqrt(2 * math.pi)), axis=1),
        rtol=1e-12)
    np.testing.assert_allclose(ev.logprior_grad, -z / 4, rtol=1e-12)
    with pytest.raises(ValueError, match="noise > 0"):
        bnn.make_density(noise=0.0)


def test_example_config_validates():
    from phasic_mpi.config.loaders import build_density

    cfg = load_config(ROOT / "examples" / "bnn.toml")
    assert algorithm_name(cfg) == "pt" and list(cfg) == ["model", "pt", "output"]
    assert cfg["model"]["density"] == f"{ROOT / 'examples' / 'bnn.py'}:make_density"
    assert (cfg["pt"]["replicas"], cfg["pt"]["chains"], cfg["pt"]["rounds"],
            cfg["pt"]["local_move"]) == (8, 2, 7, "mala")
    density, observations = build_density(cfg)
    assert observations is None and density.n_params == 3151
    # the weight arrays are families of parameters: one posterior variable each
    assert density.param_shapes == {"w1": (50, 10), "b1": (50,), "w2": (50, 50),
                                    "b2": (50,), "w3": (1, 50), "b3": (1,)}
