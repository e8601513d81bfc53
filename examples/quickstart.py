"""Quickstart: a likelihood scan with exact gradients, densities and moments.

Run ``python examples/quickstart.py`` or ``mpiexec -n 2 python
examples/quickstart.py`` (what ``make run`` does): the likelihood scan splits
its θ grid over the ranks; everything is printed by rank 0 only.
"""

import numpy as np

from phasic_mpi import models

TIMES = np.array([0.5, 1.0, 2.0])


def describe(name, graph, theta):
    """Print pdf/cdf at TIMES, the mean and the variance at ``theta``."""
    pdf = graph.pdf(TIMES, theta)
    cdf = graph.cdf(TIMES, theta)
    params = ", ".join(f"{p}={v:g}" for p, v in zip(graph.param_names, theta))
    print(f"{name}  ({params})")
    print("      t        pdf        cdf")
    for t, f, F in zip(TIMES, pdf, cdf):
        print(f"  {t:5.2f}  {f:9.6f}  {F:9.6f}")
    print(f"  mean {graph.expectation(theta):.10f}   variance {graph.variance(theta):.10f}")


def world():
    """MPI.COMM_WORLD, or None without mpi4py (plain ``python`` works too)."""
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    return MPI.COMM_WORLD


def likelihood_scan(comm):
    """Log-likelihood and exact gradient of simulated Kingman data on a θ grid.

    Each rank evaluates a contiguous block of the grid (one batched libphase
    call); rank 0 gathers the blocks in grid order.
    """
    graph = models.kingman(10)
    data = graph.sample(200, [1.0], seed=2026)
    grid = np.linspace(0.6, 1.6, 11)[:, None]
    size, rank = (comm.size, comm.rank) if comm is not None else (1, 0)
    blocks = np.array_split(np.arange(len(grid)), size)
    ll, grad = graph.loglik_and_grad(data, grid[blocks[rank]])
    parts = comm.gather((ll, grad), root=0) if comm is not None else [(ll, grad)]
    if rank != 0:
        return
    ll = np.concatenate([p[0] for p in parts])
    grad = np.concatenate([p[1] for p in parts])
    print(f"kingman(10): 200 simulated TMRCAs at theta = 1, likelihood on {size} rank(s)")
    print("  theta     loglik      d loglik/d theta")
    for theta, value, slope in zip(grid[:, 0], ll, grad[:, 0]):
        print(f"  {theta:5.2f}  {value:10.4f}  {slope:12.4f}")
    best = grid[np.argmax(ll), 0]
    print(f"  grid maximum at theta = {best:.2f}; the gradient changes sign there")


def main():
    comm = world()
    likelihood_scan(comm)
    if comm is not None and comm.rank != 0:
        return
    print()
    rabbits = models.rabbits(2)
    print(f"rabbits(2): {rabbits.n_states} transient states, states {rabbits.states}\n")
    for theta in ([1.0, 2.0, 4.0], [2.0, 4.0, 18.0]):
        describe("rabbits(2)", rabbits, theta)
        print()

    n = 10
    kingman = models.kingman(n)
    print(f"kingman({n}): {kingman.n_states} transient states\n")
    for theta in ([1.0], [2.5]):
        describe(f"kingman({n})", kingman, theta)
        exact = 2 * (1 - 1 / n) / theta[0]
        print(f"  check E[T] = 2(1 - 1/n)/theta = {exact:.10f}"
              f"  (difference {kingman.expectation(theta) - exact:.1e})\n")


if __name__ == "__main__":
    main()
