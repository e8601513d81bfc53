"""Checkpoints: the full state of a run in one ``.npz`` file next to its run file.

Written by rank 0 only, atomically (temporary file, fsync, rename), so the
checkpoint path holds either the previous checkpoint or the new one, never a
half-written file. The metadata (iteration, history row counts of the run
file, the run's settings) is JSON text; no pickles are read back.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

__all__ = ["checkpoint_path", "read_checkpoint", "write_checkpoint"]


def checkpoint_path(path: str | os.PathLike) -> str:
    """The checkpoint file of run file ``path``."""
    return os.fspath(path) + ".ckpt.npz"


def write_checkpoint(path: str, iteration: int, arrays: dict[str, np.ndarray],
                     rows: dict[str, int], config: dict[str, Any]) -> None:
    """Atomically write the state ``arrays`` after ``iteration`` iterations."""
    tmp = f"{path}.tmp.{os.getpid()}"
    meta = json.dumps({"iteration": iteration, "rows": rows, "config": config})
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, __meta__=np.array(meta), **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_checkpoint(path: str) -> tuple[int, dict[str, np.ndarray], dict[str, int], dict[str, Any]]:
    """``(iteration, arrays, rows, config)`` as :func:`write_checkpoint` stored them."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["__meta__"]))
        arrays = {k: data[k] for k in data.files if k != "__meta__"}
    return meta["iteration"], arrays, meta["rows"], meta["config"]
