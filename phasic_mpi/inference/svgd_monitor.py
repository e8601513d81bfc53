"""SVGD's convergence check, its stranded-particle check and its annealing schedule.

**Convergence.** Every ``convergence_window`` (W) iterations, the run has
converged when, over the last W iterations, both

* the mean net force r_t = |mean_i phi(x_i)| / rms_i |grad log p(x_i)| is
  at most ``tolerance``: the Stein force on the particles' mean, as a
  fraction of the force of the target on one particle. It does not change
  when z is rescaled and is 0 at a fixed point of SVGD; the jitter of single
  particles cancels in it (a converged 1-D run keeps |phi| at 3 % of the
  score, its mean at 0.2 %), an offset of the whole ensemble does not. It
  stays high when a step size that is too large keeps the particles
  jittering around a biased position (the old default, AdaGrad 0.05 without
  decay: r = 0.081 for ever, means off by 0.27 posterior sd);
* and every coordinate's particle mean moved by at most ``tolerance``
  particle standard deviations, and its log standard deviation by at most
  ``tolerance``: the ensemble has stopped drifting. This catches a run
  whose force is small only because the particles are still spread over the
  prior (few neighbours under the kernel dilute phi: r = 0.02 in the first
  100 iterations of a run whose means are still 3 sd off), and one whose step
  size has decayed before the particles arrived.

The decision uses the global arrays every rank holds after the step's
``Allgatherv`` (summed in the same order on every rank), the running sum
of r and the moments at the last window boundary; those are part of the
state and of the checkpoint, so every rank, at any rank count, and a
resumed run take it at the same iteration.

**Stranded particles.** SVGD cannot move particles between modes separated
by a region of low density. A particle whose log density lies more than
c = chi2_d(0.999) / 2 below the best particle's is one that an exact draw of
a unimodal, roughly Gaussian posterior would be with probability at most
1e-3 (-2 log p(x)/p(mode) is chi-squared with d degrees of freedom; the
best particle is below the mode, so the gap to it is smaller still). When
more than 5 % of the particles are that far below, 50 times what exact draws
would give, they are most likely stuck in a separate mode of negligible mass
(a label-swapped mixture: 59 % of 64 particles, 8.9 below the best, in a
mode with 1.4e-4 of the posterior mass), and the run warns to use parallel
tempering. (Only a run that converged, or was not checked, is warned
about: before the particles settle they may still be spread over the prior.)

**Annealing.** With ``anneal_iterations`` = A > 0, the scores of iteration
t are those of prior x likelihood^b with b = min(1, t / A): the particles
start from the prior's shape and follow the tempered posteriors.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from phasic_mpi.inference.stein import sum_of_squares

__all__ = [
    "SVGDMonitor",
    "STRANDED_FRACTION",
    "STRANDED_PROBABILITY",
    "anneal_beta",
    "end_of_run",
    "monitor_arrays",
    "monitor_from_arrays",
    "monitor_layout",
    "new_monitor",
    "relative_to_score",
    "stranded_gap",
    "update_monitor",
]

STRANDED_PROBABILITY = 1e-3  # per particle, for exact draws of a Gaussian posterior (see module doc)
STRANDED_FRACTION = 0.05  # warn above this fraction of stranded particles


class SVGDMonitor(NamedTuple):
    """Convergence bookkeeping, identical on every rank (part of the checkpoint)."""

    rel_sum: float  # sum of the net force r_t over the current window
    mean: np.ndarray | None  # (d,) particle means in z at the last window boundary
    sd: np.ndarray | None  # (d,) particle standard deviations there
    converged_at: int  # first iteration at which the check passed; -1: not yet


def new_monitor() -> SVGDMonitor:
    """The monitor of a new run."""
    return SVGDMonitor(0.0, None, None, -1)


def relative_to_score(force: float, scores: np.ndarray) -> float:
    """r = force / rms_i |grad log p(x_i)| (root mean square over the n particles).

    ``scores`` is the global (n, d) array (the same bits on every rank, so r
    is too); 0 when force and scores are 0, infinite when a score is not finite.
    """
    # np.sum(scores * scores) bit for bit, in C: scores is a view into SVGD's row buffer
    score_rms = float(np.sqrt(sum_of_squares(scores) / scores.shape[0]))
    if not np.isfinite(score_rms):
        return np.inf
    return force / score_rms if score_rms > 0 else (0.0 if force == 0 else np.inf)


def anneal_beta(settings: Any, iteration: int) -> float:
    """Power of the likelihood in the scores of update ``iteration`` (0-based)."""
    a = settings.anneal_iterations
    return 1.0 if iteration >= a else iteration / a


def update_monitor(monitor: SVGDMonitor, iteration: int, rel: float, z: np.ndarray,
                   settings: Any) -> SVGDMonitor:
    """The monitor after update number ``iteration`` (1-based count of updates done).

    Parameters
    ----------
    monitor : SVGDMonitor
        Before this update.
    iteration : int
        Updates done, this one included.
    rel : float
        The net force r of this update (:func:`relative_to_score`).
    z : (n, d) array
        The global particles after the update.
    settings : SVGDSettings
    """
    window = settings.convergence_window
    rel_sum = monitor.rel_sum + rel
    if settings.tolerance <= 0 or iteration % window:
        return monitor._replace(rel_sum=rel_sum)
    z = np.ascontiguousarray(z)  # a view into SVGD's row buffer: reduce the usual layout's bits
    mean, sd = z.mean(axis=0), z.std(axis=0)
    converged_at = monitor.converged_at
    # the whole window at b = 1, and a previous boundary to compare with
    eligible = (converged_at < 0 and monitor.mean is not None
                and iteration >= settings.min_iterations
                and iteration - window >= settings.anneal_iterations)
    if eligible and _settled(rel_sum / window, mean, sd, monitor, settings.tolerance):
        converged_at = iteration
    return SVGDMonitor(0.0, mean, sd, converged_at)


def _settled(rel_mean: float, mean: np.ndarray, sd: np.ndarray, before: SVGDMonitor,
             tol: float) -> bool:
    if not (rel_mean <= tol and np.all(sd > 0) and np.all(before.sd > 0)):
        return False
    with np.errstate(all="ignore"):
        drift = np.abs(mean - before.mean) / sd
        spread = np.abs(np.log(sd / before.sd))
    return bool(np.all(drift <= tol) and np.all(spread <= tol))


def monitor_arrays(monitor: SVGDMonitor, d: int) -> dict[str, np.ndarray]:
    """The monitor as checkpoint arrays (NaN moments before the first boundary)."""
    nan = np.full(d, np.nan)
    return {"monitor_rel_sum": np.array([monitor.rel_sum]),
            "monitor_mean": nan if monitor.mean is None else monitor.mean,
            "monitor_sd": nan if monitor.sd is None else monitor.sd,
            "monitor_converged_at": np.array([monitor.converged_at], dtype=np.int64)}


def monitor_layout(d: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """Shapes and dtype kinds of :func:`monitor_arrays` (a checkpoint's layout)."""
    return {"monitor_rel_sum": ((1,), "f"), "monitor_mean": ((d,), "f"),
            "monitor_sd": ((d,), "f"), "monitor_converged_at": ((1,), "iu")}


def monitor_from_arrays(arrays: dict[str, np.ndarray]) -> SVGDMonitor:
    """Inverse of :func:`monitor_arrays` (a checkpoint without them: a new monitor)."""
    if "monitor_rel_sum" not in arrays:
        return new_monitor()
    mean, sd = np.array(arrays["monitor_mean"]), np.array(arrays["monitor_sd"])
    known = not np.all(np.isnan(mean))
    return SVGDMonitor(float(arrays["monitor_rel_sum"][0]), mean if known else None,
                       sd if known else None, int(arrays["monitor_converged_at"][0]))


def stranded_gap(d: int) -> float:
    """c = chi2_d(1 - STRANDED_PROBABILITY) / 2 (see the module doc)."""
    from scipy.stats import chi2

    return float(chi2.ppf(1.0 - STRANDED_PROBABILITY, d)) / 2.0


def end_of_run(settings: Any, monitor: SVGDMonitor, iteration: int, logp: np.ndarray,
               d: int) -> tuple[dict[str, Any], list[str]]:
    """Diagnostics and warnings of a finished run.

    Parameters
    ----------
    settings : SVGDSettings
    monitor : SVGDMonitor
        At the end of the run.
    iteration : int
        Updates done.
    logp : (n,) array
        Log density of the final particles (-inf: invalid, reported apart).
    d : int
        Number of parameters.

    Returns
    -------
    dict
        ``converged`` and ``converged_at`` (when ``tolerance`` > 0;
        ``converged_at`` None if not converged), ``stranded_particles`` and
        ``stranded_gap``.
    list of str
        Messages to warn with.
    """
    diagnostics: dict[str, Any] = {}
    messages = []
    if settings.tolerance > 0:
        done = monitor.converged_at >= 0
        diagnostics.update(converged=done, converged_at=monitor.converged_at if done else None)
        if not done:
            messages.append(
                f"svgd did not converge in {iteration} iterations (tolerance "
                f"{settings.tolerance:g}: the net force and the drift of the particles' "
                "means and spreads per window stayed above it); the particles may not represent "
                "the posterior yet: run more iterations (iterations), or check the "
                "svgd/diagnostics history (net_force)")
    gap = stranded_gap(d)
    finite = logp[np.isfinite(logp)]
    count = int(np.sum(finite < finite.max() - gap)) if finite.size else 0
    diagnostics.update(stranded_particles=count, stranded_gap=gap)
    # before the particles have settled, a spread over the prior is no sign of a second mode
    settled = settings.tolerance <= 0 or monitor.converged_at >= 0
    if settled and count > STRANDED_FRACTION * len(logp):
        messages.append(
            f"svgd: {count} of {len(logp)} particles end more than {gap:.3g} below the best "
            "particle's log density (exact draws of a unimodal posterior would be that far "
            f"below with probability {STRANDED_PROBABILITY:g}): they are probably stuck in a "
            "separate mode of little mass, which SVGD cannot leave; their share of the "
            "particles is not that mode's share of the posterior. Use parallel tempering "
            "(algorithm \"pt\", [pt]) for a posterior with separated modes")
    return diagnostics, messages
