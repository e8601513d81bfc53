"""Settings of the run loop: the ``[output]`` config section."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from phasic_mpi.settings import check_settings, choice, fail, from_mapping, integer, number, setting

__all__ = ["OutputSettings"]


def _optional_path(value: Any, path: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        fail(path, f"expected a non-empty string, got {value!r}")
    return value


@dataclass(frozen=True)
class OutputSettings:
    """Where and how often a run reports: checkpoints, progress, the run file."""

    section: ClassVar[str] = "output"

    path: str | None = setting(_optional_path, None,
                               "run file (HDF5); default <config name>.h5 (the API: no file)",
                               what="string")
    checkpoint_every: int = setting(integer(0), 100,
                                    "iterations between checkpoints (0: end only)")
    progress: str = setting(choice("auto", "bar", "log", "none"), "auto", "progress display")
    log_every: float = setting(number(positive=True), 10.0, "seconds between progress log lines")

    def __post_init__(self) -> None:
        check_settings(self)

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> "OutputSettings":
        """From a config table (unknown keys are errors)."""
        return from_mapping(cls, section)
