"""The package's exceptions: problems with the user's input versus bugs.

* :class:`UserError` -- the input is wrong (a config key, a data file, a run
  file, a command-line flag). The message starts with what is wrong (the key
  path, flag or file) and says what was expected; ``phasic-mpi`` prints it as
  one line, ``phasic-mpi: error: <message>``, and exits with status 2.
* :class:`InternalError` -- something that should not happen whatever the
  input; ``phasic-mpi`` prints the traceback and exits with status 1 (any
  exception that is not a :class:`UserError` is treated the same way).

Under MPI a :class:`UserError` must be raised on every rank alike (validate
on every rank, or decide on rank 0 and broadcast the verdict, as the driver
does): then every rank knows it is a user error and the job ends with status
2 and one message, without ``MPI_Abort``.
"""

from __future__ import annotations

__all__ = ["ConfigError", "ConvergenceWarning", "EmptyResultError", "InfeasibleError",
           "InternalError", "MPIUnavailableError", "PhasicError", "RunFileError", "RunFileWriteError",
           "RunInterrupted", "UserError"]


class PhasicError(Exception):
    """Base class of the exceptions raised by phasic_mpi."""


class UserError(PhasicError, ValueError):
    """A problem with the user's input; the message starts with the key, flag or file."""


class ConfigError(UserError):
    """An invalid configuration; the message starts with the offending key path."""


class InfeasibleError(ConfigError):
    """Requested sizes that cannot run here (memory or time), refused before any work."""


class EmptyResultError(ConfigError):
    """A run ended with no valid draw: every final particle or cold-chain draw has an
    invalid likelihood (raised on every rank, after the run file is written)."""


class RunInterrupted(PhasicError):
    """A signal stopped a run after it wrote a checkpoint (raised on every rank).

    Continue with ``resume=True`` (``phasic-mpi run --resume``); ``path`` is the
    run file, ``iteration`` the iterations done, ``signal_name`` e.g. ``SIGTERM``.
    """

    def __init__(self, path: str, iteration: int, signal_name: str) -> None:
        super().__init__(f"stopped by {signal_name} at iteration {iteration}; checkpoint "
                         f"written next to {path}; continue with resume=True")
        self.path, self.iteration, self.signal_name = path, iteration, signal_name


class MPIUnavailableError(UserError, RuntimeError):
    """Several MPI ranks were launched, but no MPI library could be loaded."""


class RunFileError(UserError):
    """A file that cannot be read as a phasic_mpi run file (the message names it and why).

    Raised by the readers (:func:`phasic_mpi.io.runfile.read_run`,
    :class:`~phasic_mpi.io.runfile.RunFile`, ``summary``): not a run file, a
    stored model, term or parameter layout that is not valid. It is also a
    :class:`ValueError` (every user error is), as the readers' errors were before.
    """


class RunFileWriteError(PhasicError, OSError):
    """Writing a run file failed (a full disk, an I/O error); the message says what was kept.

    Not a user error: the environment failed, on the writing rank alone, so
    the command line ends the job at once with status 1 and one line
    instead of waiting for the other ranks to agree. It is an
    :class:`OSError`, as write failures always were.
    """


class InternalError(PhasicError, RuntimeError):
    """A broken invariant: a bug in phasic_mpi, never the user's input."""


class ConvergenceWarning(RuntimeWarning):
    """A run ended without meeting its convergence check, or with particles stuck
    in a separate mode (said on rank 0 at the end of the run)."""
