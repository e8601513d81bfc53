"""MPI plumbing shared by the algorithms: block layouts, ordered gathers and
counter-based random streams.

Rules that make results independent of the rank count:

- items (particles, replicas) are split into contiguous blocks whose sizes
  differ by at most one (:func:`block_layout`);
- every random number comes from a stream keyed by ids that do not depend on
  the layout (:func:`stream`);
- values that feed decisions or outputs are gathered in global order and
  reduced there, never with ``Allreduce`` (whose summation order depends on
  the layout).

Communication goes through :mod:`phasic_mpi.inference.comm`; nothing here imports mpi4py.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from phasic_mpi.inference.comm import as_communicator

__all__ = ["BlockLayout", "allgather_rows", "block_layout", "gather_rows", "stream"]


class BlockLayout(NamedTuple):
    """Contiguous blocks of ``n`` items over ``size`` ranks."""

    n: int
    counts: np.ndarray  # items per rank
    displs: np.ndarray  # first item of each rank
    rank: int

    @property
    def start(self) -> int:
        return int(self.displs[self.rank])

    @property
    def stop(self) -> int:
        return int(self.displs[self.rank] + self.counts[self.rank])

    @property
    def rows(self) -> slice:
        """This rank's items as a slice of the global arrays."""
        return slice(self.start, self.stop)

    @property
    def local_count(self) -> int:
        return int(self.counts[self.rank])


def block_layout(n: int, size: int, rank: int) -> BlockLayout:
    """Split ``n`` items into ``size`` contiguous blocks, the first ``n % size``
    one larger (no padding, no divisibility requirement)."""
    if n < 0 or size < 1 or not 0 <= rank < size:
        raise ValueError(f"bad layout: n={n}, size={size}, rank={rank}")
    base, extra = divmod(n, size)
    counts = np.array([base + (r < extra) for r in range(size)], dtype=np.int64)
    displs = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return BlockLayout(n, counts, displs, rank)


def allgather_rows(comm: Any, layout: BlockLayout, local: np.ndarray) -> np.ndarray:
    """Every rank's block of rows, concatenated in global order on every rank.

    One buffer-based ``Allgather`` (equal blocks) or ``Allgatherv`` of float64
    rows (shape ``(count, ...)``);
    ``comm`` is a :class:`~phasic_mpi.inference.comm.Communicator` or an
    mpi4py communicator.
    """
    return as_communicator(comm).allgather_rows(layout, local)


def gather_rows(comm: Any, layout: BlockLayout, local: np.ndarray, root: int = 0) -> np.ndarray | None:
    """Like :func:`allgather_rows` but only ``root`` receives (``Gatherv``)."""
    return as_communicator(comm).gather_rows(layout, local, root)


def stream(seed: int, *ids: int) -> np.random.Generator:
    """A Philox generator keyed by ``(seed, *ids)``.

    The key depends only on the ids (e.g. purpose, particle id, iteration),
    never on which rank draws, so any rank count gives the same numbers and a
    resumed run needs no saved generator state.
    """
    return np.random.Generator(np.random.Philox(np.random.SeedSequence([int(seed), *map(int, ids)])))
