"""The one run loop shared by every algorithm: setup, progress, checkpoints,
signals, output.

An algorithm plugs in through :class:`~phasic_mpi.inference.protocol.Algorithm`
(found by name in :mod:`phasic_mpi.inference.registry`); it returns records
and never touches files. :func:`execute` drives it: it gathers what rank 0
writes, checkpoints atomically every ``checkpoint_every`` iterations and
when a SIGTERM/SIGINT arrives on any rank (the ranks agree on it at the
next iteration boundary), and resumes from a checkpoint with any number of
ranks: the datasets of the final file are then bit for bit those of an
uninterrupted run. Without a run file the history stays in memory and a
signal ends the run early with the result so far. :func:`run` is the
command line's entry: a validated config in, the same loop.
"""

from __future__ import annotations

import functools
import math
import os
import platform
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from phasic_mpi.errors import ConfigError, ConvergenceWarning, EmptyResultError
from phasic_mpi.inference.comm import Communicator, as_communicator
from phasic_mpi.inference.protocol import FinalRecord
from phasic_mpi.inference.registry import algorithm_class, algorithm_names
from phasic_mpi.io.checkpoint import (check_layout, checkpoint_path, read_checkpoint,
                                      write_checkpoint)
from phasic_mpi.run.feasibility import check_feasible, seconds_per_iteration
from phasic_mpi.run.settings import OutputSettings
from phasic_mpi.run.results import write_model_results
from phasic_mpi.version import __version__

__all__ = ["RunOutcome", "RunResult", "execute", "make_algorithm", "run"]

# Keys that may differ between a run and its resumption.
RESUMABLE_DIFFERENCES = {("output", "path"), ("output", "progress"), ("output", "log_every"),
                         ("output", "checkpoint_every")}


class RunResult(NamedTuple):
    """Outcome of :func:`run` (identical on every rank)."""

    path: str
    completed: bool  # False: stopped by a signal, resumable with --resume
    iteration: int
    signal_name: str | None = None


class RunOutcome(NamedTuple):
    """Outcome of :func:`execute`; ``final``, ``history`` and ``attrs`` on rank 0 only."""

    path: str | None  # the run file, None if none was written
    completed: bool  # False: stopped by a signal (resumable if there is a file)
    iteration: int
    signal_name: str | None = None
    final: FinalRecord | None = None  # None: stopped at a checkpoint, or not rank 0
    history: dict[str, np.ndarray] | None = None  # runs without a file: every history row
    attrs: dict[str, Any] | None = None  # run environment and timings


def make_algorithm(cfg: Mapping[str, Any]) -> Any:
    """The algorithm object for a validated config's algorithm section."""
    for name in algorithm_names():
        if name in cfg:
            cls = algorithm_class(name)
            return cls(cls.Settings.from_config(cfg[name]))
    raise ValueError(f"the config has no algorithm section ({', '.join(algorithm_names())})")


class _StopFlag:
    """Records SIGTERM/SIGINT; the ranks agree on it at iteration boundaries.

    With ``immediate=True`` (a run's own flag), until :meth:`defer` (during
    set-up: feasibility, the algorithm's context and initial state) a signal
    whose previous disposition was the default acts at once as it would
    without this flag (SIGTERM ends the process, SIGINT raises
    KeyboardInterrupt): there is nothing to checkpoint yet, and set-up may
    take long (one stream per initial particle). A caller that handles
    signals itself (a study) keeps its handler, and the run stops at its
    first iteration boundary as before.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, immediate: bool = False) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self._deferring = not immediate

    def defer(self) -> None:
        """From now on record signals for the next iteration boundary."""
        self._deferring = True

    def __enter__(self) -> "_StopFlag":
        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: cannot install handlers
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        previous = self._previous.get(signum)
        if not self._deferring and previous in (signal.SIG_DFL, signal.default_int_handler):
            signal.signal(signum, previous)  # set-up: the default disposition, now
            signal.raise_signal(signum)
            return
        self.received = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class _Progress:
    """Rank-0 progress: a tqdm bar on a terminal, periodic log lines in batch jobs."""

    def __init__(self, mode: str, total: int, start: int, log_every: float, enabled: bool,
                 label: str = "iteration") -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "log"
        self.mode = mode if enabled else "none"
        self.total, self.start, self.log_every, self.label = total, start, log_every, label
        self.t0 = time.monotonic()
        self.last = -np.inf
        self.bar = None
        if self.mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit=label, file=sys.stderr,
                            dynamic_ncols=True, mininterval=0.2)

    def update(self, iteration: int, fields: str, force: bool = False) -> None:
        if self.mode == "none":
            return
        if self.bar is not None:
            self.bar.set_postfix_str(fields, refresh=False)
            self.bar.update(iteration - self.bar.n)
            return
        now = time.monotonic()
        elapsed = now - self.t0
        done = iteration - self.start
        eta = elapsed / done * (self.total - iteration) if done else np.nan
        if force or now - self.last >= self.log_every or iteration == self.total:
            self.last = now
            print(f"{self.label} {iteration}/{self.total}  {fields}  elapsed {elapsed:.1f}s  eta {eta:.0f}s",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Buffer:
    """History rows on rank 0: kept between checkpoints (run file) or for the
    whole run (no file). Names are made absolute in the algorithm's group here."""

    def __init__(self, group: str) -> None:
        self.group = group
        self.rows: dict[str, list[np.ndarray]] = {}

    def add(self, arrays: Mapping[str, np.ndarray]) -> None:
        for name, value in arrays.items():
            self.rows.setdefault(f"{self.group}/{name}", []).append(np.asarray(value))

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: np.concatenate(parts, axis=0) for name, parts in self.rows.items()}

    def flush_to(self, writer: Any) -> None:
        if writer is not None:
            writer.append_many(self.arrays())
            self.rows.clear()


class _HistoryView(Mapping):
    """Every history row of the algorithm's group so far, for ``finish`` (rank 0):
    read back from the run file, or from the in-memory buffer of a run without one.
    Names are relative to the group; a dataset is read when it is looked up."""

    def __init__(self, buffer: _Buffer, writer: Any) -> None:
        self.buffer, self.writer = buffer, writer
        self.prefix = f"{buffer.group}/"

    def _names(self) -> list[str]:
        names = self.writer.rows() if self.writer is not None else self.buffer.rows
        return [n.removeprefix(self.prefix) for n in names if n.startswith(self.prefix)]

    def __getitem__(self, name: str) -> np.ndarray:
        full = self.prefix + name
        if self.writer is not None:
            return self.writer.history(full)
        if full not in self.buffer.rows:
            raise KeyError(name)
        return np.concatenate(self.buffer.rows[full], axis=0)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


def _drain(algorithm: Any, state: Any, ctx: Any, buffer: _Buffer) -> Any:
    """Move the rows an algorithm streams (``drain``) from its state into the history."""
    drain = getattr(algorithm, "drain", None)
    if drain is None:
        return state
    state, rows = drain(state, ctx)
    if rows and ctx.comm.rank == 0:
        buffer.add(rows)
    return state


def _finish(algorithm: Any, state: Any, ctx: Any, buffer: _Buffer, writer: Any) -> Any:
    """``finish``; an algorithm that streams rows gets the whole history back (rank 0)."""
    if getattr(algorithm, "drain", None) is None:
        return algorithm.finish(state, ctx)
    view = None
    if ctx.comm.rank == 0:
        buffer.flush_to(writer)  # a file run reads what was written
        view = _HistoryView(buffer, writer)
    return algorithm.finish(state, ctx, view)


def _diagnostic_rows(diag: Any) -> dict[str, np.ndarray]:
    return {f"diagnostics/{k}": np.array([v]) for k, v in diag._asdict().items()}


@functools.lru_cache(maxsize=1)
def _git_revision() -> str | None:
    """The package checkout's git revision, looked up once per process: the code
    a process runs is the code it imported, and ``git rev-parse`` costs 4-12 ms
    of every run (a benchmark or study calls ``run`` many times)."""
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _run_attrs(comm: Communicator) -> dict[str, Any]:
    """Run environment for the file's attributes (collective; meaningful on rank 0)."""
    from phasic_mpi.run.launch import launch_info

    launch = launch_info(comm) or {}
    attrs = {
        "phasic_mpi_version": __version__,
        **comm.describe(),
        "python_version": platform.python_version(),
        "hostnames": launch.get("nodes", []),
        "git_revision": _git_revision(),
        **{k: v for k, v in launch.items() if k != "nodes"},
    }
    return {k: v for k, v in attrs.items() if v is not None}


def _config_differences(a: Mapping, b: Mapping, prefix: tuple = ()) -> list[str]:
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


def check_output(path: str | None, resume: bool, overwrite: bool, comm: Communicator) -> None:
    """Refuse a run whose output cannot be written as asked, on every rank alike."""
    problem = None
    if comm.rank == 0 and path is not None:
        ckpt = checkpoint_path(path)
        if os.path.isdir(path):
            problem = f"output.path: {path} is a directory; name a file"
        elif resume and not os.path.exists(ckpt):
            problem = f"--resume: no checkpoint {ckpt} (nothing to resume)"
        elif not resume and os.path.exists(path) and not overwrite:
            problem = (f"output.path: {path} exists; choose another path, remove it, use "
                       "--force to replace it, or --resume")
    elif path is None and resume:
        problem = "resume: needs the run file (out=...) whose checkpoint to continue"
    problem = comm.bcast(problem, root=0)
    if problem:
        raise ConfigError(problem)


def run(cfg: dict, *, build: Callable[[dict, Any], tuple[Any, Any]], out: str | None = None,
        resume: bool = False, overwrite: bool = False, comm: Any = None,
        base_dir: str | os.PathLike = ".",
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
    comm : Communicator or mpi4py communicator, optional
        Default: the world communicator (serial without MPI); the run works
        on a duplicate.
    stop_hint : str or None
        Said after "checkpoint written" when a signal stops the run (``None``:
        nothing is printed; a caller such as ``study`` says it instead).

    Returns
    -------
    RunResult
        ``completed=False`` if a signal stopped the run after a checkpoint.
    """
    from phasic_mpi.run.launch import output_lock

    path = os.fspath(out or cfg["output"]["path"])
    facade = as_communicator(comm)
    # the lock first: a second run on this path hears about the lock, at once
    with output_lock(path, facade):
        check_output(path, resume, overwrite, facade)  # before the (maybe slow) model build
        density, data = build(cfg, base_dir)
        outcome = execute(make_algorithm(cfg), density, observations=data, comm=facade,
                          out=path, resume=resume, overwrite=overwrite,
                          output=OutputSettings.from_config(cfg["output"]), record=cfg,
                          stop_hint=stop_hint, lock=False)
    return RunResult(path, outcome.completed, outcome.iteration, outcome.signal_name)


def execute(algorithm: Any, density: Any, *, observations: Any = None, comm: Any = None,
            out: str | os.PathLike | None = None, resume: bool = False, overwrite: bool = False,
            output: OutputSettings | None = None, record: Mapping[str, Any] | None = None,
            init: np.ndarray | None = None,
            stop_hint: str | None = "continue with --resume", lock: bool = True) -> RunOutcome:
    """Drive ``algorithm`` on ``density`` to the end; a collective call.

    Parameters
    ----------
    algorithm : Algorithm
        The algorithm object (its settings included).
    density : LogDensity
        The target, the same on every rank.
    observations : Observations, optional
        Stored in the run file's ``observed_data``.
    comm : Communicator or mpi4py communicator, optional
        Default: the world communicator; the run works on a duplicate.
    out : path-like, optional
        Run file; None keeps everything in memory (no checkpoints).
    resume, overwrite : bool
        Continue from ``out``'s checkpoint; replace an existing ``out``.
    output : OutputSettings, optional
        Checkpoint interval and progress display.
    record : mapping, optional
        The run's description (JSON-able) stored in the file and the
        checkpoint; a resumed run must describe the same run.
    init : (k, d) array, optional
        Initial points in z (a warm start), instead of prior draws.
    stop_hint : str or None
        Said after "checkpoint written" when a signal stops a run with a file.
    lock : bool
        Hold the output's run lock for the run (False: the caller holds it).
    """
    from phasic_mpi.run.launch import limit_threads, native_exit_guard, output_lock

    limit_threads()
    comm = as_communicator(comm).dup()
    try:
        # Installed for the whole run: during set-up a signal acts at once (nothing
        # to save yet); from the first write on it is acted on at an iteration
        # boundary and never kills a rank mid-write. A native exit() fails the job.
        with _StopFlag(immediate=True) as stop, output_lock(out if lock else None, comm), \
                native_exit_guard():
            return _execute(algorithm, density, observations, comm, out, resume, overwrite,
                            output or OutputSettings(), dict(record or {}), init, stop_hint,
                            stop)
    finally:
        comm.free()


def _execute(algorithm, density, observations, comm, out, resume, overwrite, output, record,
             init, stop_hint, stop) -> RunOutcome:
    from phasic_mpi.io.store import RunWriter

    t_start = time.time()
    path = None if out is None else os.fspath(out)
    check_output(path, resume, overwrite, comm)
    need = check_feasible(algorithm, density.n_params, comm,
                          algorithm.n_iterations if path is None else output.checkpoint_every,
                          density=density)
    ctx = algorithm.context(density, comm)
    rank0 = comm.rank == 0
    writer = None
    if resume:
        iteration, arrays, rows = _read_checkpoint(algorithm, ctx, path, record)
        state = algorithm.restore(arrays, iteration, ctx)
        stop.defer()
        if rank0:
            writer = RunWriter.reopen(path, rows)
    else:
        state = algorithm.start(ctx, init)
        stop.defer()
        if rank0 and path is not None:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            writer = RunWriter.create(
                path, algorithm=algorithm.name, config=record, seed=algorithm.settings.seed,
                param_names=list(density.param_names), observations=observations,
                overwrite=overwrite, param_shapes=getattr(density, "param_shapes", None),
                attrs={"algorithm_figures": list(getattr(algorithm, "figures", ()))},
            )
    try:
        estimate = seconds_per_iteration(need) if need is not None else math.nan
        return _loop(algorithm, ctx, state, writer, path, output, record, (t_start, estimate),
                     resume, stop_hint, stop)
    except BaseException:
        if writer is not None:  # a --force run that failed before it was worth keeping
            writer.abandon()    # goes; the earlier file stays as it was
        raise
    finally:
        if writer is not None:
            writer.close()


def _read_checkpoint(algorithm: Any, ctx: Any, path: str, record: Mapping) -> tuple:
    """``(iteration, arrays, rows)`` of ``path``'s checkpoint on every rank, verified
    on rank 0 (the config first, then the arrays against the algorithm's layout),
    or the same user error on every rank: exit 2 at any rank count, nothing touched."""
    comm = ctx.comm
    loaded = problem = None
    if comm.rank == 0:
        ckpt = checkpoint_path(path)
        try:
            iteration, arrays, rows, saved = read_checkpoint(
                ckpt, n_iterations=algorithm.n_iterations, run_file=path)
            changed = _config_differences(record, saved)
            if changed:
                raise ConfigError("--resume: the config differs from the checkpoint's in "
                                  + ", ".join(changed))
            check_layout(ckpt, arrays, algorithm.checkpoint_layout(ctx))
            loaded = iteration, arrays, rows
        except ConfigError as exc:  # CheckpointError included
            problem = exc
    problem = comm.bcast(problem, root=0)
    if problem is not None:
        raise problem
    return comm.bcast(loaded, root=0)


def _loop(algorithm, ctx, state, writer, path, output, record, started, resumed, stop_hint,
          stop) -> RunOutcome:
    comm = ctx.comm
    rank0 = comm.rank == 0
    every = output.checkpoint_every if path is not None else 0
    progress = _Progress(output.progress, algorithm.n_iterations, state.iteration,
                         output.log_every, rank0, getattr(algorithm, "iteration_label", "iteration"))
    # an algorithm may carry this rank's stop request inside its step's own collective
    comm.watch_stop(lambda: stop.received or 0)
    try:
        return _iterate(algorithm, ctx, state, writer, path, every, record, started, resumed,
                        stop_hint, stop, progress)
    finally:
        comm.watch_stop(None)
        progress.close()


def _iterate(algorithm, ctx, state, writer, path, every, record, started, resumed, stop_hint,
             stop, progress) -> RunOutcome:
    comm = ctx.comm
    rank0 = comm.rank == 0
    buffer = _Buffer(algorithm.name)
    t_loop = time.time()
    t_agree = 0.0  # time in the per-iteration stop-flag agreement (rank 0)
    signal_name = None
    converged = getattr(algorithm, "converged", lambda state, diag: False)
    carried = getattr(algorithm, "agreed_stop", lambda state: None)  # see the Algorithm protocol
    while state.iteration < algorithm.n_iterations:
        state, diag = algorithm.step(state, ctx)
        done = converged(state, diag)  # the same on every rank (see the Algorithm protocol)
        if rank0:
            buffer.add(_diagnostic_rows(diag))
        if algorithm.history_due(state.iteration) or done:
            rows = algorithm.history(state, ctx)
            if rank0:
                buffer.add(rows)
            state = _drain(algorithm, state, ctx, buffer)
        t0 = time.perf_counter()
        # a signal at the converged iteration: finish the run rather than checkpoint it
        flag = carried(state)  # agreed inside the step's collective, or None: agree here
        if flag is None:
            flag = comm.allreduce_exact([stop.received or 0], "max")[0]
        agreed = int(flag) * (not done)
        t_agree += time.perf_counter() - t0
        due = (every and state.iteration % every == 0 and state.iteration < algorithm.n_iterations
               and not done)
        if (agreed and path is not None) or due:
            state = _drain(algorithm, state, ctx, buffer)  # the checkpoint holds no streamed rows
            arrays = algorithm.checkpoint(state, ctx)
            if rank0:
                buffer.flush_to(writer)
                writer.promote()  # --force: the new file replaces the earlier one from now on
                write_checkpoint(checkpoint_path(path), state.iteration, arrays, writer.rows(),
                                 record, writer.run_id)
            comm.barrier()  # the checkpoint exists before anyone reports or exits
        if rank0 and progress.mode != "none":  # no line to show: no describe() string per iteration
            progress.update(state.iteration, algorithm.describe(diag) + "  converged" * done,
                            force=bool(agreed) or done)
        if agreed:
            signal_name = signal.Signals(agreed).name
            if path is not None:
                if rank0 and stop_hint is not None:
                    print(f"stopped by {signal_name} at {progress.label} {state.iteration}; "
                          f"checkpoint written to {checkpoint_path(path)}; {stop_hint}",
                          file=sys.stderr, flush=True)
                return RunOutcome(path, False, state.iteration, signal_name)
            if rank0:
                print(f"stopped by {signal_name} at {progress.label} {state.iteration}; "
                      "returning the result so far", file=sys.stderr, flush=True)
            break
        if done:
            break
    state = _drain(algorithm, state, ctx, buffer)
    final = _finish(algorithm, state, ctx, buffer, writer)
    attrs = _run_attrs(comm)  # collective gather of host names
    t_start, estimate = started  # estimate: seconds per iteration (feasibility), or NaN
    attrs.update({"wall_time_s": time.time() - t_start, "loop_time_s": time.time() - t_loop,
                  "estimated_seconds_per_iteration": estimate,
                  "stop_check_time_s": t_agree, "resumed": bool(resumed)})
    if rank0 and writer is not None:
        _write_final(writer, algorithm.name, final, attrs, buffer, ctx.density,
                     algorithm.settings.seed)
    for message in (final.warnings if rank0 and final is not None else ()):
        warnings.warn(message, ConvergenceWarning, stacklevel=2)
    comm.barrier()
    if rank0 and writer is not None and signal_name is None:
        writer.mark_complete()  # every rank got here: the run is complete
    if rank0 and path is not None and os.path.exists(checkpoint_path(path)):
        os.unlink(checkpoint_path(path))
    _check_draws(algorithm.name, final, comm, path)
    completed = signal_name is None
    if not rank0:
        return RunOutcome(path, completed, state.iteration, signal_name)
    history = buffer.arrays() if writer is None else None
    return RunOutcome(path, completed, state.iteration, signal_name, final, history, attrs)


def _check_draws(name: str, final: FinalRecord | None, comm: Communicator,
                 path: str | None) -> None:
    """No silent empty success: fail on every rank when no final draw is valid
    (after the run file is written, as the record of what happened), warn on
    rank 0 when some are not (they stay in the posterior; ``n_invalid_final``)."""
    counts = None
    if final is not None:
        total = int(sum(np.size(v) for v in list(final.draws.values())[:1]))
        counts = (total, int(final.diagnostics.get("n_invalid_final", 0)))
    total, invalid = comm.bcast(counts, root=0)
    what = {"svgd": "final particles", "pt": "cold-chain draws"}.get(name, "draws")
    if total and invalid == total:
        where = f"; {path} records them" if path is not None else ""
        raise EmptyResultError(
            f"{name}: all {total} {what} have an invalid likelihood (-inf or NaN), so the "
            f"run holds no posterior{where}; check the model, the data and the priors")
    if invalid and comm.rank == 0:
        warnings.warn(f"{name}: {invalid} of {total} {what} have an invalid likelihood "
                      "(-inf or NaN); they are kept in the posterior and counted in "
                      "n_invalid_final", RuntimeWarning, stacklevel=4)


def _write_final(writer: Any, group: str, final: FinalRecord, attrs: dict, buffer: _Buffer,
                 density: Any, seed: Any) -> None:
    buffer.flush_to(writer)
    writer.write_posterior(final.draws, final.sample_stats,
                           draws_are_independent=final.independent)
    write_model_results(writer, density, final.draws, seed=seed)  # model, log_likelihood, ...
    for name, value in final.arrays.items():
        sub, _, leaf = f"{group}/{name}".rpartition("/")
        writer.write_group(sub, {leaf: value})
    writer.set_attrs(final.diagnostics, group=f"{group}/diagnostics")
    writer.set_attrs(attrs)
    writer.promote()
