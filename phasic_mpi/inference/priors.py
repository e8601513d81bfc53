"""Priors on the parameters θ, with values, gradients and draws.

Inference runs in unconstrained space (see :mod:`phasic_mpi.inference.transforms`).
Priors carry their full normalising constants because the log evidence
depends on them.

Conventions (all vectorised over any array shape):

* ``logpdf`` agrees with :mod:`scipy.stats` wherever θ is in the closed
  support (endpoints included, e.g. ``Exponential.logpdf(0) = log rate``;
  ``Gamma`` with ``shape < 1`` is ``+inf`` at 0, as in scipy). Outside it,
  and for NaN or infinite θ, ``logpdf`` is ``-inf``.
* ``grad`` is ``d logpdf / dθ`` where ``logpdf`` is finite and 0 elsewhere.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import numpy as np
from scipy.special import xlogy

__all__ = [
    "DEFAULT_PRIOR", "Exponential", "Gamma", "HalfNormal", "LogNormal", "Normal", "PositivePrior",
    "Prior", "Uniform", "make_prior",
]

# The prior of a parameter nobody gave one for (config and Python API alike).
DEFAULT_PRIOR = {"dist": "lognormal", "mu": 0.0, "sigma": 1.0}

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
INF = math.inf


def _as_float(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _fmt(x: float) -> str:
    return "inf" if x == INF else "-inf" if x == -INF else f"{x:g}"


def _interval(lo_hi: tuple[float, float]) -> str:
    return f"({_fmt(lo_hi[0])}, {_fmt(lo_hi[1])})"


# ----------------------------------------------------------------------- priors
class Prior(abc.ABC):
    """Base class of the priors: a univariate density on θ with its gradient."""

    name: ClassVar[str]

    def __post_init__(self) -> None:
        # store plain floats; a bad value is a config error, hence ValueError
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise ValueError(f"{f.name} must be a number, got {value!r}")  # noqa: TRY004
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"{f.name} must be finite, got {value}")
            object.__setattr__(self, f.name, value)
        self._check()

    def _check(self) -> None:
        for f in fields(self):
            if f.name in ("sigma", "shape", "rate") and getattr(self, f.name) <= 0:
                raise ValueError(f"{f.name} must be > 0, got {getattr(self, f.name)}")

    @property
    @abc.abstractmethod
    def support(self) -> tuple[float, float]:
        """Endpoints ``(low, high)`` of the support (may be infinite)."""

    @property
    @abc.abstractmethod
    def mean(self) -> float:
        """Mean of θ."""

    @property
    @abc.abstractmethod
    def var(self) -> float:
        """Variance of θ."""

    @abc.abstractmethod
    def _logpdf(self, x: np.ndarray) -> np.ndarray:
        """Closed form, called only with finite x in the closed support."""

    @abc.abstractmethod
    def _grad(self, x: np.ndarray) -> np.ndarray:
        """Closed-form d logpdf / dθ (same domain as :meth:`_logpdf`)."""

    @abc.abstractmethod
    def _sample(self, rng: np.random.Generator, size: Any) -> np.ndarray: ...

    def _inside(self, x: np.ndarray) -> np.ndarray:
        low, high = self.support
        return np.isfinite(x) & (x >= low) & (x <= high)

    def _interior(self) -> float:
        """A point inside the support, fed to the closed forms in place of bad input."""
        low, high = self.support
        if math.isfinite(low) and math.isfinite(high):
            return 0.5 * (low + high)
        return low + 1.0 if math.isfinite(low) else 0.0

    def logpdf(self, theta: Any) -> np.ndarray:
        """Log density at ``theta`` (any shape); ``-inf`` outside the support."""
        x = _as_float(theta)
        inside = self._inside(x)
        safe = np.where(inside, x, self._interior())  # no warnings from bad input
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            value = self._logpdf(safe)
        # NaN only at an endpoint where the density vanishes (lognormal at 0)
        return np.where(inside & ~np.isnan(value), value, -INF)

    def grad(self, theta: Any) -> np.ndarray:
        """``d logpdf / dθ`` at ``theta``; 0 where ``logpdf`` is not finite."""
        x = _as_float(theta)
        ok = np.isfinite(self.logpdf(x))
        safe = np.where(ok, x, self._interior())
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.where(ok, self._grad(safe), 0.0)

    def sample(self, rng: np.random.Generator, size: Any = None) -> np.ndarray:
        """Independent draws of θ with ``rng`` (a :class:`numpy.random.Generator`)."""
        return np.asarray(self._sample(rng, size), dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """Spec accepted by :func:`make_prior`, e.g. ``{"dist": "gamma", ...}``."""
        return {"dist": self.name, **asdict(self)}

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v:g}" for k, v in asdict(self).items())
        return f"{self.name}({args})"


class PositivePrior(Prior):
    """A prior on ``(0, inf)`` that also gives the density of ``z = log θ``.

    ``logpdf_log(z) = logpdf(e^z) + z`` in closed form, accurate for any finite
    z (no ``e^z`` underflow to θ = 0, no ``log(0)``); used for the Log transform.
    """

    @property
    def support(self) -> tuple[float, float]:
        return (0.0, INF)

    @abc.abstractmethod
    def _logpdf_log(self, z: np.ndarray) -> np.ndarray: ...

    @abc.abstractmethod
    def _grad_log(self, z: np.ndarray) -> np.ndarray: ...

    def logpdf_log(self, z: Any) -> np.ndarray:
        """Log density of ``z = log θ`` (Jacobian included)."""
        z = _as_float(z)
        with np.errstate(over="ignore", invalid="ignore"):
            value = self._logpdf_log(z)
        return np.where(np.isnan(value), -INF, value)

    def grad_log(self, z: Any) -> np.ndarray:
        """``d logpdf_log / dz``; 0 where ``logpdf_log`` is not finite."""
        z = _as_float(z)
        with np.errstate(over="ignore", invalid="ignore"):
            g = self._grad_log(z)
        return np.where(np.isfinite(self.logpdf_log(z)) & np.isfinite(g), g, 0.0)


def _normal_logpdf(x: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    return -0.5 * ((x - mu) / sigma) ** 2 - math.log(sigma) - _HALF_LOG_2PI


@dataclass(frozen=True)
class Normal(Prior):
    """Normal(mu, sigma) on the real line."""

    mu: float
    sigma: float
    name: ClassVar[str] = "normal"

    support = property(lambda self: (-INF, INF))
    mean = property(lambda self: self.mu)
    var = property(lambda self: self.sigma ** 2)

    def _logpdf(self, x: np.ndarray) -> np.ndarray:
        return _normal_logpdf(x, self.mu, self.sigma)

    def _grad(self, x: np.ndarray) -> np.ndarray:
        return -(x - self.mu) / self.sigma ** 2

    def _sample(self, rng: np.random.Generator, size: Any) -> np.ndarray:
        return rng.normal(self.mu, self.sigma, size)


@dataclass(frozen=True)
class LogNormal(PositivePrior):
    """θ with ``log θ ~ Normal(mu, sigma)``."""

    mu: float
    sigma: float
    name: ClassVar[str] = "lognormal"

    @property
    def mean(self) -> float:
        with np.errstate(over="ignore"):  # inf if it overflows
            return float(np.exp(self.mu + self.sigma ** 2 / 2))

    @property
    def var(self) -> float:
        with np.errstate(over="ignore"):
            return float(np.expm1(self.sigma ** 2) * np.exp(2 * self.mu + self.sigma ** 2))

    def _logpdf(self, x: np.ndarray) -> np.ndarray:
        return _normal_logpdf(np.log(x), self.mu, self.sigma) - np.log(x)

    def _grad(self, x: np.ndarray) -> np.ndarray:
        return -(1.0 + (np.log(x) - self.mu) / self.sigma ** 2) / x

    def _logpdf_log(self, z: np.ndarray) -> np.ndarray:
        return _normal_logpdf(z, self.mu, self.sigma)

    def _grad_log(self, z: np.ndarray) -> np.ndarray:
        return -(z - self.mu) / self.sigma ** 2

    def _sample(self, rng: np.random.Generator, size: Any) -> np.ndarray:
        return rng.lognormal(self.mu, self.sigma, size)


@dataclass(frozen=True)
class Gamma(PositivePrior):
    """Gamma with ``shape`` and ``rate`` (density ∝ θ^(shape-1) e^(-rate θ))."""

    shape: float
    rate: float
    name: ClassVar[str] = "gamma"

    mean = property(lambda self: self.shape / self.rate)
    var = property(lambda self: self.shape / self.rate ** 2)

    def _log_norm(self) -> float:
        return self.shape * math.log(self.rate) - math.lgamma(self.shape)

    def _logpdf(self, x: np.ndarray) -> np.ndarray:
        return self._log_norm() + xlogy(self.shape - 1, x) - self.rate * x

    def _grad(self, x: np.ndarray) -> np.ndarray:
        return (self.shape - 1) / x - self.rate if self.shape != 1 else 0 * x - self.rate

    def _logpdf_log(self, z: np.ndarray) -> np.ndarray:
        return self._log_norm() + self.shape * z - np.exp(z + math.log(self.rate))

    def _grad_log(self, z: np.ndarray) -> np.ndarray:
        return self.shape - np.exp(z + math.log(self.rate))

    def _sample(self, rng: np.random.Generator, size: Any) -> np.ndarray:
        return rng.gamma(self.shape, 1.0 / self.rate, size)


@dataclass(frozen=True)
class Exponential(PositivePrior):
    """Exponential with ``rate`` (mean ``1 / rate``)."""

    rate: float
    name: ClassVar[str] = "exponential"

    mean = property(lambda self: 1.0 / self.rate)
    var = property(lambda self: 1.0 / self.rate ** 2)

    def _logpdf(self, x: np.ndarray) -> np.ndarray:
        return math.log(self.rate) - self.rate * x

    def _grad(self, x: np.ndarray) -> np.ndarray:
        return np.full_like(x, -self.rate)

    def _logpdf_log(self, z: np.ndarray) -> np.ndarray:
        return math.log(self.rate) + z - np.exp(z + math.log(self.rate))

    def _grad_log(self, z: np.ndarray) -> np.ndarray:
        return 1.0 - np.exp(z + math.log(self.rate))

    def _sample(self, rng: np.random.Generator, size: Any) -> np.ndarray:
        return rng.exponential(1.0 / self.rate, size)


@dataclass(frozen=True)
class HalfNormal(PositivePrior):
    """|X| for ``X ~ Normal(0, sigma)``."""

    sigma: float
    name: ClassVar[str] = "halfnormal"

    mean = property(lambda self: self.sigma * math.sqrt(2 / math.pi))
    var = property(lambda self: self.sigma ** 2 * (1 - 2 / math.pi))

    def _logpdf(self, x: np.ndarray) -> np.ndarray:
        return math.log(2.0) + _normal_logpdf(x, 0.0, self.sigma)

    def _grad(self, x: np.ndarray) -> np.ndarray:
        return -x / self.sigma ** 2

    def _logpdf_log(self, z: np.ndarray) -> np.ndarray:
        # e^(2z) / sigma^2 written as one exp so it overflows only when the density is 0
        return (math.log(2.0) - math.log(self.sigma) - _HALF_LOG_2PI + z
                - 0.5 * np.exp(2 * (z - math.log(self.sigma))))

    def _grad_log(self, z: np.ndarray) -> np.ndarray:
        return 1.0 - np.exp(2 * (z - math.log(self.sigma)))

    def _sample(self, rng: np.random.Generator, size: Any) -> np.ndarray:
        return np.abs(rng.normal(0.0, self.sigma, size))


@dataclass(frozen=True)
class Uniform(Prior):
    """Uniform on ``[low, high]`` (finite, ``low < high``)."""

    low: float
    high: float
    name: ClassVar[str] = "uniform"

    support = property(lambda self: (self.low, self.high))
    mean = property(lambda self: 0.5 * (self.low + self.high))
    var = property(lambda self: (self.high - self.low) ** 2 / 12)

    def _check(self) -> None:
        if not self.low < self.high:
            raise ValueError(f"need low < high, got low={self.low}, high={self.high}")

    def _logpdf(self, x: np.ndarray) -> np.ndarray:
        return np.full_like(x, -math.log(self.high - self.low))

    def _grad(self, x: np.ndarray) -> np.ndarray:
        return np.zeros_like(x)

    def _sample(self, rng: np.random.Generator, size: Any) -> np.ndarray:
        return rng.uniform(self.low, self.high, size)


# canonical name -> (class, required keys); "rate" may be given as "scale" instead
_DISTS: dict[str, tuple[type[Prior], tuple[str, ...]]] = {
    "normal": (Normal, ("mu", "sigma")),
    "lognormal": (LogNormal, ("mu", "sigma")),
    "gamma": (Gamma, ("shape", "rate")),
    "exponential": (Exponential, ("rate",)),
    "halfnormal": (HalfNormal, ("sigma",)),
    "uniform": (Uniform, ("low", "high")),
}
_ALIASES = {"gaussian": "normal", "halfgaussian": "halfnormal"}


def _canonical(dist: str) -> str:
    key = dist.lower().replace("-", "").replace("_", "").replace(" ", "")
    return _ALIASES.get(key, key)


def make_prior(spec: Mapping[str, Any] | Prior, where: str = "prior") -> Prior:
    """Build a prior from a spec such as ``{"dist": "lognormal", "mu": 0, "sigma": 1}``.

    Parameters
    ----------
    spec : mapping or Prior
        ``dist`` plus the distribution's parameters (a :class:`Prior` is
        returned unchanged):

        ========================  ==========================================
        ``normal``                ``mu``, ``sigma``
        ``lognormal``             ``mu``, ``sigma`` (of ``log θ``)
        ``gamma``                 ``shape`` and ``rate`` (or ``scale = 1/rate``)
        ``exponential``           ``rate`` (or ``scale = 1/rate``)
        ``halfnormal``            ``sigma``
        ``uniform``               ``low``, ``high``
        ========================  ==========================================

        Names are case-insensitive and ignore ``-``, ``_`` and spaces
        (``"log-normal"``, ``"Half_Normal"``); ``gaussian`` means ``normal``.
    where : str
        Location used in error messages, e.g. ``"prior.jump"``.

    Raises
    ------
    ValueError
        Unknown ``dist``, an unknown or missing key, a non-numeric or
        non-finite value, a non-positive scale or ``low >= high``; the
        message starts with ``where``.
    """
    if isinstance(spec, Prior):
        return spec
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: expected a mapping with a 'dist' key, got {spec!r}")  # noqa: TRY004
    if "dist" not in spec:
        raise ValueError(f"{where}: missing key 'dist' (one of: {', '.join(_DISTS)})")
    dist = spec["dist"]
    canonical = _canonical(dist) if isinstance(dist, str) else None
    if canonical not in _DISTS:
        raise ValueError(f"{where}: unknown dist {dist!r} (expected one of: "
                         f"{', '.join(_DISTS)})")
    cls, keys = _DISTS[canonical]
    has_scale = "rate" in keys  # gamma and exponential accept scale = 1 / rate
    expected = ", ".join(("dist",) + keys) + (" (or scale)" if has_scale else "")
    given = dict(spec)
    del given["dist"]
    for key in given:
        if key not in keys and not (has_scale and key == "scale"):
            raise ValueError(f"{where}: unknown key {key!r} (expected: {expected})")
    if has_scale and "scale" in given:
        if "rate" in given:
            raise ValueError(f"{where}: give 'rate' or 'scale', not both")
        scale = given.pop("scale")
        if isinstance(scale, bool) or not isinstance(scale, (int, float, np.number)):
            raise ValueError(f"{where}: scale must be a number, got {scale!r}")
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"{where}: scale must be finite and > 0, got {scale}")
        given["rate"] = 1.0 / float(scale)
    for key in keys:
        if key not in given:
            raise ValueError(f"{where}: missing key {key!r} (expected: {expected})")
    try:
        return cls(**given)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
