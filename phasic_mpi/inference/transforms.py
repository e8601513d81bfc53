"""Transforms between parameters θ and unconstrained coordinates z.

Inference runs in z: ``θ = T(z)`` per parameter, and the density of ``z`` is
``p(T(z)) |T'(z)|`` (:func:`log_density_z`). Log for rates (support
``(0, inf)``), logit for a bounded support, identity for the real line; every
function is vectorised, numerically stable for large ``|z|`` and never NaN.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy.special import expit, log_expit

from phasic_mpi.inference.priors import (INF, Exponential, Gamma, HalfNormal, LogNormal, Normal,
                                         PositivePrior, Prior, Uniform, _as_float, _interval)

__all__ = [
    "Identity", "Log", "Logit", "Transform", "default_transform", "fusable", "fused_terms", "log_density_z",
    "make_transform",
]


class Transform(abc.ABC):
    """A smooth bijection ``θ = forward(z)`` from the real line onto :attr:`image`."""

    name: ClassVar[str]

    @property
    @abc.abstractmethod
    def image(self) -> tuple[float, float]:
        """Endpoints of the open interval that ``forward`` maps onto."""

    @abc.abstractmethod
    def forward(self, z: Any) -> np.ndarray:
        """θ from z; saturates at an endpoint of :attr:`image` for huge ``|z|``."""

    @abc.abstractmethod
    def _inverse(self, theta: np.ndarray) -> np.ndarray: ...

    @abc.abstractmethod
    def log_abs_jacobian(self, z: Any) -> np.ndarray:
        """``log |dθ/dz|``, finite for every finite z (even where θ saturates)."""

    @abc.abstractmethod
    def dtheta_dz(self, z: Any) -> np.ndarray:
        """``dθ/dz``."""

    @abc.abstractmethod
    def dlogjac_dz(self, z: Any) -> np.ndarray:
        """``d log|dθ/dz| / dz``."""

    def inverse(self, theta: Any) -> np.ndarray:
        """z from θ; the endpoints of the image map to ``±inf``.

        Raises ``ValueError`` for θ outside the closed image or NaN.
        """
        x = _as_float(theta)
        low, high = self.image
        bad = ~((x >= low) & (x <= high))
        if np.any(bad):
            raise ValueError(f"theta = {float(x[bad].flat[0])} is outside the image "
                             f"{_interval(self.image)} of the {self.name} transform")
        with np.errstate(divide="ignore"):
            return self._inverse(x)


@dataclass(frozen=True)
class Identity(Transform):
    """θ = z."""

    name: ClassVar[str] = "identity"
    image = property(lambda self: (-INF, INF))

    def forward(self, z: Any) -> np.ndarray:
        return _as_float(z).copy()

    def _inverse(self, theta: np.ndarray) -> np.ndarray:
        return theta.copy()

    def log_abs_jacobian(self, z: Any) -> np.ndarray:
        return np.zeros_like(_as_float(z))

    def dtheta_dz(self, z: Any) -> np.ndarray:
        return np.ones_like(_as_float(z))

    def dlogjac_dz(self, z: Any) -> np.ndarray:
        return np.zeros_like(_as_float(z))


@dataclass(frozen=True)
class Log(Transform):
    """θ = exp(z), onto ``(0, inf)``; ``log|dθ/dz| = z`` exactly.

    θ is finite for ``z < 709.78`` and overflows to ``inf`` beyond (it
    underflows to 0 below about -745); the log-Jacobian stays ``z``.
    """

    name: ClassVar[str] = "log"
    image = property(lambda self: (0.0, INF))

    def forward(self, z: Any) -> np.ndarray:
        with np.errstate(over="ignore"):
            return np.exp(_as_float(z))

    def _inverse(self, theta: np.ndarray) -> np.ndarray:
        return np.log(theta)

    def log_abs_jacobian(self, z: Any) -> np.ndarray:
        return _as_float(z).copy()

    dtheta_dz = forward

    def dlogjac_dz(self, z: Any) -> np.ndarray:
        return np.ones_like(_as_float(z))


@dataclass(frozen=True)
class Logit(Transform):
    """θ = low + (high - low) · expit(z), onto ``(low, high)``.

    θ is computed from the nearer endpoint (``high - (high-low) expit(-z)``
    for z > 0) so it keeps full relative precision there; it rounds to an
    endpoint once ``|z|`` exceeds about 37 (for an endpoint 0: about 745),
    while ``log|dθ/dz| = log(high-low) + log_expit(z) + log_expit(-z) ≈ -|z|``
    stays finite and exact.
    """

    low: float
    high: float
    name: ClassVar[str] = "logit"

    def __post_init__(self) -> None:
        low, high = float(self.low), float(self.high)
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"logit needs finite low < high, got ({low}, {high})")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    image = property(lambda self: (self.low, self.high))

    def forward(self, z: Any) -> np.ndarray:
        z = _as_float(z)
        width = self.high - self.low
        return np.where(z > 0, self.high - width * expit(-z), self.low + width * expit(z))

    def _inverse(self, theta: np.ndarray) -> np.ndarray:
        return np.log(theta - self.low) - np.log(self.high - theta)

    def log_abs_jacobian(self, z: Any) -> np.ndarray:
        z = _as_float(z)
        return math.log(self.high - self.low) + log_expit(z) + log_expit(-z)

    def dtheta_dz(self, z: Any) -> np.ndarray:
        z = _as_float(z)
        return (self.high - self.low) * expit(z) * expit(-z)

    def dlogjac_dz(self, z: Any) -> np.ndarray:
        return -np.tanh(0.5 * _as_float(z))  # = expit(-z) - expit(z)


def default_transform(prior: Prior) -> Transform:
    """Log for support ``(0, inf)``, Logit for a finite support, Identity for R."""
    low, high = prior.support
    if (low, high) == (0.0, INF):
        return Log()
    if (low, high) == (-INF, INF):
        return Identity()
    if math.isfinite(low) and math.isfinite(high):
        return Logit(low, high)
    raise ValueError(f"no default transform for support {_interval(prior.support)}")


def make_transform(name: str | Transform | None, prior: Prior, *,
                   param: str | None = None) -> Transform:
    """The transform ``name`` (``identity``, ``log``, ``logit``) for ``prior``.

    ``None``, ``"default"`` or ``"auto"`` give :func:`default_transform`;
    ``logit`` takes its bounds from the prior's support. The transform's image
    must be the prior's support, else a ``ValueError`` names ``param``.
    """
    label = f"parameter {param!r}" if param is not None else "transform"
    if isinstance(name, Transform):
        transform = name
    elif name is None or (isinstance(name, str) and name.lower() in ("default", "auto")):
        try:
            return default_transform(prior)
        except ValueError as exc:
            raise ValueError(f"{label}: {exc} of the prior {prior}") from None
    elif isinstance(name, str) and name.lower() in ("identity", "log"):
        transform = Identity() if name.lower() == "identity" else Log()
    elif isinstance(name, str) and name.lower() == "logit":
        low, high = prior.support
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError(f"{label}: the logit transform needs a prior with a finite "
                             f"support; {prior} has support {_interval(prior.support)}")
        transform = Logit(low, high)
    else:
        raise ValueError(f"{label}: unknown transform {name!r} "
                         "(expected: identity, log, logit or default)")
    if tuple(transform.image) != tuple(prior.support):
        raise ValueError(f"{label}: the {transform.name} transform maps onto "
                         f"{_interval(transform.image)} but the prior {prior} has "
                         f"support {_interval(prior.support)}")
    return transform


def log_density_z(prior: Prior, transform: Transform, z: Any) -> tuple[np.ndarray, np.ndarray]:
    """Log density of ``z`` when ``θ = transform.forward(z)`` has ``prior``, and its derivative.

    ``log p(T(z)) + log|T'(z)|``. With :class:`Log` and a :class:`PositivePrior`
    the closed form in z is used (exact for any finite z); otherwise the chain
    rule. Returns ``-inf`` (never NaN) and a zero derivative where the density
    of z is 0 or z is not finite.
    """
    z = _as_float(z)
    with np.errstate(all="ignore"):
        if isinstance(transform, Log) and isinstance(prior, PositivePrior):
            value, grad = prior.logpdf_log(z), prior.grad_log(z)
        else:
            theta = transform.forward(z)
            value = prior.logpdf(theta) + transform.log_abs_jacobian(z)
            grad = prior.grad(theta) * transform.dtheta_dz(z) + transform.dlogjac_dz(z)
    value = np.where(np.isfinite(z) & ~np.isnan(value), value, -INF)
    grad = np.where(np.isfinite(value) & np.isfinite(grad), grad, 0.0)
    return value, grad


def fusable(prior: Prior, transform: Transform) -> bool:
    """Whether :func:`fused_terms` may stand in for the general functions: the
    library's own priors and transforms (a subclass could change a formula, or
    a user transform map outside its prior's support, where only the masks
    give the right value)."""
    return (type(transform) in (Identity, Log, Logit)
            and type(prior) in (Normal, LogNormal, Gamma, Exponential, HalfNormal, Uniform))


def fused_terms(prior: Prior, transform: Transform,
                z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """θ, dθ/dz, the log density of z and its derivative in one pass, without masks.

    The samplers' hot path (:meth:`~phasic_mpi.inference.posterior.Posterior.evaluate`):
    the same ufuncs on the same arrays as ``transform.forward``,
    ``transform.dtheta_dz`` and :func:`log_density_z`, minus their masks and
    copies, and ``exp(z)`` computed once for θ and dθ/dz of the Log transform
    (``Log.dtheta_dz`` is ``forward``). Where all four outputs are finite the
    masks of those functions are identities, so the values have their bits; where
    one is not, they are unspecified and the caller must use the general
    functions. Call it under ``np.errstate(all="ignore")``; ``z`` is a float64 array.
    """
    if isinstance(transform, Log):
        theta = np.exp(z)
        if isinstance(prior, PositivePrior):
            return theta, theta, prior._logpdf_log(z), prior._grad_log(z)
        jac = theta
    else:
        theta, jac = transform.forward(z), transform.dtheta_dz(z)
    value = prior._logpdf(theta) + transform.log_abs_jacobian(z)
    grad = prior._grad(theta) * jac + transform.dlogjac_dz(z)
    return theta, jac, value, grad
