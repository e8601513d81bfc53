"""Exceptions that the package raises for problems in the user's input."""

from __future__ import annotations

__all__ = ["ConfigError", "EmptyResultError", "InfeasibleError", "MPIUnavailableError",
           "RunInterrupted"]


class ConfigError(ValueError):
    """An invalid configuration; the message starts with the offending key path."""


class InfeasibleError(ConfigError):
    """Requested sizes that cannot run here (memory or time), refused before any work."""


class EmptyResultError(ConfigError):
    """A run ended with no valid draw: every final particle or cold-chain draw has an
    invalid likelihood (raised on every rank, after the run file is written)."""


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
