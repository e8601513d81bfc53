"""Shared figure helpers of :mod:`phasic_mpi.plotting` (Agg backend, PNG only).

Importing this module selects matplotlib's non-interactive Agg backend before
:mod:`matplotlib.pyplot` is imported, so no display is needed; every plotting
module imports ``plt`` from here. Other figure modules (e.g. the study plots)
may use :func:`subplots`, :func:`save`, :func:`mark_truth` and the colours.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display, PNG output only

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["CHAIN_COLORS", "DATA_COLOR", "DEFAULT_DPI", "TRUE_COLOR", "grid_shape", "hide_unused",
           "log_scale_if_wide", "mark_truth", "note", "plt", "save", "styled", "subplots"]

DEFAULT_DPI = 110
MIN_WIDTH = 6.4  # inches
TRUE_COLOR = "#d62728"  # the θ that simulated the data
DATA_COLOR = "0.55"  # observed data (grey)
CHAIN_COLORS = tuple(plt.get_cmap("tab10").colors)

_RC = {
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.framealpha": 0.85,
    "figure.titlesize": 11,
}


def note(name: str, text: str) -> None:
    """A message about file ``name`` on stderr (a figure skipped, a limit applied)."""
    print(f"phasic-mpi plot: {name}: {text}", file=sys.stderr)


def styled(function: Callable[..., Any]) -> Callable[..., Any]:
    """Run a figure function under the package's style (the global rcParams stay as they are)."""

    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with plt.rc_context(_RC):
            return function(*args, **kwargs)

    return wrapper


def grid_shape(n: int, max_cols: int = 3) -> tuple[int, int]:
    """``(rows, cols)`` of a grid holding ``n`` panels, at most ``max_cols`` wide."""
    cols = max(1, min(n, max_cols))
    return max(1, math.ceil(n / cols)), cols


def subplots(nrows: int, ncols: int, *, panel: tuple[float, float] = (4.0, 3.0),
             **kw: Any) -> tuple[Any, np.ndarray]:
    """A figure of ``nrows x ncols`` panels of size ``panel`` (inches).

    Returns the figure and a 2-D array of axes (always 2-D, even for one
    panel). Call it inside a :func:`styled` function for the package's style
    (light grid, no top/right spines, small fonts).
    """
    width = max(panel[0] * ncols, MIN_WIDTH)  # room for the figure title
    return plt.subplots(nrows, ncols, figsize=(width, panel[1] * nrows), squeeze=False, **kw)


def hide_unused(axes: np.ndarray, used: int) -> None:
    """Hide the panels after the first ``used`` ones (row-major)."""
    for ax in axes.ravel()[used:]:
        ax.set_visible(False)


def mark_truth(ax: Any, value: float | None, *, axis: str = "x", label: bool = True) -> None:
    """A dashed red line at the true value (``axis="x"``: vertical, ``"y"``: horizontal)."""
    if value is None or not np.isfinite(value):
        return
    line = ax.axvline if axis == "x" else ax.axhline
    line(value, color=TRUE_COLOR, linestyle="--", linewidth=1.4,
         label=f"true {value:.4g}" if label else None, zorder=5)


def log_scale_if_wide(ax: Any, values: np.ndarray, axis: str = "y", ratio: float = 50.0) -> bool:
    """Use a log scale when all ``values`` are positive and span more than ``ratio``."""
    finite = np.asarray(values, float)
    finite = finite[np.isfinite(finite)]
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > ratio:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
        return True
    return False


def save(fig: Any, out_dir: str | os.PathLike, name: str, dpi: int = DEFAULT_DPI,
         title: str | None = None, legend_from: Any = None) -> str:
    """Lay out ``fig`` tightly, write ``out_dir/name.png``, close it; returns the path.

    ``legend_from``: an axes whose labelled artists make one legend for the
    whole figure, in a row below the panels (so it hides no data), or a
    ``(handles, labels)`` pair for that legend.
    """
    if title:
        fig.suptitle(title)
    rect = (0.0, 0.0, 1.0, 1.0)
    if legend_from is not None:
        handles, labels = (legend_from if isinstance(legend_from, tuple)
                           else legend_from.get_legend_handles_labels())
        if handles:
            height = fig.get_size_inches()[1]
            fig.legend(handles, labels, loc="lower center", ncol=min(len(handles), 6),
                       frameon=False, fontsize=9)
            rect = (0.0, min(0.35 / height, 0.12), 1.0, 1.0)
    fig.tight_layout(rect=rect)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(os.fspath(out_dir), f"{name}.png")
    fig.savefig(path, dpi=dpi, format="png", facecolor="white")
    plt.close(fig)
    return path
