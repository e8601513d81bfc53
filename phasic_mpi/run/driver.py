"""The one run loop shared by every algorithm: setup, progress, checkpoints,
signals, output.

An algorithm plugs in as an object with ``context``, ``start``, ``step``,
``history_due``/``history``, ``checkpoint``/``restore`` and ``finish`` (see
:class:`phasic_mpi.inference.svgd.SVGDAlgorithm`); it returns arrays and never touches
files. The driver gathers what rank 0 writes, checkpoints atomically every
``output.checkpoint_every`` iterations and when a SIGTERM/SIGINT arrives on
any rank (the ranks agree on it at the next iteration boundary), and resumes
from a checkpoint with any number of ranks: the datasets of the final file are
then bit for bit those of an uninterrupted run.
"""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from phasic_mpi.version import __version__
from phasic_mpi.errors import ConfigError
from phasic_mpi.io.checkpoint import checkpoint_path, read_checkpoint, write_checkpoint

__all__ = ["RunResult", "make_algorithm", "run"]

# Keys that may differ between a run and its resumption.
RESUMABLE_DIFFERENCES = {("output", "path"), ("output", "progress"), ("output", "log_every"),
                         ("output", "checkpoint_every")}


class RunResult(NamedTuple):
    """Outcome of :func:`run` (identical on every rank)."""

    path: str
    completed: bool  # False: stopped by a signal, resumable with --resume
    iteration: int
    signal_name: str | None = None


def make_algorithm(cfg: dict) -> Any:
    """The algorithm object for the config's algorithm section."""
    if "svgd" in cfg:
        from phasic_mpi.inference.svgd import SVGDAlgorithm, SVGDSettings

        return SVGDAlgorithm(SVGDSettings.from_config(cfg["svgd"]))
    if "pt" in cfg:
        from phasic_mpi.inference.pt import PTAlgorithm, PTSettings

        return PTAlgorithm(PTSettings.from_config(cfg["pt"]))
    raise ValueError("the config has no algorithm section ([svgd] or [pt])")


class _StopFlag:
    """Records SIGTERM/SIGINT; the ranks agree on it at iteration boundaries."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopFlag":
        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: cannot install handlers
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class _Progress:
    """Rank-0 progress: a bar on a terminal, periodic log lines in batch jobs."""

    def __init__(self, mode: str, total: int, start: int, log_every: float, enabled: bool) -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "log"
        self.mode = mode if enabled else "none"
        self.total, self.start, self.log_every = total, start, log_every
        self.t0 = time.monotonic()
        self.last = -np.inf

    def update(self, iteration: int, fields: str, force: bool = False) -> None:
        if self.mode == "none":
            return
        now = time.monotonic()
        elapsed = now - self.t0
        done = iteration - self.start
        eta = elapsed / done * (self.total - iteration) if done else np.nan
        if self.mode == "bar":
            width = 30
            filled = int(width * iteration / max(self.total, 1))
            line = f"\r[{'#' * filled}{'.' * (width - filled)}] {iteration}/{self.total}  {fields}  eta {eta:.0f}s"
            print(line, end="\n" if iteration == self.total else "", file=sys.stderr, flush=True)
        elif force or now - self.last >= self.log_every or iteration == self.total:
            self.last = now
            print(f"iteration {iteration}/{self.total}  {fields}  elapsed {elapsed:.1f}s  eta {eta:.0f}s",
                  file=sys.stderr, flush=True)


class _Buffer:
    """Rows for the run file, kept on rank 0 between checkpoints."""

    def __init__(self) -> None:
        self.rows: dict[str, list[np.ndarray]] = {}

    def add(self, arrays: dict[str, np.ndarray]) -> None:
        for name, value in arrays.items():
            self.rows.setdefault(name, []).append(np.asarray(value))

    def flush_to(self, writer: Any) -> None:
        writer.append_many({name: np.concatenate(parts, axis=0) for name, parts in self.rows.items()})
        self.rows.clear()


def _diagnostic_rows(algorithm: str, diag: Any) -> dict[str, np.ndarray]:
    return {f"{algorithm}/diagnostics/{k}": np.array([v]) for k, v in diag._asdict().items()}


def _git_revision() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _run_attrs(comm: Any) -> dict[str, Any]:
    """Run environment for the file's attributes (collective; meaningful on rank 0)."""
    from mpi4py import MPI

    from phasic_mpi.run.launch import launch_info

    launch = launch_info(comm) or {}
    attrs = {
        "phasic_mpi_version": __version__,
        "n_ranks": comm.size,
        "mpi_library": MPI.Get_library_version().strip().splitlines()[0],
        "mpi4py_version": __import__("mpi4py").__version__,
        "python_version": platform.python_version(),
        "hostnames": launch.get("nodes", []),
        "git_revision": _git_revision(),
        **{k: v for k, v in launch.items() if k != "nodes"},
    }
    return {k: v for k, v in attrs.items() if v is not None}


def _config_differences(a: dict, b: dict, prefix: tuple = ()) -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        path = prefix + (key,)
        if path in RESUMABLE_DIFFERENCES:
            continue
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _config_differences(va, vb, path)
        elif va != vb:
            out.append(".".join(path))
    return out


def run(cfg: dict, *, build: Callable[[dict, Any], tuple[Any, Any]], out: str | None = None, resume: bool = False, overwrite: bool = False,
        comm: Any = None, base_dir: str | os.PathLike = ".",
        stop_hint: str | None = "continue with --resume") -> RunResult:
    """Run the algorithm of a validated config; a collective call.

    Parameters
    ----------
    cfg : dict
        Validated config (:func:`phasic_mpi.config.load_config`).
    build : callable
        ``build(cfg, base_dir) -> (density, observations)``, called once the
        output checks have passed (:func:`phasic_mpi.config.loaders.build_density`).
    out : str, optional
        Output file (default ``cfg["output"]["path"]``).
    resume : bool
        Continue from the checkpoint next to ``out``.
    overwrite : bool
        Replace an existing output file (otherwise refused).
    comm : mpi4py communicator, optional
        Default ``MPI.COMM_WORLD``; the run works on a duplicate.
    stop_hint : str or None
        Said after "checkpoint written" when a signal stops the run (``None``:
        nothing is printed; a caller such as ``study`` says it instead).

    Returns
    -------
    RunResult
        ``completed=False`` if a signal stopped the run after a checkpoint.
    """
    from mpi4py import MPI

    from phasic_mpi.io.store import RunWriter

    from phasic_mpi.run.launch import limit_threads

    limit_threads()
    comm = (MPI.COMM_WORLD if comm is None else comm).Dup()
    try:
        # Installed for the whole run, set-up and final writes included: a signal
        # is acted on at an iteration boundary and never kills a rank mid-write.
        with _StopFlag() as stop:
            return _run(cfg, build, out, resume, overwrite, comm, base_dir, RunWriter, stop_hint, stop)
    finally:
        comm.Free()


def _run(cfg, build, out, resume, overwrite, comm, base_dir, RunWriter, stop_hint, stop) -> RunResult:
    t_start = time.time()
    path = os.fspath(out or cfg["output"]["path"])
    ckpt = checkpoint_path(path)
    rank0 = comm.rank == 0
    problem = None
    if rank0:  # refuse before any work, on every rank alike
        if resume and not os.path.exists(ckpt):
            problem = f"--resume: no checkpoint {ckpt} (nothing to resume)"
        elif not resume and os.path.exists(path) and not overwrite:
            problem = (f"output.path: {path} exists; choose another path, remove it, use "
                       "--force to replace it, or --resume")
    problem = comm.bcast(problem, root=0)
    if problem:
        raise ConfigError(problem)

    density, data = build(cfg, base_dir)
    algorithm = make_algorithm(cfg)
    ctx = algorithm.context(density, comm)
    writer = None
    if resume:
        loaded = read_checkpoint(ckpt) if rank0 else None
        iteration, arrays, rows, saved_cfg = comm.bcast(loaded, root=0)
        changed = _config_differences(cfg, saved_cfg)
        if changed:
            raise ConfigError(f"--resume: the config differs from the checkpoint's in {', '.join(changed)}")
        state = algorithm.restore(arrays, iteration, ctx)
        if rank0:
            writer = RunWriter.reopen(path, rows)
    else:
        state = algorithm.start(ctx)
        if rank0:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            writer = RunWriter.create(
                path, algorithm=algorithm.name, config=cfg, seed=algorithm.settings.seed,
                param_names=list(density.param_names), observations=data, overwrite=overwrite,
            )
    try:
        return _loop(cfg, algorithm, ctx, state, writer, path, ckpt, t_start, resume, stop_hint,
                     stop)
    finally:
        if writer is not None:
            writer.close()


def _loop(cfg, algorithm, ctx, state, writer, path, ckpt, t_start, resumed, stop_hint,
          stop) -> RunResult:
    from mpi4py import MPI

    comm = ctx.comm
    rank0 = comm.rank == 0
    output = cfg["output"]
    every = int(output.get("checkpoint_every", 0))
    progress = _Progress(output.get("progress", "auto"), algorithm.n_iterations, state.iteration,
                         float(output.get("log_every", 10.0)), rank0)
    buffer = _Buffer()
    flag = np.zeros(1, dtype=np.int64)
    agreed = np.zeros(1, dtype=np.int64)
    t_loop = time.time()
    t_agree = 0.0  # time in the per-iteration stop-flag Allreduce (rank 0)
    while state.iteration < algorithm.n_iterations:
        state, diag = algorithm.step(state, ctx)
        if rank0:
            buffer.add(_diagnostic_rows(algorithm.name, diag))
        if algorithm.history_due(state.iteration):
            rows = algorithm.history(state, ctx)
            if rank0:
                buffer.add(rows)
        flag[0] = stop.received or 0
        t0 = time.perf_counter()
        comm.Allreduce(flag, agreed, op=MPI.MAX)
        t_agree += time.perf_counter() - t0
        stopping = bool(agreed[0])
        due = every and state.iteration % every == 0 and state.iteration < algorithm.n_iterations
        if stopping or due:
            arrays = algorithm.checkpoint(state, ctx)
            if rank0:
                buffer.flush_to(writer)
                write_checkpoint(ckpt, state.iteration, arrays, writer.rows(), cfg)
            comm.Barrier()  # the checkpoint exists before anyone reports or exits
        if rank0:
            progress.update(state.iteration, algorithm.describe(diag), force=stopping)
        if stopping:
            name = signal.Signals(int(agreed[0])).name
            if rank0 and stop_hint is not None:
                print(f"stopped by {name} at iteration {state.iteration}; checkpoint written to "
                      f"{ckpt}; {stop_hint}", file=sys.stderr, flush=True)
            return RunResult(path, False, state.iteration, name)
    final = algorithm.finish(state, ctx)
    if rank0:
        buffer.flush_to(writer)
        writer.write_posterior(final["draws"], final["sample_stats"],
                               draws_are_independent=final.get("independent", False))
        for name, value in final["arrays"].items():
            group, _, leaf = name.rpartition("/")
            writer.write_group(group, {leaf: value})
        writer.set_attrs(final["diagnostics"], group=f"{algorithm.name}/diagnostics")
        attrs = _run_attrs(comm)
        attrs.update({
            "wall_time_s": time.time() - t_start,
            "loop_time_s": time.time() - t_loop,
            "stop_check_time_s": t_agree,
            "resumed": bool(resumed),
        })
        writer.set_attrs(attrs)
        writer.flush()
    else:
        _run_attrs(comm)  # collective gather of host names
    comm.Barrier()
    if rank0 and os.path.exists(ckpt):
        os.unlink(ckpt)
    return RunResult(path, True, state.iteration)
