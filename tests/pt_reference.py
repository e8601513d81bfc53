"""Oracles shared by the parallel-tempering tests: the textbook leapfrog
(the HMC moves' acceptance and end point) and a whole serial run's cold draws.

Import with ``from pt_reference import ...`` (pytest puts ``tests/`` on
``sys.path``).
"""

import math

import numpy as np


def leapfrog_mh(log_pi, x, h, L, xi, steps):
    """(acceptance probability, end point) of an HMC trajectory by the textbook
    leapfrog with mass matrix M = (L L^T)^-1, momentum p = L^-T xi ~ N(0, M).

    ``log_pi(z)`` returns ``(value, gradient)``; ``L = I`` is plain HMC with
    momentum ``xi``.
    """
    inv_mass = L @ L.T
    z, p = x.copy(), np.linalg.solve(L.T, xi)
    p0 = p.copy()
    for _ in range(steps):
        p = p + 0.5 * h * log_pi(z)[1]
        z = z + h * inv_mass @ p
        p = p + 0.5 * h * log_pi(z)[1]
    energy_error = (-log_pi(z)[0] + 0.5 * p @ inv_mass @ p) - (-log_pi(x)[0] + 0.5 * p0 @ inv_mass @ p0)
    return min(1.0, math.exp(-energy_error)), z


def cold_draws(settings, density):
    """Run PT with ``settings`` on ``density`` to the end on one process.

    Returns
    -------
    state : PTState
        The final state.
    draws : ndarray, shape (chains * draws, d)
        The b = 1 draws of the sampling rounds, in parameter space.
    """
    from mpi4py import MPI

    from phasic_mpi.inference.pt import PTAlgorithm

    algorithm = PTAlgorithm(settings)
    ctx = algorithm.context(density, MPI.COMM_SELF)
    state = algorithm.start(ctx)
    while state.iteration < algorithm.n_iterations:
        state, _ = algorithm.step(state, ctx)
    final = algorithm.finish(state, ctx).draws
    return state, np.stack(list(final.values()), axis=-1).reshape(-1, len(final))
