"""``phasic-mpi study``: many independent inferences as one MPI job.

With one rank the cells run one after the other. With ``P > 1`` ranks, rank 0
coordinates and writes the study file (it sleeps between messages, so it
needs no core of its own) and ranks ``1 .. P-1`` form groups of
``study.ranks_per_task`` ranks (left-over ranks join the last group). Each
group asks rank 0 for the next cell, runs it with the ordinary driver on the
group's communicator (SVGD or PT over the group) and sends back its summary,
which rank 0 records at once. A cell's results depend only on the study and
the cell, never on which group ran it or on the rank count, so the study
file's ``cells/`` group is bitwise the same for any ``P``.

* A cell that raises is recorded as failed (status and error text) and the
  others go on. The exception is a failure *inside* a run on a group of
  several ranks: its partners may be blocked in a collective, so the job is
  aborted (the cells recorded so far are kept).
* SIGTERM/SIGINT: the running cells checkpoint (``<study>.cells/``), no new
  cell starts, and the command exits with 128 + signal.
* Running the same command again skips recorded cells and resumes the
  checkpointed ones (``--retry-failed`` also reruns the failed ones).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import os
import sys
import time
import traceback
from typing import Any, NamedTuple

import numpy as np

from phasic_mpi.config.loaders import build_density
from phasic_mpi.config.validate import algorithm_name
from phasic_mpi.errors import ConfigError
from phasic_mpi.io.checkpoint import checkpoint_path
from phasic_mpi.study.spec import Cell, StudySpec, cell_config, config_param_names, load_study
from phasic_mpi.io.studyfile import DONE, FAILED, PENDING, StudyWriter

__all__ = ["StudyResult", "cell_summary", "main", "run_study"]

_READY, _WORK = 11, 12  # message tags
_STOPPED = "stopped"
_POLL_S = 0.005  # rank 0 sleeps between probes instead of spinning in MPI_Recv


class StudyResult(NamedTuple):
    """Outcome of :func:`run_study` (identical on every rank)."""

    path: str
    completed: bool  # False: stopped by a signal; run again to continue
    n_done: int
    n_failed: int
    signal_name: str | None = None


def cell_run_path(spec: StudySpec, cell: Cell) -> str:
    return os.path.join(spec.path + ".cells", f"cell-{cell.id:06d}.h5")


def cell_summary(run_path: str, cfg: dict, spec: StudySpec) -> dict[str, Any]:
    """Summary row of a finished cell, from its run file.

    ``truth_quantile`` is the fraction of posterior draws below the true θ;
    ``sbc_rank`` the number of ``L = min(sbc_draws, draws)`` equally spaced
    draws below it (simulation-based calibration); ``interval_lo/hi`` the
    central intervals at ``spec.levels``.
    """
    from phasic_mpi.io.runfile import read_run
    from phasic_mpi.analysis.summary import summarize_draws
    from phasic_mpi.analysis.truth import true_values

    rf = read_run(run_path)
    post = rf.flat_posterior()  # one (chain, draw) array per parameter
    independent = bool(rf.group_attrs("posterior").get("draws_are_independent", False))
    names = list(rf.param_names)
    known = true_values(cfg, names)
    truth = np.array([known.get(name, np.nan) for name in names], dtype=np.float64)
    levels = np.asarray(spec.levels)
    n_draws = int(post[names[0]].size)
    n_sbc = min(spec.sbc_draws, n_draws)
    thin = ((np.arange(n_sbc) + 0.5) * n_draws / n_sbc).astype(np.int64)
    row: dict[str, Any] = {name: [] for name in (
        "mean", "sd", "quantiles", "ess_bulk", "ess_tail", "rhat", "interval_lo",
        "interval_hi", "truth_quantile", "sbc_rank")}
    for name, true in zip(names, truth):
        draws = np.asarray(post[name], dtype=np.float64)
        flat = draws.ravel()
        ps = summarize_draws(name, draws, independent=independent)
        row["mean"].append(ps.mean)
        row["sd"].append(ps.sd)
        row["quantiles"].append(ps.quantiles)
        row["ess_bulk"].append(ps.ess_bulk)
        row["ess_tail"].append(ps.ess_tail)
        row["rhat"].append(ps.rhat)
        row["interval_lo"].append(np.quantile(flat, (1 - levels) / 2))
        row["interval_hi"].append(np.quantile(flat, (1 + levels) / 2))
        known = bool(np.isfinite(true))
        row["truth_quantile"].append(float(np.mean(flat < true)) if known else np.nan)
        row["sbc_rank"].append(int(np.sum(flat[thin] < true)) if known else -1)
    out = {k: np.asarray(v) for k, v in row.items()}
    out.update(truth=truth, sbc_draws=n_sbc, n_draws=n_draws)
    return out


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, ConfigError):
        return f"ConfigError: {exc}"
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _remove_run(path: str) -> None:
    for name in (path, checkpoint_path(path)):
        if os.path.exists(name):
            os.unlink(name)


def run_cell(spec: StudySpec, cell: Cell, comm: Any) -> dict[str, Any] | str:
    """Run one cell on ``comm`` (collective over its ranks).

    Returns the cell's row on ``comm``'s rank 0 (``{}`` on the others), or
    ``"stopped"`` on every rank if a signal stopped the run after a checkpoint.
    """
    from phasic_mpi.run import driver

    t0 = time.perf_counter()
    path = cell_run_path(spec, cell)
    base = {"data_seed": -1, "algorithm_seed": -1}
    try:  # deterministic: fails alike on every rank of the group
        cfg = cell_config(spec, cell, path)
        base["data_seed"] = int(((cfg.get("data") or {}).get("simulate") or {}).get("seed", -1))
        base["algorithm_seed"] = int(cfg[algorithm_name(cfg)]["seed"])
        names = config_param_names(cfg)
        if names != spec.param_names:
            raise ConfigError(f"model: this cell's parameters {list(names)} differ from "
                              f"the study's {list(spec.param_names)}")
    except Exception as exc:  # noqa: BLE001 - recorded as the cell's failure
        return {**base, "status": FAILED, "error": _error_text(exc),
                "wall_time_s": time.perf_counter() - t0} if comm.rank == 0 else {}
    resume = comm.bcast(os.path.exists(checkpoint_path(path)) if comm.rank == 0 else None, root=0)
    try:
        outcome = driver.run(cfg, build=build_density, out=path, resume=resume, overwrite=True, comm=comm,
                             base_dir=spec.base_dir, stop_hint=None)
    except Exception as exc:  # noqa: BLE001
        if comm.size > 1:  # partners may be blocked in a collective: abort (see docstring)
            raise RuntimeError(f"study cell {cell.id} failed inside its run on "
                               f"{comm.size} ranks: {_error_text(exc)}") from exc
        _remove_run(path)
        return {**base, "status": FAILED, "error": _error_text(exc),
                "wall_time_s": time.perf_counter() - t0}
    if not outcome.completed:
        return _STOPPED
    if comm.rank != 0:
        return {}
    row = cell_summary(path, cfg, spec)
    if not spec.keep_runs:
        _remove_run(path)
    return {**base, **row, "status": DONE, "error": "", "wall_time_s": time.perf_counter() - t0}


def _describe(spec: StudySpec, cell: Cell) -> str:
    parts = [f"{f.name}={f.label(i)}" for f, i in zip(spec.factors, cell.grid_index)]
    return " ".join(parts + [f"replicate={cell.replicate}"])


class _Log:
    def __init__(self, spec: StudySpec, total: int, already: int) -> None:
        self.spec, self.total, self.count = spec, total, already

    def __call__(self, cell: Cell, row: dict[str, Any]) -> None:
        self.count += 1
        what = "done" if row["status"] == DONE else f"FAILED: {row['error']}"
        print(f"cell {cell.id} ({self.count}/{self.total}) {_describe(self.spec, cell)}: {what} "
              f"[{row['wall_time_s']:.2f} s]", file=sys.stderr, flush=True)


def _open_writer(spec: StudySpec, force: bool, n_ranks: int) -> StudyWriter:
    from phasic_mpi.version import __version__

    cells = spec.cells
    cells_dir = spec.path + ".cells"
    fresh = force or not os.path.exists(spec.path)
    writer = StudyWriter.open(
        spec.path, identity=spec.identity(), n_cells=spec.n_cells,
        n_params=len(spec.param_names), n_factors=len(spec.factors),
        n_levels=len(spec.levels), cells=cells, force=force,
        attrs={"phasic_mpi_version": __version__, "study_type": spec.kind,
               "param_names": list(spec.param_names),
               "factors": [[f.name, list(f.values)] for f in spec.factors],
               "levels": list(spec.levels), "replicates": spec.replicates, "seed": spec.seed,
               "sbc_draws": spec.sbc_draws, "base_config": spec.base,
               "methods": spec.methods})
    if fresh:  # checkpoints of an earlier study at this path must not be resumed
        for stale in glob.glob(os.path.join(cells_dir, "cell-*.h5*")):
            os.unlink(stale)
    os.makedirs(cells_dir, exist_ok=True)
    writer.set_attrs({"n_ranks": n_ranks, "ranks_per_task": spec.ranks_per_task})
    return writer


def _todo(status: np.ndarray, retry_failed: bool) -> list[int]:
    wanted = (status == PENDING) | (retry_failed & (status == FAILED))
    return [int(i) for i in np.flatnonzero(wanted)]


def run_study(spec: StudySpec, *, comm: Any = None, force: bool = False,
              retry_failed: bool = False) -> StudyResult:
    """Run (or continue) a study; a collective call over ``comm``.

    Parameters
    ----------
    spec : StudySpec
        From :func:`phasic_mpi.study.spec.load_study`.
    comm : mpi4py communicator, optional
        Default ``MPI.COMM_WORLD``; the study works on a duplicate.
    force : bool
        Replace an existing study file instead of continuing it.
    retry_failed : bool
        Run the cells recorded as failed again.
    """
    from mpi4py import MPI

    from phasic_mpi.run.driver import _StopFlag
    from phasic_mpi.run.launch import limit_threads

    limit_threads()
    comm = (MPI.COMM_WORLD if comm is None else comm).Dup()
    try:
        problem, todo, writer = None, [], None
        if comm.rank == 0:
            try:
                writer = _open_writer(spec, force, comm.size)
                todo = _todo(writer.status(), retry_failed)
            except (ValueError, OSError) as exc:
                problem = f"study.path: {exc}"
        problem = comm.bcast(problem, root=0)
        if problem:
            raise ConfigError(problem)
        with _StopFlag() as stop:
            if comm.size == 1:
                stopped = _serial(spec, todo, writer, comm, stop)
            elif comm.rank == 0:
                stopped = _coordinate(spec, todo, writer, comm, stop)
            else:
                stopped = _work(spec, comm, stop)
        stopped = comm.allreduce(stopped, op=MPI.MAX)
        counts = None
        if comm.rank == 0:
            status = writer.status()
            counts = (int(np.sum(status == DONE)), int(np.sum(status == FAILED)))
            writer.close()
            if not stopped and not spec.keep_runs:
                try:
                    os.rmdir(spec.path + ".cells")
                except OSError:
                    pass
        n_done, n_failed = comm.bcast(counts, root=0)
        name = None
        if stopped:
            import signal

            name = signal.Signals(stopped).name
        return StudyResult(spec.path, not stopped, n_done, n_failed, name)
    finally:
        comm.Free()


def _serial(spec, todo, writer, comm, stop) -> int:
    cells = spec.cells
    log = _Log(spec, spec.n_cells, spec.n_cells - len(todo))
    for cid in todo:
        if stop.received:
            return stop.received
        row = run_cell(spec, cells[cid], comm)
        if row == _STOPPED:
            return stop.received or 15
        writer.record(cid, row)
        log(cells[cid], row)
    return stop.received or 0


def _coordinate(spec, todo, writer, comm, stop) -> int:
    """Rank 0: hand out cells in order, record the rows as they arrive."""
    from mpi4py import MPI

    cells = spec.cells
    log = _Log(spec, spec.n_cells, spec.n_cells - len(todo))
    queue = collections.deque(todo)
    n_groups = _n_groups(comm.size, spec.ranks_per_task)
    comm.Split(MPI.UNDEFINED, 0)
    active, stopped = n_groups, 0
    status = MPI.Status()
    while active:
        while not comm.Iprobe(source=MPI.ANY_SOURCE, tag=_READY, status=status):
            time.sleep(_POLL_S)
            stopped = stopped or (stop.received or 0)
        source = status.Get_source()
        cid, row = comm.recv(source=source, tag=_READY)
        if row == _STOPPED:
            stopped = stopped or 15
        elif row is not None:
            writer.record(cid, row)
            log(cells[cid], row)
        stopped = stopped or (stop.received or 0)
        if stopped or not queue:
            comm.send(None, dest=source, tag=_WORK)
            active -= 1
        else:
            comm.send(queue.popleft(), dest=source, tag=_WORK)
    return stopped


def _n_groups(size: int, ranks_per_task: int) -> int:
    return max(1, (size - 1) // ranks_per_task)


def _work(spec, comm, stop) -> int:
    """Ranks 1..P-1: run cells in groups until rank 0 says stop."""
    from mpi4py import MPI

    n_groups = _n_groups(comm.size, spec.ranks_per_task)
    group = min((comm.rank - 1) // spec.ranks_per_task, n_groups - 1)
    gcomm = comm.Split(group, comm.rank)
    cells = spec.cells
    try:
        message: tuple[int | None, Any] = (None, None)
        stopped = 0
        while True:
            cid = None
            if gcomm.rank == 0:
                if stop.received and message[1] is None:
                    message = (None, _STOPPED)
                comm.send(message, dest=0, tag=_READY)
                cid = comm.recv(source=0, tag=_WORK)
            cid = gcomm.bcast(cid, root=0)
            if cid is None:
                return stopped or (stop.received or 0)
            # a signal that came while waiting: do not start the cell (a rerun will)
            signalled = gcomm.allreduce(stop.received or 0, op=MPI.MAX)
            if signalled:
                stopped, message = signalled, (None, _STOPPED)
                continue
            row = run_cell(spec, cells[cid], gcomm)
            if row == _STOPPED:
                stopped = stop.received or 15
                message = (cid, _STOPPED)
            else:
                message = (cid, row if gcomm.rank == 0 else None)
    finally:
        gcomm.Free()


# ---------------------------------------------------------------- command
def main(args: argparse.Namespace) -> int:
    """``phasic-mpi study STUDY.toml [--out PATH] [--force] [--retry-failed]``."""
    import signal

    spec = load_study(args.study)  # config errors before any MPI work
    if args.out is not None:
        spec = dataclasses.replace(spec, path=os.path.abspath(args.out))
    from phasic_mpi.run.launch import check_launch

    check_launch()
    result = run_study(spec, force=args.force, retry_failed=args.retry_failed)
    from mpi4py import MPI

    if MPI.COMM_WORLD.rank == 0:
        total = spec.n_cells
        print(f"{result.path}: {result.n_done} of {total} cells done, {result.n_failed} failed"
              + ("" if result.completed else
                 f"; stopped by {result.signal_name}, run the same command to continue"),
              file=sys.stderr, flush=True)
    if not result.completed:
        return 128 + int(getattr(signal, result.signal_name or "SIGTERM"))
    return 0
