"""Site frequency spectra: expectations, simulation from genealogies, and the
SFS likelihood term.

With ``n`` samples, ``xi_i`` counts the segregating sites carried by ``i``
of them (``i = 1..n-1``); the folded spectrum ``eta_j = xi_j + xi_{n-j}``
(``j = 1..floor(n/2)``, once when ``j = n - j``) is used when the ancestral
allele is unknown. Mutations fall on the genealogy at rate ``theta_mut / 2``
per unit of branch length, so with ``L_i`` the total length of the branches
subtending ``i`` samples (the accumulated reward ``c_i`` of a block-counting
graph, :func:`~phasic_mpi.model.models.sfs_rewards`),

    E[xi_i] = theta_mut / 2 * E[L_i]        (theta_mut / i for the standard
                                              coalescent with coal_rate 1).

Two likelihoods (docs/sfs.md):

* **Poisson random field**: the classes are independent,
  ``xi_i ~ Poisson(n_loci theta_mut / 2 E[L_i])`` -- exact for unlinked
  sites (each on its own genealogy), an approximation for linked ones;
* **multinomial** given the number of segregating sites ``S = sum xi``:
  ``p_i = E[L_i] / sum_j E[L_j]``, free of ``theta_mut``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import gammaln, xlogy

from phasic_mpi.model.graph import Graph
from phasic_mpi.model.models import sfs_rewards
from phasic_mpi.model.moments import reward_moments
from phasic_mpi.model.simulate import sample
from phasic_mpi.model.terms import finite_rows, masked, ordered_sum, reward_matrix, term_thetas

__all__ = ["SFSData", "expected_sfs", "fold_matrix", "simulate_sfs"]


def fold_matrix(n: int) -> np.ndarray:
    """``(n-1, floor(n/2))`` 0/1 matrix: ``xi @ fold_matrix(n)`` is the folded SFS."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"the sample size n must be an integer >= 2, got {n!r}")
    fold = np.zeros((n - 1, n // 2))
    for j in range(1, n // 2 + 1):
        fold[j - 1, j - 1] = 1.0
        fold[n - j - 1, j - 1] = 1.0  # the same cell when j == n - j
    return fold


def _sfs_rewards(graph: Graph, rewards: Any, folded: bool) -> np.ndarray:
    """The branch-length rewards, folded if asked (folding is linear in the rewards)."""
    r = sfs_rewards(graph) if rewards is None else reward_matrix(graph, rewards)[0]
    return r @ fold_matrix(r.shape[1] + 1) if folded else r


def expected_sfs(graph: Graph, theta: Any, theta_mut: float, *, rewards: Any = None,
                 folded: bool = False) -> np.ndarray:
    """Expected SFS of one locus, ``theta_mut / 2 * E[L_i]``.

    Parameters
    ----------
    graph : Graph
        A block-counting graph (or any graph with ``rewards``).
    theta : array_like, shape (d,) or (P, d)
    theta_mut : float
        Population-scaled mutation rate.
    rewards : array_like, shape (n_states, n-1), optional
        Branch-length rewards (default :func:`~phasic_mpi.model.models.sfs_rewards`).
    folded : bool
        Return the folded spectrum.

    Returns
    -------
    ndarray, shape (C,) or (P, C)
    """
    r = _sfs_rewards(graph, rewards, folded)
    mean = reward_moments(graph, theta, r).mean
    out = 0.5 * float(theta_mut) * mean
    return out[0] if np.ndim(theta) == 1 else out


def simulate_sfs(graph: Graph, theta: Any, theta_mut: float, n_loci: int = 1,
                 seed: int = 0, *, rewards: Any = None, folded: bool = False,
                 per_locus: bool = False) -> np.ndarray:
    """Simulate SFS data from genealogies and mutations (not from the expectation).

    Each locus gets its own genealogy: one path of the block-counting chain,
    whose holding times times the block counts are the branch lengths
    ``L_i`` (:func:`~phasic_mpi.model.simulate.sample` with the reward
    matrix). Mutations then fall on the branches of class ``i`` as a Poisson
    process of rate ``theta_mut / 2``, so ``xi_i | L ~ Poisson(theta_mut / 2 L_i)``.
    Across loci the counts are independent; within a locus they share the
    genealogy (overdispersed relative to the Poisson random field).

    Parameters
    ----------
    graph : Graph
        A block-counting graph (:func:`~phasic_mpi.model.models.block_counting`,
        :func:`~phasic_mpi.model.models.structured_block_counting`), or any
        graph with ``rewards``.
    theta : array_like, shape (d,)
    theta_mut : float
        Mutation rate per locus (``> 0``).
    n_loci : int
        Number of independent loci.
    seed : int
        Genealogies use the Philox stream keyed ``(seed, 0)``, mutations
        ``(seed, 1)``: the same seed gives the same data.
    rewards : array_like, shape (n_states, n-1), optional
    folded : bool
        Return the folded spectrum.
    per_locus : bool
        Return one row per locus instead of the sum over loci.

    Returns
    -------
    ndarray of int64, shape (C,) or (n_loci, C)
    """
    if not (math.isfinite(theta_mut) and theta_mut > 0):
        raise ValueError(f"theta_mut must be finite and > 0, got {theta_mut!r}")
    r = sfs_rewards(graph) if rewards is None else reward_matrix(graph, rewards)[0]
    lengths = sample(graph, n_loci, theta, np.random.SeedSequence([int(seed), 0]),
                     rewards=r).reshape(n_loci, r.shape[1])
    rng = np.random.Generator(np.random.Philox(np.random.SeedSequence([int(seed), 1])))
    xi = rng.poisson(0.5 * theta_mut * lengths).astype(np.int64)
    if folded:
        xi = xi @ fold_matrix(r.shape[1] + 1).astype(np.int64)
    return xi if per_locus else xi.sum(axis=0)


def _counts(counts: Any, n_classes: int, n_loci: int | None) -> tuple[np.ndarray, int]:
    arr = np.asarray(counts, dtype=np.float64)
    loci = 1
    if arr.ndim == 2:  # one row per locus
        loci = arr.shape[0]
        arr = arr.sum(axis=0)
    if arr.shape != (n_classes,):
        raise ValueError(f"counts must have {n_classes} classes (or shape (n_loci, "
                         f"{n_classes})), got shape {np.shape(counts)}")
    if not np.all(np.isfinite(arr) & (arr >= 0) & (arr == np.round(arr))):
        raise ValueError(f"counts must be non-negative integers, got {arr.tolist()}")
    if n_loci is None:
        return arr, loci
    if isinstance(n_loci, bool) or not isinstance(n_loci, (int, np.integer)) or n_loci < 1:
        raise ValueError(f"n_loci must be an integer >= 1, got {n_loci!r}")
    if np.ndim(counts) == 2 and n_loci != loci:
        raise ValueError(f"n_loci={n_loci} but counts has {loci} rows (loci)")
    return arr, int(n_loci)


class SFSData:
    """An observed site frequency spectrum as a likelihood term.

    Parameters
    ----------
    graph : Graph
        Block-counting model; its parameters are matched by name to the
        posterior's.
    counts : array_like, shape (C,) or (n_loci, C)
        ``C = n - 1`` classes (unfolded) or ``floor(n/2)`` (folded); a 2-D
        array is one row per locus and is summed (the sum is sufficient
        under both likelihoods).
    rewards : array_like, shape (n_states, n-1), optional
        Branch-length rewards (default :func:`~phasic_mpi.model.models.sfs_rewards`).
    folded : bool
        ``counts`` is the folded spectrum.
    likelihood : {"poisson", "multinomial"}
        Poisson random field, or multinomial given the number of segregating
        sites (which does not involve ``theta_mut``).
    theta_mut : float, optional
        Fixed mutation rate per locus. ``None`` (Poisson only) makes it a
        parameter named ``theta_mut_name``, which the posterior then needs a
        prior for.
    theta_mut_name : str
        Name of the mutation-rate parameter.
    n_loci : int, optional
        Number of independent loci summed in ``counts`` (default 1, or the
        number of rows of a 2-D ``counts``).

    Examples
    --------
    >>> from phasic_mpi.model import models
    >>> g = models.block_counting(4)
    >>> term = SFSData(g, [6, 3, 2])                 # theta_mut is a parameter
    >>> term.param_names
    ('coal_rate', 'theta_mut')
    >>> value, grad = term.loglik_and_grad([[1.0, 6.0]])
    """

    def __init__(self, graph: Graph, counts: Any, *, rewards: Any = None,
                 folded: bool = False, likelihood: str = "poisson",
                 theta_mut: float | None = None, theta_mut_name: str = "theta_mut",
                 n_loci: int | None = None) -> None:
        if likelihood not in ("poisson", "multinomial"):
            raise ValueError(f"likelihood must be 'poisson' or 'multinomial', "
                             f"got {likelihood!r}")
        if likelihood == "multinomial" and theta_mut is not None:
            raise ValueError("the multinomial SFS likelihood does not depend on "
                             "theta_mut; leave it None")
        if theta_mut is not None and not (math.isfinite(theta_mut) and theta_mut > 0):
            raise ValueError(f"theta_mut must be finite and > 0, got {theta_mut!r}")
        self.graph = graph
        self.folded = bool(folded)
        self.likelihood = likelihood
        # the unfolded branch-length rewards (what a run file stores to rebuild the term)
        self.branch_rewards = np.ascontiguousarray(_sfs_rewards(graph, rewards, False))
        self.rewards = np.ascontiguousarray(
            self.branch_rewards @ fold_matrix(self.branch_rewards.shape[1] + 1)
            if self.folded else self.branch_rewards)
        self.counts, self.n_loci = _counts(counts, self.rewards.shape[1], n_loci)
        self.theta_mut = None if theta_mut is None else float(theta_mut)
        names = tuple(graph.param_names)
        if likelihood == "poisson" and theta_mut is None:
            if theta_mut_name in names:
                raise ValueError(f"theta_mut_name {theta_mut_name!r} is also a "
                                 "parameter of the graph")
            names += (theta_mut_name,)
        self.param_names: tuple[str, ...] = names
        xi = self.counts
        total = float(xi.sum())
        # the data-only part of each log-likelihood, computed once
        self._const = (-float(gammaln(xi + 1).sum()) if likelihood == "poisson"
                       else float(gammaln(total + 1) - gammaln(xi + 1).sum()))

    @property
    def theta_mut_is_param(self) -> bool:
        """Whether ``theta_mut`` is the last entry of :attr:`param_names`."""
        return self.likelihood == "poisson" and self.theta_mut is None

    def expected(self, theta: Any, *, errors: str = "raise") -> np.ndarray:
        """Expected counts ``(P, C)`` (Poisson) or class probabilities (multinomial).

        ``errors="nan"`` gives NaN rows where θ is outside the model's domain
        instead of raising.
        """
        thetas = term_thetas(theta, len(self.param_names))
        mean = reward_moments(self.graph, thetas[:, :self.graph.n_params],
                              self.rewards, errors=errors).mean
        if self.likelihood == "multinomial":
            return mean / mean.sum(axis=1, keepdims=True)
        mut = thetas[:, -1:] if self.theta_mut_is_param else self.theta_mut
        return 0.5 * self.n_loci * mut * mean

    def _mutation(self, thetas: np.ndarray) -> np.ndarray:
        """``(P,)`` theta_mut of each row (the fixed value, or the parameter)."""
        if self.theta_mut_is_param:
            return np.array(thetas[:, -1])
        return np.full(thetas.shape[0], self.theta_mut)

    def pointwise(self, theta: Any) -> np.ndarray:
        """Log-likelihood per class ``(P, C)`` (Poisson) or per spectrum ``(P, 1)``.

        Under the Poisson random field the classes are independent given
        θ, so the class terms ``log Pois(xi_i; lambda_i)`` are the pointwise
        values (leave-one-class-out is a valid LOO). Under the multinomial
        the classes are not independent (they sum to the number of
        segregating sites, which is conditioned on), so the whole spectrum
        is one observation. Row sums equal :meth:`loglik_and_grad`'s values
        to rounding; ``-inf`` where θ is outside the domain.
        """
        thetas = term_thetas(theta, len(self.param_names))
        expected = self.expected(thetas, errors="nan")
        xi = self.counts
        ok = finite_rows(expected) & np.all(expected >= 0, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.likelihood == "multinomial":
                ok &= np.all(np.isfinite(expected), axis=1)
                out = (ordered_sum(xlogy(xi, expected)) + self._const)[:, None]
            else:
                ok &= self._mutation(thetas) > 0
                out = xlogy(xi, expected) - expected - gammaln(xi + 1)
        return np.where(ok[:, None], out, -math.inf)

    def loglik_and_grad(self, theta: Any) -> tuple[np.ndarray, np.ndarray]:
        """Log-likelihood ``(P,)`` and its exact gradient ``(P, k)`` in theta."""
        thetas = term_thetas(theta, len(self.param_names))
        res = reward_moments(self.graph, thetas[:, :self.graph.n_params], self.rewards,
                             grad=True, errors="nan")
        ok = finite_rows(res.mean, res.mean_grad, thetas) & np.all(res.mean >= 0, axis=1)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if self.likelihood == "poisson":
                value, grad, good = self._poisson(res.mean, res.mean_grad, thetas)
            else:
                value, grad, good = self._multinomial(res.mean, res.mean_grad)
        return masked(value, grad, ok & good)

    def _poisson(self, mean: np.ndarray, dmean: np.ndarray,
                 thetas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        xi = self.counts
        mut = self._mutation(thetas)
        scale = 0.5 * self.n_loci * mut
        lam = scale[:, None] * mean
        value = ordered_sum(xlogy(xi, lam) - lam) + self._const
        dlam = np.where(xi > 0, xi / lam, 0.0) - 1.0  # d loglik / d lambda_i
        grad = scale[:, None] * ordered_sum(dlam[:, :, None] * dmean)
        if self.theta_mut_is_param:
            grad = np.column_stack([grad, ordered_sum(xi - lam) / mut])
        return value, grad, mut > 0

    def _multinomial(self, mean: np.ndarray,
                     dmean: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        xi = self.counts
        total = ordered_sum(mean)
        value = ordered_sum(xlogy(xi, mean / total[:, None])) + self._const
        # d/dtheta sum_i xi_i (log E[L_i] - log sum_j E[L_j])
        grad = (ordered_sum(np.where(xi > 0, xi / mean, 0.0)[:, :, None] * dmean)
                - (xi.sum() / total)[:, None] * ordered_sum(dmean))
        return value, grad, total > 0

    def __repr__(self) -> str:
        mut = "parameter" if self.theta_mut_is_param else self.theta_mut
        return (f"SFSData({self.likelihood}, {'folded' if self.folded else 'unfolded'}, "
                f"counts={self.counts.astype(np.int64).tolist()}, n_loci={self.n_loci}, "
                f"theta_mut={mut}, params={self.param_names})")
