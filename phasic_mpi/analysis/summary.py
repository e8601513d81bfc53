"""Posterior summaries and convergence diagnostics of a run file.

ESS and R-hat follow Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021),
"Rank-normalization, folding, and localization: an improved R-hat for
assessing convergence of MCMC", Bayesian Analysis 16(2); the numbers agree
with ``arviz.ess``/``arviz.rhat`` (method ``"bulk"``, ``"tail"``, ``"rank"``).
Only numpy and scipy are needed. :func:`format_comparison` sets several
runs side by side.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import fft, special, stats

from phasic_mpi.io.store import RunFile, read_run

__all__ = [
    "ParameterSummary",
    "Summary",
    "ess_bulk",
    "ess_tail",
    "format_comparison",
    "format_summary",
    "rhat",
    "summarize",
    "summarize_draws",
]

# The probabilities of the tables; study files store quantiles at the same ones.
from phasic_mpi.io.studyfile import QUANTILES  # noqa: E402
_MIN_DRAWS = 4


# --------------------------------------------------------------------------
# diagnostics on (chain, draw) arrays
# --------------------------------------------------------------------------


def _chains(x: Any) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"expected draws of shape (chain, draw), got {arr.shape}")
    return arr


def _split(x: np.ndarray) -> np.ndarray:
    """Split every chain into halves (the middle draw of an odd chain is dropped)."""
    half = x.shape[1] // 2
    return np.vstack([x[:, :half], x[:, x.shape[1] - half:]])


def _z_scale(x: np.ndarray) -> np.ndarray:
    """Rank-normalize jointly over all chains (average ranks, Blom offset 3/8)."""
    ranks = stats.rankdata(x, method="average").reshape(x.shape)
    return special.ndtri((ranks - 0.375) / (x.size + 0.25))


def _rhat_raw(x: np.ndarray) -> float:
    n = x.shape[1]
    within = np.mean(np.var(x, axis=1, ddof=1))
    between = n * np.var(np.mean(x, axis=1), ddof=1)
    if within == 0.0:
        return math.nan if between == 0.0 else math.inf
    return float(np.sqrt((between / within + n - 1) / n))


def _ess_raw(x: np.ndarray) -> float:
    """ESS of (chain, draw) draws with Geyer's initial monotone sequence."""
    n_chain, n_draw = x.shape
    if np.ptp(x) < np.finfo(float).resolution:
        return float(x.size)  # constant: every draw is as good as independent (ArviZ's convention)
    m = fft.next_fast_len(2 * n_draw)
    centred = x - x.mean(axis=1, keepdims=True)
    spec = np.fft.rfft(centred, n=m, axis=1)
    acov = np.fft.irfft(spec * np.conjugate(spec), n=m, axis=1)[:, :n_draw] / n_draw
    mean_acov = acov.mean(axis=0)
    mean_var = mean_acov[0] * n_draw / (n_draw - 1.0)
    var_plus = mean_var * (n_draw - 1.0) / n_draw
    if n_chain > 1:
        var_plus += np.var(x.mean(axis=1), ddof=1)
    rho = np.zeros(n_draw)
    rho_even, rho_odd = 1.0, 1.0 - (mean_var - mean_acov[1]) / var_plus
    rho[0], rho[1] = rho_even, rho_odd
    # Geyer's initial positive sequence
    t = 1
    while t < n_draw - 3 and rho_even + rho_odd > 0.0:
        rho_even = 1.0 - (mean_var - mean_acov[t + 1]) / var_plus
        rho_odd = 1.0 - (mean_var - mean_acov[t + 2]) / var_plus
        if rho_even + rho_odd >= 0:
            rho[t + 1], rho[t + 2] = rho_even, rho_odd
        t += 2
    max_t = t - 2
    if rho_even > 0:
        rho[max_t + 1] = rho_even
    # ... made monotone
    t = 1
    while t <= max_t - 2:
        if rho[t + 1] + rho[t + 2] > rho[t - 1] + rho[t]:
            rho[t + 1] = rho[t + 2] = (rho[t - 1] + rho[t]) / 2.0
        t += 2
    tau = -1.0 + 2.0 * np.sum(rho[: max_t + 1]) + np.sum(rho[max_t + 1: max_t + 2])
    tau = max(tau, 1.0 / np.log10(x.size))
    return math.nan if np.isnan(rho).any() else float(x.size / tau)


def _undefined(x: np.ndarray) -> bool:
    return x.shape[1] < _MIN_DRAWS or bool(np.isnan(x).any())


def rhat(draws: Any) -> float:
    """Rank-normalized split-R-hat (max of bulk and folded-tail R-hat).

    Parameters
    ----------
    draws : array_like (chain, draw) or (draw,)
        With one chain this is the split-R-hat of its two halves.

    Returns
    -------
    float
        NaN with fewer than 4 draws, with NaN draws or for constant draws;
        ``inf`` when every split chain is constant but they differ.
    """
    x = _chains(draws)
    if _undefined(x):
        return math.nan
    with np.errstate(all="ignore"):
        s = _split(x)
        bulk = _rhat_raw(_z_scale(s))
        tail = _rhat_raw(_z_scale(np.abs(s - np.median(s))))
    defined = [r for r in (bulk, tail) if not math.isnan(r)]
    return max(defined) if defined else math.nan


def ess_bulk(draws: Any) -> float:
    """Bulk effective sample size (rank-normalized split chains)."""
    x = _chains(draws)
    if _undefined(x):
        return math.nan
    with np.errstate(all="ignore"):
        return _ess_raw(_z_scale(_split(x)))


def ess_tail(draws: Any, prob: float = 0.05) -> float:
    """Tail effective sample size: min ESS of the ``prob`` and ``1 - prob`` quantile indicators."""
    x = _chains(draws)
    if _undefined(x):
        return math.nan
    with np.errstate(all="ignore"):
        out = [_ess_raw(_split((x <= np.quantile(x, q)).astype(np.float64)))
               for q in (prob, 1.0 - prob)]
    return min(out)


# --------------------------------------------------------------------------
# summaries of a run file
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ParameterSummary:
    """Posterior summary of one scalar parameter."""

    name: str
    mean: float
    sd: float
    quantiles: tuple[float, ...]  # at QUANTILES
    ess_bulk: float
    ess_tail: float
    rhat: float


@dataclass(frozen=True)
class Summary:
    """Everything ``phasic-mpi summary`` prints.

    ``rhat`` is NaN where undefined (fewer than 4 draws, constant draws, or
    independent draws such as SVGD particles, for which ESS = number of draws).
    ``diagnostics`` are the attributes of ``<algorithm>/diagnostics``;
    ``last_values`` holds, for each 1-D history dataset in that group, its
    last non-NaN value as ``(value, row number counted from 1, rows)``.
    """

    path: str
    algorithm: str
    n_chains: int
    n_draws: int
    draws_are_independent: bool
    parameters: tuple[ParameterSummary, ...]
    run_info: dict[str, Any] = field(default_factory=dict)
    observations: dict[str, int] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    last_values: dict[str, tuple[Any, int, int]] = field(default_factory=dict)
    true_values: dict[str, float] = field(default_factory=dict)  # θ that simulated the data


def summarize_draws(name: str, draws: Any, *, independent: bool = False) -> ParameterSummary:
    """Summary of one parameter's ``(chain, draw)`` array."""
    x = _chains(draws)
    flat = x.ravel()
    with np.errstate(all="ignore"):
        mean = float(np.mean(flat)) if flat.size else math.nan
        sd = float(np.std(flat, ddof=1)) if flat.size > 1 else math.nan
        qs = tuple(map(float, np.quantile(flat, QUANTILES))) if flat.size else (math.nan,) * 5
    if independent:
        n = float(flat.size)
        return ParameterSummary(name, mean, sd, qs, n, n, math.nan)
    return ParameterSummary(name, mean, sd, qs, ess_bulk(x), ess_tail(x), rhat(x))


def summarize(run: str | os.PathLike | RunFile) -> Summary:
    """Summarize the posterior and run diagnostics of a run file.

    Parameters
    ----------
    run : path or RunFile

    Raises
    ------
    ValueError
        If the file has no posterior draws yet (e.g. the run did not finish).
    """
    rf = run if isinstance(run, RunFile) else read_run(run)
    post = rf.posterior()
    if not post:
        raise ValueError(f"{rf.path!r} has no posterior draws (did the run finish?)")
    independent = bool(rf.group_attrs("posterior").get("draws_are_independent", False))
    names = [n for n in rf.param_names if n in post]
    names += [n for n, a in post.items() if n not in names and a.ndim == 2]
    params = tuple(summarize_draws(n, post[n], independent=independent) for n in names)
    n_chains, n_draws = post[names[0]].shape[:2] if names else (0, 0)

    obs = rf.read_group("observed_data")
    counts = {k: int(obs[k].size) for k in ("exact", "right_censored", "interval_lo") if k in obs}
    hidden = {"config", "param_names"}
    info = {k: v for k, v in rf.attrs.items() if k not in hidden}

    last: dict[str, tuple[Any, int, int]] = {}
    prefix = f"{rf.algorithm}/diagnostics/"
    for name, rows in rf.rows().items():
        leaf = name[len(prefix):]
        if name.startswith(prefix) and "/" not in leaf and rows > 0:
            hist = rf.history(name)
            if hist.ndim != 1:
                continue
            # series computed every k-th iteration hold NaN in between: report the last value
            ok = np.flatnonzero(~np.isnan(hist)) if hist.dtype.kind in "fc" else [rows - 1]
            if len(ok):
                last[leaf] = (hist[ok[-1]].item(), int(ok[-1]) + 1, rows)
    return Summary(
        path=rf.path, algorithm=rf.algorithm, n_chains=int(n_chains), n_draws=int(n_draws),
        draws_are_independent=independent, parameters=params, run_info=info,
        observations={"interval" if k == "interval_lo" else k: v for k, v in counts.items()},
        diagnostics=rf.diagnostics(), last_values=last, true_values=_true_values(rf),
    )


def _true_values(rf: RunFile) -> dict[str, float]:
    """The θ that simulated the data, when the run's config says so."""
    simulate = ((rf.config or {}).get("data") or {}).get("simulate") or {}
    theta = simulate.get("theta")
    if not isinstance(theta, list) or len(theta) != len(rf.param_names):
        return {}
    return dict(zip(rf.param_names, map(float, theta)))


# --------------------------------------------------------------------------
# text
# --------------------------------------------------------------------------

_DASH = "\u2014"


def _num(x: Any) -> str:
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        return _DASH if math.isnan(x) else f"{x:.4g}"
    if isinstance(x, (dict, list)):
        return json.dumps(x)
    return str(x)


def _convergence_lines(diag: dict[str, Any]) -> list[str]:
    """What the run's own checks said (SVGD: convergence, stranded particles)."""
    lines = []
    at = diag.get("converged_at")
    if diag.get("converged") is True:
        lines.append("converged" + (f" at iteration {at}" if at is not None else ""))
    elif diag.get("converged") is False:
        lines.append("NOT converged: the convergence check never passed "
                     "(see net_force below)")
    if diag.get("stranded_particles"):
        lines.append(f"{diag['stranded_particles']} particles more than "
                     f"{_num(diag.get('stranded_gap'))} below the best log density: "
                     "a separate mode? check with parallel tempering")
    return lines


def format_summary(summary: Summary) -> str:
    """Render a :class:`Summary` as a plain-text report (ends with a newline)."""
    s = summary
    chains = f"{s.n_chains} chain{'s' * (s.n_chains != 1)}"
    lines = [f"{os.path.basename(s.path)}: {s.algorithm}, {chains} x {s.n_draws} draws"]
    if s.draws_are_independent:
        lines.append("draws are independent (particles): "
                     "ESS = number of draws, R-hat not applicable")
    lines += _convergence_lines(s.diagnostics)
    if s.observations:
        kinds = {"right_censored": "right-censored", "interval": "interval-censored"}
        lines.append("observations: " + ", ".join(
            f"{n} {kinds.get(k, k)}" for k, n in s.observations.items()))
    lines.append("")
    truth = ["true"] if s.true_values else []
    head = ["parameter", *truth, "mean", "sd", *(f"{100 * q:g}%" for q in QUANTILES),
            "ess_bulk", "ess_tail", "r_hat"]
    rows = [head]
    for p in s.parameters:
        ess = [_DASH if math.isnan(e) else f"{e:.0f}" for e in (p.ess_bulk, p.ess_tail)]
        true = [_num(s.true_values[p.name])] if s.true_values else []
        rows.append([p.name, *true, _num(p.mean), _num(p.sd), *map(_num, p.quantiles), *ess,
                     _DASH if math.isnan(p.rhat) else f"{p.rhat:.3f}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())

    def block(title: str, items: dict[str, str]) -> None:
        if items:
            lines.extend(["", title])
            width = max(map(len, items))
            lines.extend(f"  {k.ljust(width)}  {v}" for k, v in items.items())

    block(f"run diagnostics ({s.algorithm}/diagnostics)",
          {k: _num(v) for k, v in s.diagnostics.items()})
    block("last recorded values", {k: f"{_num(v)}  (row {i} of {n})" for k, (v, i, n) in
                                   s.last_values.items()})
    block("run", {k: _num(v) for k, v in s.run_info.items()})
    return "\n".join(lines) + "\n"


def _labels(summaries: list[Summary]) -> list[str]:
    """Column labels: the algorithms if they differ, else the file stems (made unique)."""
    labels = [s.algorithm or "?" for s in summaries]
    if len(set(labels)) < len(labels):
        labels = [os.path.splitext(os.path.basename(s.path))[0] for s in summaries]
    seen: dict[str, int] = {}
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
    count: dict[str, int] = {}
    out = []
    for label in labels:
        if seen[label] > 1:  # same stem in different directories
            count[label] = count.get(label, 0) + 1
            label = f"{label} ({count[label]})"
        out.append(label)
    return out


def format_comparison(summaries: list[Summary] | tuple[Summary, ...]) -> str:
    """Posterior ``mean ± sd`` of several runs side by side (ends with a newline).

    One row per parameter (in order of first appearance), a ``true`` column if
    any run knows the θ that simulated its data (the first run's value is
    shown), then one column per run, labelled by its algorithm, or by its file
    stem when the algorithms coincide. A parameter a run lacks shows ``—``.
    """
    summaries = list(summaries)
    labels = _labels(summaries)
    names: list[str] = []
    for s in summaries:
        names += [p.name for p in s.parameters if p.name not in names]
    truth: dict[str, float] = {}
    for s in summaries:
        for name, value in s.true_values.items():
            truth.setdefault(name, value)
    by_run = [{p.name: p for p in s.parameters} for s in summaries]

    def cell(p: ParameterSummary | None) -> str:
        return _DASH if p is None else f"{_num(p.mean)} \u00b1 {_num(p.sd)}"

    head = ["parameter", *(["true"] if truth else []), *labels]
    rows = [head] + [[name, *([_num(truth[name]) if name in truth else _DASH]
                              if truth else []),
                      *(cell(run.get(name)) for run in by_run)] for name in names]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["comparison (posterior mean \u00b1 sd)"]
    lines += [f"  {label}: {s.path}" for label, s in zip(labels, summaries)]
    lines.append("")
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"
