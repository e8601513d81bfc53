"""Figures (PNG) of run and study files: ``phasic-mpi plot FILE.h5 [--out DIR]``.

Reads only the file (no MPI, no display: matplotlib's Agg backend). A run file
gives the posterior marginals, a pair plot, the algorithm's own figures (SVGD:
particle trajectories and convergence; PT: β = 1 traces, ladder, swaps and
round trips) and a posterior-predictive check. The algorithm's figures are the
names in the file's ``algorithm_figures`` attribute (its class's ``figures``,
stored by the run loop), drawn by the functions of :data:`FIGURES`; a new
algorithm's own figures join with :func:`register_figure`; a study file (root attribute
``file_kind = "study"``) is handed to :func:`phasic_mpi.plotting.study.plot_study`.
Each figure is described in ``docs/plots.md``.
"""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Callable, Sequence
from typing import Any

import h5py

from phasic_mpi.errors import ConfigError
from phasic_mpi.plotting._style import DEFAULT_DPI, note
from phasic_mpi.io.runfile import read_run

__all__ = ["FIGURES", "algorithm_figures", "default_out_dir", "file_kind", "main", "plot_file",
           "plot_run", "register_figure"]

Figure = Callable[[Any, str, int], "str | None"]  # (RunView, out_dir, dpi) -> path or None

# Figure name -> "module:function" in this package (imported on use: matplotlib
# is slow to load) or a function. An algorithm names its figures in a class
# attribute ``figures``; the run file carries the names, so that plotting needs
# no algorithm code (plotting does not import inference).
FIGURES: dict[str, str | Figure] = {
    "svgd_trajectories": "svgd:plot_trajectories",
    "svgd_diagnostics": "svgd:plot_svgd_diagnostics",
    "pt_trace": "pt:plot_trace",
    "pt_ladder": "pt:plot_ladder",
    "pt_swaps": "pt:plot_swaps",
}
# Run files written before they named their figures: the built-in algorithms' sets.
_UNNAMED = {"svgd": ("svgd_trajectories", "svgd_diagnostics"),
            "pt": ("pt_trace", "pt_ladder", "pt_swaps")}


def register_figure(name: str, function: Figure) -> Figure:
    """Add a figure an algorithm can name in its ``figures``.

    ``function(view, out_dir, dpi)`` gets a :class:`phasic_mpi.plotting.run.RunView`
    and returns the path it wrote, or None when the file has nothing to show.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a figure needs an identifier as its name, got {name!r}")
    FIGURES[name] = function
    return function


def algorithm_figures(run: Any) -> tuple[list[Figure], list[str]]:
    """The figure functions a run file names, and the names nobody registered."""
    names = run.attrs.get("algorithm_figures")
    names = _UNNAMED.get(run.algorithm, ()) if names is None else names
    found, unknown = [], []
    for name in names:
        entry = FIGURES.get(name)
        if entry is None:
            unknown.append(name)
        elif isinstance(entry, str):
            module, _, attr = entry.partition(":")
            found.append(getattr(importlib.import_module(f"phasic_mpi.plotting.{module}"), attr))
        else:
            found.append(entry)
    return found, unknown


def default_out_dir(path: str | os.PathLike) -> str:
    """``FILE`` without its ``.h5``/``.hdf5`` suffix, plus ``_plots``."""
    base, ext = os.path.splitext(os.fspath(path))
    return (base if ext.lower() in (".h5", ".hdf5") else os.fspath(path)) + "_plots"


def file_kind(path: str | os.PathLike) -> str:
    """``"study"`` or ``"run"``: what ``path`` holds.

    Raises
    ------
    ConfigError
        If the file does not exist, is not HDF5 (or is locked by a running
        job), or is neither a run nor a study file; the message names it.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ConfigError(f"plot: {path}: no such file")
    if os.path.isdir(path):
        raise ConfigError(f"plot: {path}: is a directory, expected a run or study file (.h5)")
    try:
        with h5py.File(path, "r") as f:
            kind = f.attrs.get("file_kind")
            is_run = "phasic_mpi_version" in f.attrs
    except OSError as exc:
        raise ConfigError(f"plot: {path}: cannot read it as HDF5 ({exc}); if its run is "
                          "still going, wait until it ends") from None
    if isinstance(kind, bytes):
        kind = kind.decode()
    if kind is not None and str(kind) == "study":
        return "study"
    if not is_run:
        raise ConfigError(f"plot: {path}: not a phasic_mpi run or study file "
                          "(no phasic_mpi_version or file_kind attribute)")
    return "run"


def plot_run(path: str | os.PathLike, out_dir: str | os.PathLike | None = None,
             dpi: int = DEFAULT_DPI) -> list[str]:
    """Write every figure of a run file; returns the paths written.

    Figures that do not apply (no posterior yet, one parameter for the pair
    plot, a log-density model for the predictive check) are skipped with a
    message on stderr.
    """
    from phasic_mpi.plotting import predictive, run, terms

    out = os.fspath(out_dir) if out_dir is not None else default_out_dir(path)
    view = run.load_view(read_run(path))
    figures: list[Callable[[run.RunView, str, int], str | None]] = []
    if view.draws.size:
        figures.append(run.plot_marginals)
        if len(view.param_names) >= 2:
            figures.append(run.plot_pairs)
    else:
        note(view.name, "no posterior draws (did the run finish?): marginals, pair plot, "
                         "traces and predictive check skipped")
    own, unknown = algorithm_figures(view.run)  # "map" names none: its draws are Laplace's
    figures += own
    if unknown:
        note(view.name, f"no figure function for {', '.join(unknown)} (register one with "
                        "phasic_mpi.plotting.register_figure): skipped")
    figures += [predictive.plot_predictive, terms.plot_term_predictive]
    written = [p for p in (fig(view, out, dpi) for fig in figures) if p is not None]
    if view.draws.size and len(view.param_names) > run.MAX_PAIR_PARAMS:
        note(view.name, f"pair plot shows the first {run.MAX_PAIR_PARAMS} of "
                         f"{len(view.param_names)} parameters")
    return written


def plot_file(path: str | os.PathLike, out_dir: str | os.PathLike | None = None,
              dpi: int = DEFAULT_DPI) -> list[str]:
    """Write the figures of a run or study file; returns the paths written."""
    path = os.fspath(path)
    out = os.fspath(out_dir) if out_dir is not None else default_out_dir(path)
    if file_kind(path) == "study":
        try:
            from phasic_mpi.plotting.study import plot_study
        except ModuleNotFoundError as exc:
            if exc.name != "phasic_mpi.plotting.study":
                raise
            raise ConfigError(f"plot: {path} is a study file, but this installation cannot "
                              "plot studies yet (phasic_mpi.plotting.study is missing)") from None
        return list(plot_study(path, out, dpi))
    return plot_run(path, out, dpi)


def _out_dirs(files: Sequence[str], out: str | None) -> list[str]:
    """Per file: the default directory, ``out`` for one file, ``out/<stem>`` for several."""
    if out is None:
        return [default_out_dir(f) for f in files]
    if len(files) == 1:
        return [out]
    stems = [os.path.splitext(os.path.basename(f))[0] for f in files]
    dirs, seen = [], {}
    for stem in stems:
        seen[stem] = seen.get(stem, 0) + 1
        dirs.append(os.path.join(out, stem if stems.count(stem) == 1 else f"{stem}_{seen[stem]}"))
    return dirs


def main(args: argparse.Namespace) -> int:
    """``phasic-mpi plot``: write the figures of ``args.files``; returns the exit status.

    Every file is checked before any figure is drawn, so a typo in the
    second file fails at once. Each written path is printed.
    """
    if args.dpi is not None and args.dpi <= 0:
        raise ConfigError(f"--dpi: must be positive, got {args.dpi}")
    files = [os.fspath(f) for f in args.files]
    for path in files:
        file_kind(path)
    for path, out in zip(files, _out_dirs(files, args.out)):
        for written in plot_file(path, out, args.dpi or DEFAULT_DPI):
            print(written)
    return 0
