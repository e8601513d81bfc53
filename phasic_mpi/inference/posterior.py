"""Log posterior densities in unconstrained coordinates z, for the samplers.

Each parameter has a prior on θ and a transform ``θ = T(z)``
(:mod:`phasic_mpi.inference.priors`); the samplers see the density of z,

    log p(z) = loglik(T(z)) + Σ_m [log prior_m(θ_m) + log |dθ_m/dz_m|],

with its exact gradient. :class:`Posterior` takes the likelihood from a
phase-type :class:`~phasic_mpi.model.graph.Graph` (one batched libphase call for all
points); :class:`FunctionDensity` from a user function of θ. Both satisfy
:class:`LogDensity`, the interface SVGD and parallel tempering use.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from phasic_mpi.model.data import Observations, as_observations
from phasic_mpi.model.graph import Graph
from phasic_mpi.model.params import param_layout
from phasic_mpi.model.terms import LikelihoodTerm
from phasic_mpi.inference.priors import Prior, _interval, make_prior
from phasic_mpi.inference.transforms import (Transform, fusable, fused_terms, log_density_z,
                                             make_transform)

__all__ = ["FunctionDensity", "LogDensity", "Posterior", "PosteriorEval", "domain_problem"]

PriorSpec = Prior | Mapping[str, Any]
MIN_ROWS = 8  # blocks are evaluated as at least this many rows (see _TransformedDensity.evaluate)
TransformSpec = Transform | str | None


class PosteriorEval(NamedTuple):
    """Log density terms at P points z (rows); gradients are with respect to z."""

    loglik: np.ndarray
    """(P,) log-likelihood at θ = T(z); ``-inf`` where invalid."""
    loglik_grad: np.ndarray
    """(P, d) d loglik / dz (chain rule through T); 0 where invalid."""
    logprior: np.ndarray
    """(P,) Σ_m log prior(θ_m) + log|dθ_m/dz_m|, independent of the likelihood."""
    logprior_grad: np.ndarray
    """(P, d) d logprior / dz."""
    invalid: np.ndarray
    """(P,) bool: the likelihood could not be evaluated (domain error, impossible
    observation, too many terms, non-finite θ or gradient)."""

    @property
    def logp(self) -> np.ndarray:
        """(P,) unnormalised log posterior ``loglik + logprior``."""
        return self.loglik + self.logprior

    @property
    def grad(self) -> np.ndarray:
        """(P, d) gradient of :attr:`logp` with respect to z."""
        return self.loglik_grad + self.logprior_grad


@runtime_checkable
class LogDensity(Protocol):
    """What the samplers need from a target density in z-space.

    A density may also set ``rowwise = True``: each row's results are a
    function of that row alone, bit for bit, so ``evaluate(z[rows])`` equals
    ``evaluate(z, rows=rows)`` for any array around it. SVGD then evaluates a
    rank's block on its own; without it (the default), the block is written
    into an array of the global shape and evaluated with ``rows=``, which
    keeps densities that compute across rows (matrix products over the
    batch) bitwise independent of the rank layout.
    """

    param_names: tuple[str, ...]

    @property
    def n_params(self) -> int: ...

    def evaluate(self, z: Any, rows: Any = None) -> PosteriorEval: ...

    def logp_and_grad(self, z: Any, rows: Any = None) -> tuple[np.ndarray, np.ndarray]: ...

    def to_theta(self, z: Any) -> np.ndarray: ...

    def to_z(self, theta: Any) -> np.ndarray: ...

    def sample_prior_z(self, rng: np.random.Generator, n: int) -> np.ndarray: ...


def _resolve_priors(priors: Sequence[PriorSpec] | Mapping[str, PriorSpec],
                    names: tuple[str, ...]) -> tuple[Prior, ...]:
    expected = ", ".join(names)
    if isinstance(priors, Mapping):
        for key in priors:
            if key not in names:
                raise ValueError(f"priors: unknown parameter {key!r} (expected: {expected})")
        for name in names:
            if name not in priors:
                raise ValueError(f"priors: no prior for parameter {name!r}")
        specs = [priors[name] for name in names]
    elif isinstance(priors, Sequence) and not isinstance(priors, str):
        specs = list(priors)
        if len(specs) != len(names):
            raise ValueError(f"priors: {len(specs)} priors for {len(names)} "
                             f"parameters ({expected})")
    else:
        raise TypeError(f"priors: expected a sequence or a mapping by parameter "
                         f"name, got {priors!r}")
    return tuple(make_prior(spec, where=f"prior.{name}") for name, spec in zip(names, specs))


def _resolve_transforms(transforms: Any, priors: tuple[Prior, ...],
                        names: tuple[str, ...]) -> tuple[Transform, ...]:
    if transforms is None or isinstance(transforms, (str, Transform)):
        specs = [transforms] * len(names)  # one spec for every parameter
    elif isinstance(transforms, Mapping):
        for key in transforms:
            if key not in names:
                raise ValueError(f"transforms: unknown parameter {key!r} "
                                 f"(expected: {', '.join(names)})")
        specs = [transforms.get(name) for name in names]
    else:
        specs = list(transforms)
        if len(specs) != len(names):
            raise ValueError(f"transforms: {len(specs)} transforms for "
                             f"{len(names)} parameters ({', '.join(names)})")
    return tuple(make_transform(spec, prior, param=name)
                 for spec, prior, name in zip(specs, priors, names))


def domain_problem(graph: Graph, transforms: Sequence[Transform]) -> str | None:
    """Why parameter values the transforms can reach leave the graph's domain, or None.

    Each transform's image is its prior's support (:func:`make_transform`
    insists), so this is the check that every θ the prior allows gives
    non-negative rates (:meth:`Graph.box_violation`). The message starts
    with ``prior.<name>`` of the parameter to change.
    """
    transforms = transforms[:graph.n_params]  # parameters of terms alone come after
    low = [t.image[0] for t in transforms]
    high = [t.image[1] for t in transforms]
    found = graph.box_violation(low, high)
    if found is None:
        return None
    k, why = found
    name = graph.param_names[k]
    return (f"prior.{name}: its support {_interval(transforms[k].image)} (transform "
            f"{transforms[k].name}) leaves the model's domain: {why}; choose a prior whose "
            f"support keeps every rate >= 0 (e.g. gamma, lognormal, or uniform with "
            f"low >= 0)")


class _TransformedDensity:
    """Prior, transform and validity machinery shared by the densities.

    Subclasses provide ``_loglik_theta(theta (Q, d)) -> (loglik (Q,), grad
    (Q, d))`` in θ-space, called once per :meth:`evaluate` with the rows
    whose θ is finite; non-finite values mark a row invalid. It must be
    row-wise (each row's values from that row alone, bit for bit: libphase's
    likelihood is), which makes the whole density :attr:`rowwise`.
    """

    rowwise = True  # evaluate(z[rows]) has the bits of evaluate(z, rows=rows): see LogDensity
    _theta_read_only = False  # whether _loglik_theta leaves its argument alone (see _evaluate_fused)

    def __init__(self, param_names: Sequence[str],
                 priors: Sequence[PriorSpec] | Mapping[str, PriorSpec],
                 transforms: Sequence[TransformSpec] | Mapping[str, TransformSpec]
                 | TransformSpec = None,
                 param_shapes: Mapping[str, Sequence[int]] | None = None) -> None:
        names = tuple(param_names)
        if not all(isinstance(s, str) for s in names) or len(set(names)) != len(names):
            raise ValueError(f"param_names must be distinct strings, got {names!r}")
        self.param_names: tuple[str, ...] = names
        # families of parameters (arrays in the posterior's variables), declared
        # or named w[i,j]; checked here so that a bad declaration fails early
        self.param_shapes: dict[str, tuple[int, ...]] = param_layout(names, param_shapes).shapes
        self.priors: tuple[Prior, ...] = _resolve_priors(priors, names)
        self.transforms: tuple[Transform, ...] = _resolve_transforms(
            transforms, self.priors, names)
        self.n_evaluations = 0  # θ points passed to the likelihood so far
        # Columns that share a prior and transform are computed as one block:
        # a model with thousands of N(0, 1) weights costs one call, not thousands.
        groups: dict[tuple[Prior, Transform], list[int]] = {}
        for m, key in enumerate(zip(self.priors, self.transforms)):
            groups.setdefault(key, []).append(m)
        self._groups = [(prior, t, np.array(cols)) for (prior, t), cols in groups.items()]
        # evaluate's hot path (_evaluate_fused) for the library's priors and transforms;
        # None: every call takes the general path
        self._fused = self._groups if all(fusable(p, t) for p, t, _ in self._groups) else None
        self._whole = (self._fused is not None and len(self._groups) == 1
                       and np.array_equal(self._groups[0][2], np.arange(len(names))))

    def _loglik_theta(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    @property
    def n_params(self) -> int:
        """Number of parameters ``d``."""
        return len(self.param_names)

    def _points(self, z: Any, what: str = "z") -> np.ndarray:
        arr = np.asarray(z, dtype=np.float64)
        if arr.ndim == 1 and arr.size == self.n_params:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2 or arr.shape[1] != self.n_params:
            raise ValueError(f"{what} must have shape (P, {self.n_params}) for "
                             f"parameters {self.param_names}, got {np.shape(z)}")
        return arr

    def to_theta(self, z: Any) -> np.ndarray:
        """θ = T(z) column by column; ``z`` has shape ``(..., d)``."""
        z = np.asarray(z, dtype=np.float64)
        self._check_last_axis(z, "z")
        theta = np.empty_like(z)
        for _, t, cols in self._groups:
            theta[..., cols] = t.forward(z[..., cols])
        return theta

    def dtheta_dz(self, z: np.ndarray) -> np.ndarray:
        """dθ/dz column by column, shape of ``z``."""
        jac = np.empty_like(z)
        for _, t, cols in self._groups:
            jac[..., cols] = t.dtheta_dz(z[..., cols])
        return jac

    def to_z(self, theta: Any) -> np.ndarray:
        """z = T⁻¹(θ) column by column; θ must lie inside each prior's open support."""
        theta = np.asarray(theta, dtype=np.float64)
        self._check_last_axis(theta, "theta")
        cols = []
        for m, (name, t) in enumerate(zip(self.param_names, self.transforms)):
            try:
                z = t.inverse(theta[..., m])
            except ValueError as exc:
                raise ValueError(f"parameter {name!r}: {exc}") from None
            if not np.all(np.isfinite(z)):
                raise ValueError(f"parameter {name!r}: theta on the boundary of "
                                 f"{t.image} has no finite z")
            cols.append(z)
        return np.stack(cols, axis=-1)

    def _check_last_axis(self, arr: np.ndarray, what: str) -> None:
        if arr.ndim == 0 or arr.shape[-1] != self.n_params:
            raise ValueError(f"{what} must have shape (..., {self.n_params}) for "
                             f"parameters {self.param_names}, got {arr.shape}")

    def sample_prior_z(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``(n, d)`` draws from the prior, mapped to z (parameters drawn in order)."""
        cols = []
        for prior, t in zip(self.priors, self.transforms):
            low, high = t.image
            # a draw can round onto an endpoint (gamma underflow to 0), where z is infinite
            theta = np.clip(prior.sample(rng, n), np.nextafter(low, high),
                            np.nextafter(high, low))
            cols.append(t.inverse(theta))
        return np.stack(cols, axis=-1).reshape(n, self.n_params)

    def logprior(self, z: Any) -> tuple[np.ndarray, np.ndarray]:
        """Log prior density of z, ``(P,)``, and its gradient ``(P, d)``."""
        z = self._points(z)
        value = np.zeros(z.shape[0])
        grad = np.empty_like(z)
        for prior, t, cols in self._groups:
            v, grad[:, cols] = log_density_z(prior, t, z[:, cols])
            value += v.sum(axis=1)
        grad[~np.isfinite(value)] = 0.0
        return value, grad

    def evaluate(self, z: Any, rows: Any = None) -> PosteriorEval:
        """Log-likelihood, log prior and their z-gradients at the rows of ``z``.

        ``z`` has shape ``(P, d)`` (a single ``(d,)`` point gives ``P = 1``);
        ``rows`` (a slice, range or index array) evaluates only ``z[rows]``,
        e.g. a rank's block of the global particle array.
        Rows where the likelihood is not finite (a negative rate, an
        impossible observation, too many terms, θ overflowing an endpoint of
        the support, or z not finite) get ``loglik = -inf``, a zero
        ``loglik_grad`` and ``invalid = True``; nothing is NaN.
        """
        z = self._points(z)
        if rows is not None:
            z = z[rows if isinstance(rows, slice) else np.asarray(rows, dtype=np.intp)]
        # Only the requested rows are computed: every step is row-wise (elementwise
        # ufuncs, sums along axis 1 of C-ordered arrays, the likelihood per θ),
        # so a block has the bits of the whole batch (tests/inference/
        # test_posterior_rowwise.py checks every offset and size). Blocks below
        # MIN_ROWS rows are padded with z = 0 rows: every array a transcendental
        # ufunc sees is then >= 64 bytes, so numpy builds that fall back to
        # scalar libm for inputs and outputs closer than a vector (64 bytes)
        # cannot take another code path for a small block than for a large one.
        z = np.ascontiguousarray(z)
        n_points, d = z.shape
        if self._fused is not None and n_points:
            fused = self._evaluate_fused(z)
            if fused is not None:
                return fused
        padded = z if n_points >= MIN_ROWS or n_points == 0 else np.concatenate(
            [z, np.zeros((MIN_ROWS - n_points, d))])
        logprior, logprior_grad = self.logprior(padded)
        with np.errstate(over="ignore", invalid="ignore"):
            theta = self.to_theta(padded)[:n_points]
            jac = self.dtheta_dz(padded)[:n_points]
        logprior, logprior_grad = logprior[:n_points], logprior_grad[:n_points]
        loglik = np.full(n_points, -math.inf)
        loglik_grad = np.zeros((n_points, d))
        rows = np.flatnonzero(np.isfinite(z).all(axis=1) & np.isfinite(theta).all(axis=1))
        if rows.size:
            self.n_evaluations += rows.size
            value, grad = self._loglik_theta(np.ascontiguousarray(theta[rows]))
            with np.errstate(over="ignore", invalid="ignore"):
                grad = grad * jac[rows]
            good = np.isfinite(value) & np.isfinite(grad).all(axis=1)
            loglik[rows[good]] = value[good]
            loglik_grad[rows[good]] = grad[good]
        return PosteriorEval(loglik, loglik_grad, logprior, logprior_grad,
                             ~np.isfinite(loglik))

    def _evaluate_fused(self, z: np.ndarray) -> PosteriorEval | None:
        """:meth:`evaluate` of a contiguous ``(P, d)`` z, P >= 1, with the bits of the
        general path, or None where a prior term or θ is not finite (the general path's
        masks then decide).

        The general path computes θ, dθ/dz and the prior in separate passes whose
        masks, copies and error-state switches cost ~60 us a call, more than a
        cheap model's likelihood row; :func:`fused_terms` runs the same ufuncs
        on the same (padded) arrays once. A sum per array detects a non-finite
        value (a sum of finite values that overflows only sends the call to the
        general path).
        """
        n_points, d = z.shape
        padded = z if n_points >= MIN_ROWS else np.concatenate(
            [z, np.zeros((MIN_ROWS - n_points, d))])
        logprior = np.zeros(padded.shape[0])
        with np.errstate(all="ignore"):
            if self._whole:  # one prior and transform for all columns (rates): no scatter
                prior, t, _ = self._fused[0]
                theta, jac, value, logprior_grad = fused_terms(prior, t, padded)
                logprior += value.sum(axis=1)
            else:
                theta, jac, logprior_grad = (np.empty_like(padded) for _ in range(3))
                for prior, t, cols in self._fused:
                    theta[:, cols], jac[:, cols], value, logprior_grad[:, cols] = fused_terms(
                        prior, t, padded[:, cols])
                    logprior += value.sum(axis=1)
            theta, jac = theta[:n_points], jac[:n_points]
            logprior, logprior_grad = logprior[:n_points], logprior_grad[:n_points]
            # z and dθ/dz need no check of their own: a non-finite z gives a non-finite θ or
            # log prior under each fusable transform (Log of -inf: θ = 0 but log prior -inf),
            # and dθ/dz is θ (Log), 1 (Identity) or finite wherever z is (Logit)
            total = theta.sum() + logprior.sum() + logprior_grad.sum()
        if not math.isfinite(total):
            return None
        self.n_evaluations += n_points
        # the general path hands the likelihood a fresh copy; a user function may write to it
        value, grad = self._loglik_theta(theta if self._theta_read_only else theta.copy())
        with np.errstate(over="ignore", invalid="ignore"):
            grad = grad * jac
        good = np.isfinite(value) & np.isfinite(grad).all(axis=1)
        if good.all():
            loglik, loglik_grad = value, grad
        else:
            loglik, loglik_grad = np.full(n_points, -math.inf), np.zeros((n_points, d))
            loglik[good], loglik_grad[good] = value[good], grad[good]
        return PosteriorEval(loglik, loglik_grad, logprior, logprior_grad, ~np.isfinite(loglik))

    def logp_and_grad(self, z: Any, rows: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Log posterior ``(P,)`` and its gradient ``(P, d)`` in z (``rows`` as in evaluate)."""
        result = self.evaluate(z, rows)
        return result.logp, result.grad

    def describe(self) -> dict[str, dict[str, Any]]:
        """``{name: {"prior": prior spec, "transform": transform name}}``."""
        return {name: {"prior": p.to_dict(), "transform": t.name}
                for name, p, t in zip(self.param_names, self.priors, self.transforms)}

    def _params_repr(self) -> str:
        return ", ".join(f"{n} ~ {p} [{t.name}]" for n, p, t in
                         zip(self.param_names, self.priors, self.transforms))


class Posterior(_TransformedDensity):
    """Posterior of a phase-type model's parameters, in unconstrained z.

    Parameters
    ----------
    graph : Graph
        The model; its ``param_names`` name the parameters.
    data : array_like or Observations
        Observed absorption times (see :class:`~phasic_mpi.model.data.Observations`).
    priors : sequence or mapping
        One :class:`~phasic_mpi.inference.priors.Prior` (or a :func:`make_prior` spec)
        per parameter, in order or keyed by name.
    transforms : sequence, mapping, str or Transform, optional
        Per parameter (a mapping may omit parameters): a Transform, a name
        (``identity``, ``log``, ``logit``) or None for
        :func:`~phasic_mpi.inference.transforms.default_transform`; a single value applies
        to all. Its image must be the prior's support.
    tol : float, optional
        Truncation tolerance of the likelihood (libphase default 1e-12).
    terms : sequence of LikelihoodTerm, optional
        Further data with their own likelihoods, added to that of ``data``
        (which may then be empty): :class:`~phasic_mpi.model.sfs.SFSData`,
        :class:`~phasic_mpi.model.terms.MomentData` or anything with
        ``param_names`` and ``loglik_and_grad`` (see docs/sfs.md). Their
        parameters are matched by name; names the graph does not have (such
        as ``theta_mut``) are appended to ``param_names`` in order of first
        appearance, and need priors too.
    check_domain : bool
        Refuse priors whose support reaches parameter values where a rate is
        negative (:func:`domain_problem`); False leaves such points to the
        likelihood, which gives them ``-inf``.

    Raises
    ------
    ValueError
        No observations and no terms (the posterior would be the prior); a prior whose
        support leaves the model's domain (``prior.<name>: ...``).

    Examples
    --------
    >>> from phasic_mpi.model import models
    >>> from phasic_mpi.inference.priors import Gamma
    >>> post = Posterior(models.exponential(), [0.5, 1.2], [Gamma(2.0, 1.0)])
    >>> ev = post.evaluate([[0.0], [0.3]])        # z = log(rate)
    >>> ev.logp.shape, ev.grad.shape
    ((2,), (2, 1))
    """

    def __init__(self, graph: Graph, data: Observations | Any,
                 priors: Sequence[PriorSpec] | Mapping[str, PriorSpec],
                 transforms: Any = None, *, tol: float | None = None,
                 terms: Sequence[LikelihoodTerm] = (), check_domain: bool = True) -> None:
        if not isinstance(graph, Graph):
            raise TypeError(f"graph must be a Graph, got {type(graph).__name__}")
        self.terms: tuple[LikelihoodTerm, ...] = tuple(terms)
        names = list(graph.param_names)
        for term in self.terms:
            if not isinstance(term, LikelihoodTerm):
                raise TypeError(f"terms: {term!r} has no param_names and loglik_and_grad")
            names += [name for name in term.param_names if name not in names]
        super().__init__(names, priors, transforms)
        self.graph = graph
        self.data = as_observations(data)
        if self.data.n_observations == 0 and not self.terms:  # the run would return the prior
            raise ValueError("data: no observations (the posterior would be the prior)")
        problem = domain_problem(graph, self.transforms) if check_domain else None
        if problem:
            raise ValueError(problem)
        self.tol = tol
        # each term's columns of the full theta, in the term's own order
        self._term_columns = [np.array([names.index(name) for name in term.param_names],
                                       dtype=np.intp) for term in self.terms]

    _theta_read_only = True  # libphase only reads θ

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_call", None)  # C structs: rebuilt on first use
        return state

    def _likelihood(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """libphase's loglik and gradient of the data at ``theta`` (C-contiguous (P, d_graph)),
        through a call prepared once (:class:`~phasic_mpi.model.native.LoglikCall`: the
        bits of ``native.loglik``)."""
        call = self.__dict__.get("_call")
        if call is None:
            from phasic_mpi.model import native as _core  # the compiled extension loads lazily

            call = self._call = _core.LoglikCall(self.graph, self.data, self.tol)
        return call(theta)

    def _loglik_theta(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.terms:
            value, grad, status = self._likelihood(theta)
            if status.any():
                value[status != 0] = -math.inf  # 0: PHASE_OK
            return value, grad
        d_graph = self.graph.n_params
        value, graph_grad, status = self._likelihood(np.ascontiguousarray(theta[:, :d_graph]))
        value[status != 0] = -math.inf
        grad = np.zeros_like(theta)
        grad[:, :d_graph] = graph_grad
        for term, cols in zip(self.terms, self._term_columns):  # a fixed order: same bits
            term_value, term_grad = term.loglik_and_grad(np.ascontiguousarray(theta[:, cols]))
            value = value + term_value
            grad[:, cols] += term_grad
        return value, grad

    def __repr__(self) -> str:
        terms = f", terms={list(self.terms)!r}" if self.terms else ""
        return (f"Posterior({self.graph!r}, n_observations={self.data.n_observations}, "
                f"{self._params_repr()}{terms})")


def _load_callable(spec: str) -> Callable[..., Any]:
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"expected 'module:function', got {spec!r}")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{spec!r} is not callable")
    return obj


class FunctionDensity(_TransformedDensity):
    """A user log-likelihood in θ-space with the same priors and transforms.

    Parameters
    ----------
    fn : callable or str
        ``fn(theta) -> (loglik, grad)`` with ``theta`` of shape ``(P, d)``,
        ``loglik`` ``(P,)`` and ``grad = d loglik / dθ`` ``(P, d)``; or
        ``"module:function"`` to import it. Non-finite values mark a row
        invalid (``-inf``, zero gradient), as for :class:`Posterior`.
    param_names : sequence of str
        Parameter names, in the column order of ``theta``.
    priors, transforms
        As for :class:`Posterior`.
    param_shapes : mapping of str to tuple of int, optional
        Families of parameters that form arrays, e.g. ``{"w1": (50, 10)}``
        for the entries ``w1_0_0 ... w1_49_9`` (or ``w1[0,0] ...``) of
        ``param_names``; run files and ``to_inference_data`` show each family
        as one variable with dims ``(chain, draw, w1_dim_0, w1_dim_1)``
        (see :func:`~phasic_mpi.model.params.param_layout`). Bracket names
        need no declaration.
    """

    def __init__(self, fn: Callable[[np.ndarray], tuple[Any, Any]] | str,
                 param_names: Sequence[str], *,
                 priors: Sequence[PriorSpec] | Mapping[str, PriorSpec],
                 transforms: Any = None,
                 param_shapes: Mapping[str, Sequence[int]] | None = None) -> None:
        super().__init__(param_names, priors, transforms, param_shapes)
        self.fn = _load_callable(fn) if isinstance(fn, str) else fn
        if not callable(self.fn):
            raise TypeError(f"fn must be callable, got {fn!r}")

    def _loglik_theta(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        value, grad = self.fn(theta)
        value = np.array(value, dtype=np.float64)
        grad = np.array(grad, dtype=np.float64)
        if value.shape != theta.shape[:1] or grad.shape != theta.shape:
            raise ValueError(f"fn returned loglik {value.shape} and grad {grad.shape} "
                             f"for theta {theta.shape}; expected {theta.shape[:1]} "
                             f"and {theta.shape}")
        value[np.isnan(value)] = -math.inf
        return value, grad

    def __repr__(self) -> str:
        name = getattr(self.fn, "__qualname__", repr(self.fn))
        return f"FunctionDensity({name}, {self._params_repr()})"
