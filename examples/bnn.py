"""Bayesian neural network regression: a 10-50-50-1 tanh MLP with 3151 weights.

A model given as a log-density (``[model] density = "bnn.py:make_density"``,
see ``examples/bnn.toml``): :func:`make_density` returns a
:class:`~phasic_mpi.inference.posterior.FunctionDensity` whose log-likelihood and exact
gradient are computed here by backpropagation in numpy, for a batch of
parameter vectors at once.

Data: ``x ~ N(0, I_10)``, ``y = f(x) + N(0, noise^2)`` where ``f`` is a fixed
random "teacher" network of the same shape (weights ``N(0, 1/fan_in)``,
biases ``N(0, 0.1^2)``). Parameters: all weights and biases, flattened in the
order ``w1`` (50 x 10, ``w1_<out>_<in>``), ``b1`` (50), ``w2`` (50 x 50),
``b2`` (50), ``w3`` (1 x 50), ``b3`` (1); prior ``Normal(0, prior_sd)`` on
each (identity transform, so z = theta).
"""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np

from phasic_mpi.inference.posterior import FunctionDensity

SIZES = (10, 50, 50, 1)  # input, hidden, hidden, output


def layer_shapes(sizes: tuple[int, ...] = SIZES) -> list[tuple[str, tuple[int, ...]]]:
    """``[(name, shape)]`` of the weight matrices (out, in) and bias vectors, in order."""
    shapes = []
    for k, (n_in, n_out) in enumerate(pairwise(sizes), 1):
        shapes += [(f"w{k}", (n_out, n_in)), (f"b{k}", (n_out,))]
    return shapes


def param_names(sizes: tuple[int, ...] = SIZES) -> list[str]:
    """``w1_0_0, w1_0_1, ..., b1_0, ..., b3_0``: row-major within each array."""
    names = []
    for name, shape in layer_shapes(sizes):
        names += [f"{name}_" + "_".join(map(str, idx)) for idx in np.ndindex(*shape)]
    return names


def unpack(theta: np.ndarray, sizes: tuple[int, ...] = SIZES) -> list[np.ndarray]:
    """Views ``(P, *shape)`` of the arrays in a batch ``theta`` ``(P, n_params)``."""
    out, start = [], 0
    for _, shape in layer_shapes(sizes):
        size = math.prod(shape)
        out.append(theta[:, start:start + size].reshape(theta.shape[0], *shape))
        start += size
    return out


def forward(theta: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outputs ``(P, n)`` of a 2-hidden-layer tanh network and the hidden activations."""
    w1, b1, w2, b2, w3, b3 = unpack(theta)
    h1 = np.tanh(x @ w1.transpose(0, 2, 1) + b1[:, None, :])   # (P, n, 50)
    h2 = np.tanh(h1 @ w2.transpose(0, 2, 1) + b2[:, None, :])  # (P, n, 50)
    out = (h2 @ w3.transpose(0, 2, 1))[:, :, 0] + b3            # (P, n)
    return out, h1, h2


def gaussian_loglik(theta: np.ndarray, x: np.ndarray, y: np.ndarray,
                    noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Log-likelihood ``(P,)`` of ``y ~ N(f_theta(x), noise^2)`` and its gradient ``(P, d)``.

    Backpropagation through the layers of :func:`forward`, batched over P.
    """
    theta = np.asarray(theta, dtype=np.float64)
    _, _, w2, _, w3, _ = unpack(theta)
    out, h1, h2 = forward(theta, x)
    resid = y - out                                            # (P, n)
    n = y.size
    loglik = (-0.5 * np.sum(resid * resid, axis=1) / noise**2
              - n * math.log(noise * math.sqrt(2.0 * math.pi)))
    g_out = resid / noise**2                                   # d loglik / d out
    g_w3 = np.einsum("pn,pnk->pk", g_out, h2)[:, None, :]
    g_b3 = g_out.sum(axis=1)[:, None]
    g_a2 = g_out[:, :, None] * w3 * (1.0 - h2 * h2)            # (P, n, 50)
    g_w2 = g_a2.transpose(0, 2, 1) @ h1                        # (P, 50, 50)
    g_b2 = g_a2.sum(axis=1)
    g_a1 = (g_a2 @ w2) * (1.0 - h1 * h1)
    g_w1 = g_a1.transpose(0, 2, 1) @ x                         # (P, 50, 10)
    g_b1 = g_a1.sum(axis=1)
    parts = (g_w1, g_b1, g_w2, g_b2, g_w3, g_b3)
    grad = np.concatenate([g.reshape(theta.shape[0], -1) for g in parts], axis=1)
    return loglik, grad


def make_data(n_data: int = 100, noise: float = 0.1,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, y, teacher theta)`` drawn from ``np.random.default_rng(seed)``.

    Drawn in this order: x, the teacher's arrays (layer by layer), the noise.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_data, SIZES[0]))
    teacher = []
    for name, shape in layer_shapes():
        sd = 1.0 / math.sqrt(shape[1]) if name.startswith("w") else 0.1
        teacher.append(sd * rng.standard_normal(shape).ravel())
    theta = np.concatenate(teacher)
    y = forward(theta[None], x)[0][0] + noise * rng.standard_normal(n_data)
    return x, y, theta


def make_density(n_data: int = 100, noise: float = 0.1, seed: int = 0,
                 prior_sd: float = 1.0) -> FunctionDensity:
    """Posterior of the network's weights given synthetic data.

    Parameters
    ----------
    n_data : int
        Number of (x, y) pairs.
    noise : float
        Known standard deviation of the Gaussian noise on y.
    seed : int
        Seed of the data (inputs, teacher network, noise).
    prior_sd : float
        Standard deviation of the Normal(0, prior_sd) prior of every parameter.
    """
    if n_data < 1 or noise <= 0 or prior_sd <= 0:
        raise ValueError(f"need n_data >= 1, noise > 0, prior_sd > 0; got {n_data}, "
                         f"{noise}, {prior_sd}")
    x, y, _ = make_data(n_data, noise, seed)

    def loglik(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return gaussian_loglik(theta, x, y, noise)

    names = param_names()
    prior = {"dist": "normal", "mu": 0.0, "sigma": float(prior_sd)}
    # each weight matrix and bias vector is one array variable of the posterior
    return FunctionDensity(loglik, names, priors=[prior] * len(names), transforms="identity",
                           param_shapes=dict(layer_shapes()))
