"""The ``phasic-mpi`` command: ``run``, ``simulate``, ``summary``, ``study``,
``study-report``, ``plot``, ``jobscript``, ``models``.

Importing this module does not import mpi4py; only ``run`` does (through the
driver). :func:`main` reports every error in one place: a
:class:`~phasic_mpi.errors.UserError` (a config, data or file problem) as one
line ``phasic-mpi: error: ...`` and status 2 (rank 0 only under MPI, where
every rank raises it alike); any other exception with its traceback and
status 1, and under MPI with more than one rank with each line prefixed by
the rank and ``MPI.COMM_WORLD.Abort(1)``, instead of leaving the other ranks
hanging.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any

from phasic_mpi.errors import ConfigError, UserError
from phasic_mpi.run.launch import RankExit, abort_on_failure

__all__ = ["main"]

PROG = "phasic-mpi"
EXIT_ERROR = 1
EXIT_CONFIG = 2  # user errors; also argparse's status for usage errors
EXIT_PIPE = 128 + 13  # SIGPIPE's status: what `yes | head` reports for `yes`


# ----------------------------------------------------------------- commands
@abort_on_failure()  # SystemExit, os._exit, any failure on one rank ends the job non-zero
def _cmd_run(args: argparse.Namespace) -> int:
    from phasic_mpi.config import load_config

    cfg = load_config(args.config)  # config errors before MPI starts
    launch = importlib.import_module("phasic_mpi.run.launch")
    launch.check_launch()
    driver = importlib.import_module("phasic_mpi.run.driver")
    out = os.path.abspath(args.out) if args.out is not None else None
    loaders = importlib.import_module("phasic_mpi.config.loaders")
    result = driver.run(cfg, build=loaders.build_density, out=out, resume=args.resume, overwrite=args.force)
    if not result.completed:  # stopped by a signal after a checkpoint: resumable
        return 128 + int(getattr(signal, result.signal_name, signal.SIGTERM))
    return 0


def _parse_theta(text: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise ConfigError(f"--theta: expected comma-separated numbers, got {text!r}") from None


def _cmd_simulate(args: argparse.Namespace) -> int:
    from phasic_mpi.config import load_config, validate_config
    from phasic_mpi.config.loaders import load_data, load_model
    from phasic_mpi.io.datafile import write_data

    flags = {"--model": args.model, "--options": args.options, "--theta": args.theta,
             "--n": args.n}
    if args.config is not None:
        given = [flag for flag, value in flags.items() if value is not None]
        if given or args.seed is not None:
            raise ConfigError(f"simulate: give either CONFIG or {', '.join(flags)}; "
                              f"got both CONFIG and {', '.join(given) or '--seed'}")
        cfg = load_config(args.config, require_algorithm=False)
        if "density" in cfg["model"]:
            raise ConfigError("model.density: 'phasic-mpi simulate' needs a phase-type "
                              "model (model.name); a log-density has no data to simulate")
        if "simulate" not in cfg["data"]:
            raise ConfigError("data.simulate: required by 'phasic-mpi simulate CONFIG' "
                              "(the config reads its data from a file)")
    else:
        missing = [flag for flag in ("--model", "--theta", "--n") if flags[flag] is None]
        if missing:
            raise ConfigError(f"simulate: without CONFIG, {', '.join(missing)} "
                              "required")
        try:
            options = json.loads(args.options) if args.options else {}
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--options: invalid JSON: {exc}") from None
        raw = {"model": {"name": args.model, "options": options},
               "data": {"simulate": {"theta": _parse_theta(args.theta), "n": args.n,
                                     "seed": 0 if args.seed is None else args.seed}}}
        try:
            cfg = validate_config(raw, os.getcwd(), require_algorithm=False)
        except ConfigError as exc:  # name the flag rather than the key
            message = str(exc)
            for key, flag in (("model.options", "--options"), ("model.name", "--model"),
                              ("data.simulate.theta", "--theta"),
                              ("data.simulate.n", "--n"), ("data.simulate.seed", "--seed")):
                if message.startswith(key):
                    message = flag + message[len(key):]
                    break
            raise ConfigError(message) from None
    graph = load_model(cfg["model"])
    obs = load_data(cfg["data"], graph)
    sim = cfg["data"]["simulate"]
    if sim.get("censoring"):  # load_data censored them already
        if any(v is not None for v in (args.censor_at, args.censor_exponential,
                                       args.censor_uniform)):
            raise ConfigError("data.simulate.censoring: give censoring in the config or by "
                              "--censor-*, not both")
        censoring = ", ".join(f"{k} {v!r}" for k, v in sim["censoring"].items() if v is not None)
    else:
        obs, censoring = _censored(args, obs, sim["seed"], graph.discrete)
    comment = (f"simulated by {PROG}: model {cfg['model']['name']} "
               f"options {json.dumps(cfg['model']['options'])}\n"
               f"theta {dict(zip(graph.param_names, sim['theta']))} n {sim['n']} "
               f"seed {sim['seed']}" + (f"\ncensoring {censoring}" if censoring else ""))
    write_data(args.out, obs, comment=comment)
    n_censored = obs.right_censored.size
    print(f"wrote {obs.n_observations} times"
          + (f" ({n_censored} right-censored)" if censoring else "") + f" to {args.out}")
    return 0


def _censored(args: argparse.Namespace, obs: Any, seed: int, discrete: bool) -> tuple[Any, str]:
    """``obs`` censored as ``--censor-*`` say, and a description ('' if not censored)."""
    from phasic_mpi.model.simulate import censor

    random = [(kind, value) for kind, value in (("exponential", args.censor_exponential),
                                                ("uniform", args.censor_uniform))
              if value is not None]
    if len(random) > 1:
        raise ConfigError("--censor-exponential, --censor-uniform: give one random "
                          "censoring scheme, not both")
    if args.censor_at is None and not random:
        return obs, ""
    try:
        censored = censor(obs.exact, tau=args.censor_at, random=random[0] if random else None,
                          seed=seed, integer=discrete)
    except ValueError as exc:
        flag = "--censor-at" if str(exc).startswith("tau") else f"--censor-{random[0][0]}"
        raise ConfigError(f"{flag}: {exc}") from None
    parts = ([f"fixed at {args.censor_at!r}"] if args.censor_at is not None else []) + \
        [f"{kind} {value!r}" for kind, value in random]
    return censored, " and ".join(parts)


def _cmd_summary(args: argparse.Namespace) -> int:
    summary = importlib.import_module("phasic_mpi.analysis.summary")
    results = [summary.summarize(path, group=not args.all) for path in args.run]
    print("\n".join(summary.format_summary(s) for s in results))
    if len(results) > 1:
        print(summary.format_comparison(results))
    return 0


def _cmd_jobscript(args: argparse.Namespace) -> int:
    jobscript = importlib.import_module("phasic_mpi.slurm.jobscript")
    return jobscript.main(args)


def _cmd_plot(args: argparse.Namespace) -> int:
    plotting = importlib.import_module("phasic_mpi.plotting")
    return plotting.main(args)


def _cmd_study(args: argparse.Namespace) -> int:
    study = importlib.import_module("phasic_mpi.study.runner")
    return study.main(args)


def _cmd_study_report(args: argparse.Namespace) -> int:
    """``phasic-mpi study-report STUDY.h5 [--out DIR]``."""
    report = importlib.import_module("phasic_mpi.analysis.studyreport")
    try:
        sf = report.read_study(args.study)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{args.study}: cannot read as a study file ({exc})") from None
    print(report.format_report(sf), end="")
    if args.out is not None:
        plotting = importlib.import_module("phasic_mpi.plotting.study")
        for path in plotting.plot_study(args.study, args.out):
            print(f"wrote {path}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from phasic_mpi.config.loaders import builtin_models

    rows = [("name", "options", "parameters", "description")]
    rows += [(m["name"], ", ".join(m["options"]) or "-", ", ".join(m["parameters"]),
              m["description"]) for m in builtin_models()]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[3])
    return 0


# ------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``phasic-mpi``."""
    # long: one flat declaration per subcommand and flag reads better than helpers
    from phasic_mpi.version import __version__

    parser = argparse.ArgumentParser(
        prog=PROG, description="Bayesian inference for phase-type models with MPI.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of user errors too")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the inference described by a TOML config",
                       description="Run the inference described by CONFIG "
                                   "(launch under mpiexec/srun for several ranks).")
    p.add_argument("config", metavar="CONFIG.toml")
    p.add_argument("--out", metavar="PATH", help="run file (overrides output.path)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the run file's last checkpoint")
    p.add_argument("--force", action="store_true", help="replace an existing run file")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "simulate", help="simulate absorption times and write them to a file",
        description="Simulate absorption times, from CONFIG's [model] and "
                    "[data].simulate or from --model/--theta/--n, optionally "
                    "right-censored (--censor-*), and write them to --out (.csv, "
                    ".txt or .npy).")
    p.add_argument("config", metavar="CONFIG.toml", nargs="?")
    p.add_argument("--model", metavar="NAME", help="built-in, module:function or "
                                                  "file.py:function")
    p.add_argument("--options", metavar="JSON", help='factory options, e.g. \'{"n": 2}\'')
    p.add_argument("--theta", metavar="X,Y,...", help="parameter values, comma-separated")
    p.add_argument("--n", type=int, metavar="N", help="number of observations")
    p.add_argument("--seed", type=int, metavar="S", help="seed (default 0)")
    p.add_argument("--censor-at", type=float, metavar="TAU",
                   help="right-censor at the fixed time TAU (the end of observation)")
    p.add_argument("--censor-exponential", type=float, metavar="RATE",
                   help="right-censor at random times ~ Exponential(RATE)")
    p.add_argument("--censor-uniform", type=float, metavar="MAX",
                   help="right-censor at random times ~ Uniform(0, MAX)")
    p.add_argument("--out", metavar="PATH", required=True, help="output file")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("summary", help="print the posterior summary of run files",
                       description="Print the posterior table and diagnostics of each "
                                   "RUN.h5; with several files, also a table of their "
                                   "posterior means and sds side by side.")
    p.add_argument("run", metavar="RUN.h5", nargs="+")
    p.add_argument("--all", action="store_true",
                   help="one row per parameter, also in families of many (e.g. weights)")
    p.set_defaults(func=_cmd_summary)

    p = sub.add_parser(
        "jobscript", help="write a SLURM batch script for `run` or `study`",
        description="Write an sbatch script that runs CONFIG under srun, checkpoints "
                    "before the time limit, requeues itself and resumes "
                    "(see docs/slurm.md).")
    p.add_argument("--profile", default="debug",
                   choices=["debug", "small", "medium", "large", "production"],
                   help="nodes, tasks per node, time and memory (default debug)")
    p.add_argument("--cluster", metavar="CLUSTER.toml",
                   help="partition, account, modules, mpi plugin, ... (override the profile)")
    p.add_argument("--config", metavar="CONFIG.toml", help="the run (or study) config")
    p.add_argument("--algorithm", metavar="KIND",
                   help="a registered algorithm (svgd, pt, map, ...: must match CONFIG), "
                        "array (one seed per array task) or study (CONFIG is a study "
                        "file); default: CONFIG's algorithm")
    p.add_argument("--run-out", metavar="PATH", help="the run file the job writes")
    p.add_argument("--out", metavar="PATH", help="write the script here (default stdout)")
    p.set_defaults(func=_cmd_jobscript)

    p = sub.add_parser(
        "study", help="run a grid of inferences (a study) as one MPI job",
        description="Run every cell of STUDY.toml (a base config, a grid of config "
                    "values and replicate seeds) as a task farm over groups of ranks; "
                    "each finished cell is written to the study file at once, and "
                    "running the command again skips the finished cells.")
    p.add_argument("study", metavar="STUDY.toml")
    p.add_argument("--out", metavar="PATH", help="study file (overrides study.path)")
    p.add_argument("--force", action="store_true",
                   help="start again: replace an existing study file")
    p.add_argument("--retry-failed", action="store_true",
                   help="run the cells recorded as failed again")
    p.set_defaults(func=_cmd_study)

    p = sub.add_parser(
        "study-report", help="tables and figures of a study file",
        description="Print per-factor tables (bias, RMSE, coverage, time) and the "
                    "calibration of STUDY.h5; with --out, also write its figures.")
    p.add_argument("study", metavar="STUDY.h5")
    p.add_argument("--out", metavar="DIR", help="write the figures (PNG) here")
    p.set_defaults(func=_cmd_study_report)

    p = sub.add_parser(
        "plot", help="figures (PNG) of run or study files",
        description="Write the figures of each RUN.h5 (or STUDY.h5) as PNG files; "
                    "reads only the file and needs neither MPI nor a display.")
    p.add_argument("files", metavar="FILE.h5", nargs="+")
    p.add_argument("--out", metavar="DIR",
                   help="output directory (default: FILE's name without .h5, + '_plots')")
    p.add_argument("--dpi", type=int, default=110, help="resolution (default 110)")
    p.set_defaults(func=_cmd_plot)

    p = sub.add_parser("models", help="list the built-in models",
                       description="List the built-in models.")
    p.set_defaults(func=_cmd_models)
    return parser


# --------------------------------------------------------- error handling
def _mpi_world() -> Any:
    """COMM_WORLD if mpi4py is already imported, initialised and has > 1 rank."""
    MPI = sys.modules.get("mpi4py.MPI")
    try:
        if (MPI is not None and MPI.Is_initialized() and not MPI.Is_finalized()
                and MPI.COMM_WORLD.Get_size() > 1):
            return MPI.COMM_WORLD
    except Exception:  # noqa: BLE001, S110 - a broken MPI must not hide the original error
        pass
    return None


# Rank variables of the launchers (Hydra, Open MPI, PMIx, srun): set before MPI starts.
_RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID")


def _launcher_rank() -> int:
    """This process's rank as the launcher says (0 when not launched as one of many)."""
    for name in _RANK_VARIABLES:
        try:
            return int(os.environ[name])
        except (KeyError, ValueError):
            continue
    return 0


# How long a rank with a user error waits for the other ranks to reach the same
# verdict before it concludes that the error is not shared and aborts the job.
AGREE_TIMEOUT_S = 10.0


def _all_ranks_agree(comm: Any, timeout: float = AGREE_TIMEOUT_S) -> bool:
    """True once every rank has entered this function (a barrier with a timeout).

    User errors are raised on every rank alike (see phasic_mpi.errors), so the
    barrier completes at once. It runs on COMM_WORLD, which carries no other
    traffic: the driver and the study runner work on duplicates of it.
    """
    try:
        request = comm.Ibarrier()
        deadline = time.monotonic() + timeout
        while not request.Test():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True
    except Exception:  # noqa: BLE001 - an MPI that cannot agree: abort as before
        return False


def _abort(comm: Any, text: str, code: int) -> int:
    """Print ``text`` with a rank prefix on every line and abort every rank."""
    rank = comm.Get_rank()
    sys.stderr.write("".join(f"[rank {rank}] {line}\n"
                             for line in text.rstrip("\n").split("\n")))
    sys.stderr.flush()
    # Abort tears the launcher's I/O forwarding down with the job: give it a
    # moment to pass the message on (once lost on a loaded machine).
    time.sleep(0.3)
    comm.Abort(code)
    return code  # pragma: no cover (Abort does not return)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so that the flush at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout without a file descriptor (e.g. captured)
        pass


def _report(exc: BaseException, debug: bool = False) -> int:
    """Print ``exc`` to stderr and return the exit status.

    A :class:`UserError` is one line (rank 0 only under MPI), status 2; with
    ``debug`` its traceback too. A closed stdout (``summary ... | head``) is
    not an error worth a message. Anything else prints its traceback, status
    1; under MPI with several ranks it aborts the job, since the other ranks
    may wait for this one forever.
    """
    if isinstance(exc, BrokenPipeError):
        _quiet_stdout()
        return EXIT_PIPE
    if isinstance(exc, KeyboardInterrupt):
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    comm = _mpi_world()
    trace = "".join(traceback.format_exception(exc))
    if isinstance(exc, UserError):  # MPIUnavailableError included: a setup problem
        text = (trace if debug else "") + f"{PROG}: error: {exc}\n"
        if comm is None:  # before MPI starts: every rank validates alike, rank 0 reports
            if _launcher_rank() == 0:
                sys.stderr.write(text)
            return EXIT_CONFIG
        if not _all_ranks_agree(comm):
            return _abort(comm, text, EXIT_CONFIG)
        if comm.Get_rank() == 0:
            sys.stderr.write(text)
            sys.stderr.flush()
        return EXIT_CONFIG
    if comm is not None:
        return _abort(comm, trace, EXIT_ERROR)
    if isinstance(exc, (OSError, RankExit)):  # a full disk, sys.exit in a model: one line
        sys.stderr.write((trace if debug else "") + f"{PROG}: error: {exc}\n")
        return EXIT_ERROR
    sys.stderr.write(trace)
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``phasic-mpi``; returns the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success; 2 for user errors (configuration, data, files, usage),
        printed as one line ``phasic-mpi: error: <key or file>: <what>`` (on
        rank 0 only under MPI; ``--debug`` adds the traceback); 1 for other
        errors, with their traceback (under MPI with several ranks they abort
        the job instead); 141 if stdout was closed early (``| head``).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv  # anywhere on the line, and known even if parsing fails
    try:
        args = build_parser().parse_args([a for a in argv if a != "--debug"])
        status = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return status
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else EXIT_CONFIG)
    except BaseException as exc:  # noqa: BLE001 - the one place that reports errors
        return _report(exc, debug)


if __name__ == "__main__":  # python -m phasic_mpi.cli
    sys.exit(main())
