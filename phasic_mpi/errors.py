"""Exceptions that the package raises for problems in the user's input."""

from __future__ import annotations

__all__ = ["ConfigError", "ConvergenceWarning", "MPIUnavailableError", "RunInterrupted"]


class ConfigError(ValueError):
    """An invalid configuration; the message starts with the offending key path."""


class RunInterrupted(Exception):
    """A signal stopped a run after it wrote a checkpoint (raised on every rank).

    Continue with ``resume=True`` (``phasic-mpi run --resume``); ``path`` is the
    run file, ``iteration`` the iterations done, ``signal_name`` e.g. ``SIGTERM``.
    """

    def __init__(self, path: str, iteration: int, signal_name: str) -> None:
        super().__init__(f"stopped by {signal_name} at iteration {iteration}; checkpoint "
                         f"written next to {path}; continue with resume=True")
        self.path, self.iteration, self.signal_name = path, iteration, signal_name


class MPIUnavailableError(RuntimeError):
    """Several MPI ranks were launched, but no MPI library could be loaded."""


class ConvergenceWarning(RuntimeWarning):
    """A run ended without meeting its convergence check, or with particles stuck
    in a separate mode (said on rank 0 at the end of the run)."""
