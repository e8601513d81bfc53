"""Parallel tempering's b = 1 draws as rows streamed to the run loop.

A PT state keeps the cold-chain draws made since the last drain
(``PTState.samples``: per local level-0 slot, (S, d + 2) rows of z,
log-likelihood and local acceptance). :meth:`PTAlgorithm.drain
<phasic_mpi.inference.pt.PTAlgorithm.drain>` gathers them in chain order and
hands them to the run loop as history rows ``cold/*``, one row per scan; at
the end :meth:`~phasic_mpi.inference.pt.PTAlgorithm.finish` joins the rows
read back with any draws still in the state. The arithmetic is plain copying:
the draws have the same bits however they travelled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["COLD", "cold_rows", "gather_cold", "with_drained"]

COLD = "cold/"  # history rows of the draws, relative to the algorithm's group


def gather_cold(samples: np.ndarray, ctx: Any) -> np.ndarray | None:
    """Every chain's (S, d + 2) draws of ``samples`` (this rank's level-0 slots) as
    one (chains, S, d + 2) array on rank 0 (None elsewhere); a collective call."""
    n, layout = ctx.settings.replicas, ctx.layout
    level0 = (g for g in range(layout.start, layout.stop) if g % n == 0)
    parts = ctx.comm.gather({g // n: samples[k] for k, g in enumerate(level0)}, root=0)
    if parts is None:
        return None
    merged = {c: s for part in parts for c, s in part.items()}
    return np.stack([merged[c] for c in range(ctx.settings.chains)])


def cold_rows(samples: np.ndarray, iteration: int) -> dict[str, np.ndarray]:
    """History rows of (chains, S, d + 2) draws made by the S scans before ``iteration``:
    ``cold/scan`` (S,), ``cold/z`` (S, chains, d) in unconstrained coordinates,
    ``cold/log_likelihood_total`` and ``cold/local_accept`` (S, chains)."""
    s, d = samples.shape[1], samples.shape[2] - 2
    return {f"{COLD}scan": np.arange(iteration - s, iteration),
            f"{COLD}z": samples[:, :, :d].transpose(1, 0, 2),
            f"{COLD}log_likelihood_total": samples[:, :, d].T,
            f"{COLD}local_accept": samples[:, :, d + 1].T}


def with_drained(history: Mapping[str, np.ndarray], samples: np.ndarray) -> np.ndarray:
    """(chains, S, d + 2) draws: the ``cold/*`` rows of ``history``, then ``samples``."""
    z = history.get(f"{COLD}z")
    if z is None:
        return samples
    drained = np.concatenate([z, history[f"{COLD}log_likelihood_total"][:, :, None],
                              history[f"{COLD}local_accept"][:, :, None]], axis=2)
    return np.concatenate([drained.transpose(1, 0, 2), samples], axis=1)
