"""The reference of parallel tempering's path: the prior, or a Gaussian fitted
during warm-up (variational PT, Surjanovic et al. 2022).

The path between a reference pi_0 and the posterior pi = prior * L is
pi_b ∝ pi_0^(1 - b) pi^b, in the unconstrained space z. With the prior as
reference, pi_b = prior * L^b and the swap/stepping-stone potential is
V = log L. With a normalised Gaussian q as reference, V = log prior + log L -
log q and log Z = log ∫ prior L dz still (q integrates to 1, as does the
prior: priors carry their normalising constants), so the stepping stone
estimates the same evidence on either path.

*Stabilised* variational PT keeps, next to every variational leg, a
prior-referenced leg: chains 2e (prior) and 2e + 1 (variational) are one
ensemble whose two b = 1 levels exchange their states on odd scans (both
target pi, so that exchange is always accepted; on odd scans DEO leaves
level 0 idle, so the joined path of 2N levels keeps its even/odd phases).
The prior leg cannot lose a mode the Gaussian misses.

The Gaussian is fitted at the end of every warm-up round by moment matching
(the exponential-family fit: mean and covariance, diagonal or full) to the
b = 1 states of the variational legs during that round. Per-slot running
sums (count, sum z, sum z z^T) are accumulated in scan order on the slot's
rank and pooled over chains in chain order, so the fit has the same bits at
any rank count. Until the first fit the variational legs use the prior.

Values of log q and its gradient are computed column by column with
elementwise arithmetic only (no BLAS, no exp/log), so a row's value does
not depend on how many rows are evaluated with it: both ends of a
cross-rank swap compute the same potential.

The estimates of log Z along either path (stepping stone, bridge) and their
standard errors are here too.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import numpy as np

from phasic_mpi.inference.parallel import allgather_rows
from phasic_mpi.settings import fail
from phasic_mpi.inference.ptscan import slot_index, tempered

__all__ = ["Path", "Reference", "accumulate", "bridge", "check_reference", "evidence", "fit_reference",
           "initial_reference", "join_legs", "reference_layout", "reference_state", "respace_by_leg",
           "stepping_stone", "sums_width", "update_reference", "variational_chains"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class Reference(NamedTuple):
    """A Gaussian N(mean, Sigma) in z, Sigma = L L^T, kept as P = L^-1 (lower)."""

    active: bool  # False: not fitted yet, the variational legs use the prior
    mean: np.ndarray  # (d,)
    inv_chol: np.ndarray  # (d, d) lower-triangular P = L^-1 (diagonal for the diagonal family)
    log_norm: float  # -sum log diag L - d/2 log 2 pi

    def log_q(self, x: np.ndarray) -> np.ndarray:
        """log q at the rows of ``x`` (elementwise arithmetic only)."""
        y = self._whiten(x)
        q = np.zeros(len(x))
        for col in y:
            q = q + col * col
        return self.log_norm - 0.5 * q

    def grad_log_q(self, x: np.ndarray) -> np.ndarray:
        """∇ log q = -P^T P (x - mean) at the rows of ``x``."""
        y = self._whiten(x)
        d = len(self.mean)
        grad = np.empty((len(x), d))
        for i in range(d):
            g = np.zeros(len(x))
            for k in range(i, d):
                if self.inv_chol[k, i] != 0.0:
                    g = g + self.inv_chol[k, i] * y[k]
            grad[:, i] = -g
        return grad

    def _whiten(self, x: np.ndarray) -> list[np.ndarray]:
        """y_k = sum_{i <= k} P_ki (x_i - mean_i), summed in increasing i."""
        r = [x[:, i] - self.mean[i] for i in range(len(self.mean))]
        y = []
        for k in range(len(self.mean)):
            acc = np.zeros(len(x))
            for i in range(k + 1):
                if self.inv_chol[k, i] != 0.0:
                    acc = acc + self.inv_chol[k, i] * r[i]
            y.append(acc)
        return y

    def arrays(self) -> dict[str, np.ndarray]:
        """The checkpoint's view (restored by :func:`reference_from_arrays`)."""
        return {"ref_active": np.array(float(self.active)), "ref_mean": self.mean,
                "ref_inv_chol": self.inv_chol, "ref_log_norm": np.array(self.log_norm)}


def reference_from_arrays(arrays: dict[str, np.ndarray]) -> Reference:
    return Reference(bool(np.asarray(arrays["ref_active"]) != 0), np.array(arrays["ref_mean"], float),
                     np.array(arrays["ref_inv_chol"], float), float(np.asarray(arrays["ref_log_norm"])))


def initial_reference(d: int) -> Reference:
    """The standard normal, inactive: the variational legs start on the prior."""
    return Reference(False, np.zeros(d), np.eye(d), -d * _HALF_LOG_2PI)


def check_reference(settings: Any) -> None:
    """The stabilised form needs the chains in pairs (a prior leg and a variational leg)."""
    if settings.reference == "variational" and settings.stabilised and settings.chains % 2:
        fail("pt.chains", f"expected an even number with reference = \"variational\" and stabilised = "
                          f"true (a prior leg and a variational leg each), got {settings.chains}")


def reference_state(settings: Any, d: int = 0, m: int = 0, arrays: dict | None = None,
                    rows: Any = None) -> dict[str, Any]:
    """The PTState fields ``reference`` and ``ref_sums`` of a new state (``d``
    parameters, ``m`` local slots) or of this rank's ``rows`` of a checkpoint;
    none (the defaults, None) for the prior reference."""
    if settings.reference != "variational":
        return {}
    if arrays is not None:
        return {"reference": reference_from_arrays(arrays), "ref_sums": np.array(arrays["ref_sums"][rows])}
    return {"reference": initial_reference(d), "ref_sums": np.zeros((m, sums_width(settings, d)))}


def reference_layout(settings: Any, m: int, d: int) -> dict[str, tuple]:
    """Shapes and dtype kinds of the checkpoint's reference arrays (``PTAlgorithm.checkpoint_layout``)."""
    if settings.reference != "variational":
        return {}
    return {"ref_active": ((), "f"), "ref_mean": ((d,), "f"), "ref_inv_chol": ((d, d), "f"),
            "ref_log_norm": ((), "f"), "ref_sums": ((m, sums_width(settings, d)), "f")}


def variational_chains(settings: Any) -> np.ndarray:
    """Per chain: does it use the variational reference? (odd chains when stabilised)."""
    chains = np.arange(settings.chains)
    if settings.reference != "variational":
        return np.zeros(settings.chains, dtype=bool)
    return chains % 2 == 1 if settings.stabilised else np.ones(settings.chains, dtype=bool)


def sums_width(settings: Any, d: int) -> int:
    """Columns of a slot's running sums: count, sum z, and sum z^2 or sum z z^T."""
    return 1 + d + (d if settings.variational_family == "diagonal" else d * d)


def accumulate(sums: np.ndarray, x: np.ndarray, rows: np.ndarray, diagonal: bool) -> None:
    """Add the states ``x[rows]`` to the running sums of those slots, in place."""
    z = x[rows]
    second = z * z if diagonal else (z[:, :, None] * z[:, None, :]).reshape(len(z), z.shape[1] ** 2)
    sums[rows] += np.column_stack([np.ones(len(z)), z, second])


def fit_reference(total: np.ndarray, d: int, diagonal: bool, previous: Reference) -> Reference:
    """Moment-matched Gaussian from pooled sums; ``previous`` if they do not define one."""
    n = total[0]
    if not n > d + 1 or not np.all(np.isfinite(total)):
        return previous
    mean = total[1:1 + d] / n
    if diagonal:
        var = total[1 + d:] / n - mean * mean
        if not np.all(var > 0):
            return previous
        sd = np.sqrt(var)
        return Reference(True, mean, np.diag(1.0 / sd), float(-np.log(sd).sum() - d * _HALF_LOG_2PI))
    cov = total[1 + d:].reshape(d, d) / n - np.outer(mean, mean)
    cov = 0.5 * (cov + cov.T)
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        return previous
    from scipy.linalg import solve_triangular

    inv_chol = np.tril(solve_triangular(chol, np.eye(d), lower=True))
    return Reference(True, mean, inv_chol, float(-np.log(np.diag(chol)).sum() - d * _HALF_LOG_2PI))


def pooled_fit(all_sums: np.ndarray, settings: Any, previous: Reference) -> Reference:
    """Fit from the gathered (K*N, w) sums: the b = 1 slots of the variational chains,
    added in chain order (identical on every rank)."""
    total = np.zeros(all_sums.shape[1])
    for c in np.flatnonzero(variational_chains(settings)):
        total = total + all_sums[c * settings.replicas]
    return fit_reference(total, len(previous.mean), settings.variational_family == "diagonal", previous)


def update_reference(reference: Reference | None, sums: np.ndarray | None, x: np.ndarray, var_slots: np.ndarray,
                     ctx: Any, warmup: bool, round_end: bool) -> tuple[Reference | None, np.ndarray | None]:
    """After a warm-up scan: add the variational legs' b = 1 states ``x`` to the
    moment sums; at the round's end refit the Gaussian from every rank's sums
    (a collective call) and start new sums. Returns (reference, sums)."""
    if reference is None or not warmup:
        return reference, sums
    settings, layout = ctx.settings, ctx.layout
    sums = sums.copy()
    level0 = slot_index(settings.replicas, layout.start, layout.stop)[2]
    accumulate(sums, x, level0[var_slots[level0]], settings.variational_family == "diagonal")
    if not round_end:
        return reference, sums
    return pooled_fit(allgather_rows(ctx.comm, layout, sums), settings, reference), np.zeros_like(sums)


class Path:
    """log pi_b, its gradient and the swap potential V of this rank's slots.

    ``var`` (m,) marks the slots on a variational leg whose reference is
    active; every other slot computes exactly the prior-referenced terms.
    """

    def __init__(self, reference: Reference | None, var: np.ndarray | None) -> None:
        self.reference = reference
        self.var = var if reference is not None and reference.active and var is not None and var.any() else None

    def subset(self, index: np.ndarray) -> "Path":
        """The path of the slots ``index`` of this one (ptmoves' cold-only moves)."""
        return Path(self.reference, None if self.var is None else self.var[index])

    def logpi(self, beta: np.ndarray, ll: np.ndarray, lp: np.ndarray, x: np.ndarray) -> np.ndarray:
        out = tempered(beta, ll) + lp
        if self.var is not None:
            v, b = self.var, beta[self.var]
            target = ll[v] + lp[v]
            out[v] = (1.0 - b) * self.reference.log_q(x[v]) + tempered(b, target)
        return out

    def grad(self, beta: np.ndarray, gll: np.ndarray, glp: np.ndarray, x: np.ndarray) -> np.ndarray:
        out = beta[:, None] * gll + glp
        if self.var is not None:
            v, b = self.var, beta[self.var][:, None]
            out[v] = (1.0 - b) * self.reference.grad_log_q(x[v]) + b * (gll[v] + glp[v])
        return out

    def potential(self, ll: np.ndarray, lp: np.ndarray, x: np.ndarray) -> np.ndarray:
        """V = log pi - log pi_0: log L on prior legs, log prior + log L - log q on variational ones."""
        out = np.array(ll, dtype=float)
        if self.var is not None:
            v = self.var
            out[v] = ll[v] + lp[v] - self.reference.log_q(x[v])
        return out

    def potential_of(self, buf: np.ndarray, d: int, i: int) -> float:
        """V of a state packed by ``pt._Slots.pack`` (loglik, logprior, ..., x at 6:6+d)
        received for a swap with local slot ``i`` (same chain, so same leg)."""
        if self.var is None or not self.var[i]:
            return float(buf[0])
        return float(buf[0] + buf[1] - self.reference.log_q(buf[None, 6:6 + d])[0])


def respace_by_leg(betas: np.ndarray, rejection: np.ndarray, attempts: np.ndarray, var_chain: np.ndarray,
                   respace: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """One ladder per leg kind from its chains' pooled swap statistics."""
    new = betas.copy()
    for leg in (False, True):
        rows = var_chain == leg
        if rows.any():
            with np.errstate(invalid="ignore", divide="ignore"):
                pooled = rejection[rows].sum(axis=0) / attempts[rows].sum(axis=0)
            new[rows] = respace(betas[rows][0], pooled)
    return new


def join_legs(slots: Any, layout: Any, settings: Any, scan: int, comm: Any, fields: tuple[str, ...]) -> None:
    """Exchange the b = 1 states of the two legs of every ensemble (odd scans).

    Both levels target pi, so the exchange is always accepted and needs no
    random number. Pairs are visited in increasing ensemble order on every
    rank: the blocking Sendrecvs cannot form a cycle.
    """
    if settings.reference != "variational" or not settings.stabilised or scan % 2 == 0:
        return
    n = settings.replicas
    for e in range(settings.chains // 2):
        g1, g2 = 2 * e * n, (2 * e + 1) * n
        here1, here2 = layout.start <= g1 < layout.stop, layout.start <= g2 < layout.stop
        if here1 and here2:
            i, j = g1 - layout.start, g2 - layout.start
            for name in fields:
                arr = getattr(slots, name)
                arr[[i, j]] = arr[[j, i]]
        elif here1 or here2:
            mine, other = (g1, g2) if here1 else (g2, g1)
            i = mine - layout.start
            owner = int(np.searchsorted(layout.displs, other, side="right") - 1)
            recv = comm.sendrecv(slots.pack(i, np.zeros(2)), owner, 32767 - e % 16384)
            slots.unpack(i, recv)


# ------------------------------------------------- evidence along the path
def _log_mean_exp(a: np.ndarray) -> float:
    m = np.max(a)
    if not np.isfinite(m):
        return float(m)
    return float(m + np.log(np.mean(np.exp(a - m))))


def _weights(a: np.ndarray) -> np.ndarray:
    """exp(a) / mean exp(a): one log-mean-exp term's influence on the scans (delta method)."""
    w = np.exp(a - np.max(a))
    return w / np.mean(w)


def _autocovariance(u: np.ndarray) -> np.ndarray | None:
    """g[k] = sum_s d_s d_s+k / scans, d = u - mean u, by one zero-padded FFT
    (O(scans log scans) however long the correlation; ``u`` is the same gathered
    array on every rank, so are they). None with fewer than 2 scans or a
    non-finite value."""
    t = u.size
    if t < 2 or not np.all(np.isfinite(u)):
        return None
    d = u - np.mean(u)
    if not np.any(d):
        return np.zeros(t)
    f = np.fft.rfft(d, 2 * t)
    return np.fft.irfft(f * np.conj(f), 2 * t)[:t] / t


def _pooled_se(series: list[np.ndarray]) -> list[float]:
    """Standard errors of the means of series of one distribution (scans in
    order; chains that share a ladder and a target), by Geyer's (1992) initial
    monotone sequence on their mean autocorrelation.

    The integrated autocorrelation time is tau = -1 + 2 sum_m G_m, G_m =
    rho_2m + rho_2m+1 summed while positive and made non-increasing, floored
    at 1 / log10(scans) as in ArviZ's and Stan's ESS (a lag-1 anticorrelated
    series can otherwise reach zero); series i has se sqrt(g_i[0] tau / scans).
    Averaged over K chains, the autocorrelations' noise shrinks and the sum
    stops later: on the 16-chain mixture of docs/inference.md one chain's
    sequence stopped at lag 12 (median), the pooled one at lag 24, and the
    single-chain se was 3-6 % too small. The series have one length. NaN for
    a series with fewer than 2 scans or a non-finite value, 0 for a constant one.
    """
    covs = [_autocovariance(u) for u in series]
    usable = [g for g in covs if g is not None and g[0] > 0.0]
    out = [math.nan if g is None else 0.0 for g in covs]
    if not usable:
        return out
    t = usable[0].size
    rho = sum(g / g[0] for g in usable) / len(usable)
    pairs = rho[0:t - 1:2] + rho[1:t:2]
    stop = np.flatnonzero(pairs <= 0.0)
    pairs = np.minimum.accumulate(pairs[:stop[0] if stop.size else pairs.size])
    tau = -1.0 + 2.0 * float(np.sum(pairs))
    if pairs.size:
        # centring on the sample mean lowers every g_k by about g_0 tau / scans: undo it for
        # the 4 m - 1 lags summed (-(2m - 1) .. 2m - 1); 0.94 -> 0.99 of the pooled AR(1) test's se
        tau /= max(1.0 - (4 * pairs.size - 1) / t, 0.5)
    tau = max(tau, 1.0 / math.log10(max(t, 10)))
    return [v if g is None or not g[0] > 0.0 else math.sqrt(g[0] * tau / t) for v, g in zip(out, covs)]


def _chain_terms(betas: np.ndarray, loglik: np.ndarray) -> tuple[list[float], list[np.ndarray]]:
    """One chain's forward, reverse and bridge estimates of log Z and their influence series.

    To first order an estimate sum_j +-log mean_t w_jt errs by the mean over
    the scans of u_t = sum_j +-w_jt / mean_t(w_jt) (the delta method; levels
    share a scan, so their correlation is included). ``loglik`` (scans, N) as
    in :func:`stepping_stone`.
    """
    pairs = range(betas.size - 1)
    half = 0.5 * (betas[:-1] - betas[1:])
    forward = sum(_log_mean_exp((betas[j] - betas[j + 1]) * loglik[:, j + 1]) for j in pairs)
    reverse = -sum(_log_mean_exp((betas[j + 1] - betas[j]) * loglik[:, j]) for j in pairs)
    bridged = sum(_log_mean_exp(half[j] * loglik[:, j + 1]) - _log_mean_exp(-half[j] * loglik[:, j]) for j in pairs)
    u = np.zeros((3, loglik.shape[0]))
    for j in pairs:
        u[0] += _weights((betas[j] - betas[j + 1]) * loglik[:, j + 1])
        u[1] += _weights((betas[j + 1] - betas[j]) * loglik[:, j])
        u[2] += _weights(half[j] * loglik[:, j + 1]) - _weights(-half[j] * loglik[:, j])
    return [forward, reverse, bridged], list(u)


def stepping_stone(betas: np.ndarray, loglik: np.ndarray) -> tuple[float, float, float, float]:
    """log Z from samples at every level, in both directions, with standard errors.

    ``loglik`` has shape (scans, N): the potential V of the state at each
    level after each scan (the log-likelihood on a prior-referenced path).
    Forward: log Z = sum_j log E_{j+1}[exp((b_j - b_{j+1}) L)];
    reverse: log Z = -sum_j log E_j[exp((b_{j+1} - b_j) L)]. Standard errors
    by the delta method (:func:`_chain_terms`) and the autocorrelation of the
    influence series (:func:`_pooled_se` of this chain alone; NaN with fewer
    than 2 scans); :func:`evidence` pools the autocorrelation over chains.

    The forward weights have finite variance whenever V is bounded above;
    the reverse weights have E_j[w^2] = ∫ pi_0 L^(2 b_{j+1} - b_j) / Z_j,
    infinite for many targets once b_{j+1} < b_j / 2 (always possible at the
    last pair, b_{j+1} = 0): then the reverse estimate has no central limit
    and its standard error is too small (docs/inference.md). See
    :func:`bridge` for a two-sided estimate that never has that problem.
    """
    estimates, u = _chain_terms(betas, loglik)
    return estimates[0], estimates[1], _pooled_se([u[0]])[0], _pooled_se([u[1]])[0]


def bridge(betas: np.ndarray, loglik: np.ndarray) -> tuple[float, float]:
    """log Z by geometric bridge sampling between neighbouring levels, and its standard error.

    log Z_j / Z_{j+1} = log E_{j+1}[exp(dB V / 2)] - log E_j[exp(-dB V / 2)],
    dB = b_j - b_{j+1} (both expectations are Z_{j+1/2} over one end, with
    b_{j+1/2} the midpoint; Meng & Wong 1996). Unlike the reverse stepping
    stone, both weights have finite variance for any ladder and target:
    E_{j+1}[exp(dB V)] = Z_j / Z_{j+1} and E_j[exp(-dB V)] = Z_{j+1} / Z_j.
    ``loglik`` and the standard error as in :func:`stepping_stone`.
    """
    estimates, u = _chain_terms(betas, loglik)
    return estimates[2], _pooled_se([u[2]])[0]


def evidence(betas: np.ndarray, loglik: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every chain's forward, reverse and bridge log Z (K, 3) and standard errors (K, 3).

    ``betas`` (K, N) the chains' ladders, ``loglik`` (K N, scans) the
    potentials, chain-major; ``groups`` (K,) labels chains that share a ladder
    and a target (a leg kind), whose autocorrelations :func:`_pooled_se` pools.
    The estimates are :func:`stepping_stone`'s and :func:`bridge`'s.
    """
    k, n = betas.shape
    estimates, series = zip(*[_chain_terms(betas[c], loglik[c * n:(c + 1) * n].T) for c in range(k)])
    se = np.empty((k, 3))
    for label in np.unique(groups):
        rows = np.flatnonzero(groups == label)
        for e in range(3):
            se[rows, e] = _pooled_se([series[c][e] for c in rows])
    return np.array(estimates), se
