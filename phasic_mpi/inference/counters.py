"""Counter-based random numbers drawn many at a time (libphase's Philox4x64-10).

A draw is a pure function of its key and its ids: nothing is carried from one
draw to the next, so any rank layout and a resumed run give the same numbers
(see :func:`phasic_mpi.inference.parallel.stream` for the generator-object
variant, used where a numpy ``Generator`` is needed, e.g. prior draws).

Key layout
----------
key = (seed, purpose); counter = (id0, id1, id2, id3 + b) for the b-th block
of four values of a row. The samplers fill the ids as

=========================  =======  =======  =====  =============
draw                       id0      id1      id2    id3
=========================  =======  =======  =====  =============
PT local-move noise        chain    level    scan   step * 2^32
PT local-move acceptance   chain    level    scan   step * 2^32
PT swap of pair (j, j+1)   chain    j        scan   0
PT reversible swap phase   chain    0        scan   0
=========================  =======  =======  =====  =============

(noise and acceptance differ in their purpose), so a row may use up to 2^34
values before it could meet the next step's counters.
"""

from __future__ import annotations

import numpy as np

from phasic_mpi._libphase import ffi, lib

__all__ = ["counter_ids", "normals", "uniforms"]

_MASK = (1 << 64) - 1
STEP_SHIFT = 32  # id3 = step << STEP_SHIFT: a row's blocks never reach the next step


def counter_ids(*columns: np.ndarray | int) -> np.ndarray:
    """Rows of four ids (uint64) from up to four columns or scalars (missing ones are 0)."""
    n = next((len(c) for c in columns if np.ndim(c)), 1)
    ids = np.zeros((n, 4), dtype=np.uint64)
    for k, column in enumerate(columns):
        ids[:, k] = column
    return ids


def _draw(fn, seed: int, purpose: int, ids: np.ndarray, per_row: int) -> np.ndarray:
    ids = np.ascontiguousarray(ids, dtype=np.uint64)
    if ids.ndim != 2 or ids.shape[1] != 4:
        raise ValueError(f"ids must have shape (n, 4), got {ids.shape}")
    out = np.empty((ids.shape[0], per_row))
    status = fn(int(seed) & _MASK, int(purpose) & _MASK, ids.shape[0],
                ffi.from_buffer("uint64_t[]", ids), per_row, ffi.from_buffer("double[]", out))
    if status != lib.PHASE_OK:
        raise ValueError(ffi.string(lib.phase_last_error()).decode())
    return out


def uniforms(seed: int, purpose: int, ids: np.ndarray, per_row: int = 1) -> np.ndarray:
    """(n, per_row) uniforms in [0, 1) for the n rows of ``ids`` ((n, 4) uint64).

    Value q of a row is word q of its counters: ``(w >> 11) * 2**-53``,
    numpy's conversion of a raw 64-bit word.
    """
    return _draw(lib.phase_random_uniform, seed, purpose, ids, per_row)


def normals(seed: int, purpose: int, ids: np.ndarray, per_row: int = 1) -> np.ndarray:
    """(n, per_row) standard normals (Box-Muller on word pairs) for the rows of ``ids``."""
    return _draw(lib.phase_random_normal, seed, purpose, ids, per_row)
