"""Quickstart: two built-in models, their densities and moments.

Run ``python examples/quickstart.py``. Under ``mpiexec`` only rank 0 prints
(every rank computes the same numbers; this example does not distribute work).
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


def mpi_rank():
    """Rank in MPI.COMM_WORLD, or 0 without mpi4py (plain ``python`` works too)."""
    try:
        from mpi4py import MPI
    except ImportError:
        return 0
    return MPI.COMM_WORLD.Get_rank()


def main():
    if mpi_rank() != 0:
        return
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
