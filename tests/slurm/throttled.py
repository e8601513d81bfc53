"""A slowed-down copy of a config's posterior, for the Slurm time-limit test.

``[model] density = "throttled.py:throttled"`` with
``options = { config = "examples/rabbits.toml", delay_s = 0.1 }`` is the
posterior of that config (the same model, data, priors and transforms, so
the same bits) whose every evaluation first sleeps ``delay_s`` seconds.

Why: tests/slurm/run.sh needs an SVGD run that is still running when Slurm's
time-limit signal arrives, whatever the speed of the machine and whatever
else runs on it. Sleeping makes a run of N iterations last at least
N * delay_s seconds on any machine, and it costs no CPU, so the uninterrupted
reference run can go on at the same time.
"""

from __future__ import annotations

import os
import time
from typing import Any

from phasic_mpi.config import load_config
from phasic_mpi.config.loaders import build_density


class Throttled:
    """``inner`` (a LogDensity) with a sleep before each ``evaluate``."""

    def __init__(self, inner: Any, delay_s: float) -> None:
        self._inner = inner
        self._delay_s = float(delay_s)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def evaluate(self, z: Any, rows: Any = None) -> Any:
        time.sleep(self._delay_s)
        return self._inner.evaluate(z, rows)


def throttled(config: str, delay_s: float = 0.1) -> Throttled:
    """The posterior of the phase-type model in ``config``, slowed down."""
    cfg = load_config(config)
    density, _ = build_density(cfg, os.path.dirname(os.path.abspath(config)))
    return Throttled(density, delay_s)
