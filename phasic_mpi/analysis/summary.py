"""Posterior summaries and convergence diagnostics of a run file.

ESS, R-hat and Monte Carlo standard errors are ArviZ's (see
:mod:`phasic_mpi.analysis.diagnostics`, which imports ArviZ only when first
needed). Families of parameters (a posterior variable with dimensions, or
scalars named ``<base>_<i>[_<j>...]``, e.g. a network's ``w1_0_0`` ...) with
more than :data:`GROUP_MIN` entries are summarized as one row each (the
norm's quantiles, the worst diagnostics and a count of flagged entries), so
a model with thousands of weights prints a readable table.
:func:`format_comparison` sets several runs side by side.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from phasic_mpi.analysis.diagnostics import (
    convergence_warnings,
    diagnose,
    ess_bulk,
    ess_tail,
    flagged,
    rhat,
    sampling_round_trips,
)
from phasic_mpi.errors import RunFileError
from phasic_mpi.io.runfile import RunFile, read_run

# The probabilities of the tables; study files store quantiles at the same ones.
from phasic_mpi.io.studyfile import QUANTILES  # noqa: E402

__all__ = [
    "GROUP_MIN",
    "GroupSummary",
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

#: A family of parameters with more entries than this is one row of the table.
GROUP_MIN = 10
#: Quantiles of a family's Euclidean norm over the draws.
NORM_QUANTILES = (0.05, 0.5, 0.95)
_FAMILY = re.compile(r"^(?P<base>.*?[^_\d].*?)_(?P<index>\d+(?:_\d+)*)$")


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
    mcse_mean: float = math.nan
    mcse_sd: float = math.nan


@dataclass(frozen=True)
class GroupSummary:
    """Summary of a family of parameters (a vector or matrix of them).

    ``norm_quantiles`` are quantiles (at :data:`NORM_QUANTILES`) over the
    draws of the Euclidean norm of the family; ``n_flagged`` counts entries
    with R-hat > 1.01 or a bulk ESS below 100 per chain (the tail ESS, a
    second pass over every entry, is left to ``--all``).
    """

    name: str
    size: int
    norm_quantiles: tuple[float, ...]
    ess_bulk_min: float
    rhat_max: float
    n_flagged: int


@dataclass(frozen=True)
class Summary:
    """Everything ``phasic-mpi summary`` prints.

    ``rhat`` is NaN where undefined (fewer than 4 draws, one chain, constant
    draws, or independent draws such as SVGD particles, for which ESS =
    number of draws). ``diagnostics`` are the attributes of
    ``<algorithm>/diagnostics``; ``last_values`` holds, for each 1-D history
    dataset in that group, its last non-NaN value as ``(value, row number
    counted from 1, rows)``. ``groups`` summarize the families of parameters
    not listed one by one; ``warnings`` are the convergence problems found.
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
    groups: tuple[GroupSummary, ...] = ()
    warnings: tuple[str, ...] = ()
    terms: tuple[str, ...] = ()  # one line per stored likelihood term (SFS, moments)


def _moments(name: str, x: np.ndarray, stats: dict[str, Any]) -> ParameterSummary:
    flat = x.ravel()
    with np.errstate(all="ignore"):
        mean = float(np.mean(flat)) if flat.size else math.nan
        sd = float(np.std(flat, ddof=1)) if flat.size > 1 else math.nan
        qs = (tuple(map(float, np.quantile(flat, QUANTILES))) if flat.size
              else (math.nan,) * len(QUANTILES))
    return ParameterSummary(name, mean, sd, qs, *(float(stats[k]) for k in (
        "ess_bulk", "ess_tail", "rhat", "mcse_mean", "mcse_sd")))


def summarize_draws(name: str, draws: Any, *, independent: bool = False) -> ParameterSummary:
    """Summary of one parameter's ``(chain, draw)`` (or ``(draw,)``) array."""
    x = np.asarray(draws, dtype=np.float64)
    x = x[None, :] if x.ndim == 1 else x
    if x.ndim != 2:
        raise ValueError(f"expected draws of shape (chain, draw), got {x.shape}")
    return _moments(name, x, diagnose({name: x}, independent=independent)[name])


def _families(names: list[str], post: dict[str, np.ndarray]) -> dict[str, list[str]]:
    """Families with more than GROUP_MIN entries: base name -> member names."""
    found: dict[str, list[str]] = {}
    for name in names:
        if post[name].ndim > 2:
            found[name] = [name]
        else:
            m = _FAMILY.match(name)
            if m:
                found.setdefault(m["base"], []).append(name)
    return {base: members for base, members in found.items()
            if sum(post[m][0, 0].size for m in members) > GROUP_MIN}


def _group(base: str, members: list[str], post: dict[str, np.ndarray],
           stats: dict[str, dict[str, np.ndarray]], n_chains: int) -> GroupSummary:
    n_chain, n_draw = post[members[0]].shape[:2]
    values = np.concatenate([post[m].reshape(n_chain * n_draw, -1) for m in members], axis=1)
    every = {k: np.concatenate([np.ravel(stats[m][k]) for m in members])
             for k in ("ess_bulk", "ess_tail", "rhat")}  # ess_tail: NaN, not computed
    with np.errstate(all="ignore"):
        norms = np.linalg.norm(values, axis=1)
        qs = tuple(map(float, np.quantile(norms, NORM_QUANTILES))) if norms.size else \
            (math.nan,) * len(NORM_QUANTILES)
    def extreme(arr: np.ndarray, fn: Any) -> float:
        arr = arr[~np.isnan(arr)]
        return float(fn(arr)) if arr.size else math.nan

    return GroupSummary(base, int(values.shape[1]), qs, extreme(every["ess_bulk"], np.min),
                        extreme(every["rhat"], np.max),
                        int(np.sum(flagged(every, n_chains))))


def _open(run: str | os.PathLike | RunFile) -> RunFile:
    if isinstance(run, RunFile):
        return run
    try:
        return read_run(run)
    except FileNotFoundError:
        raise RunFileError(f"{os.fspath(run)}: no such run file") from None
    except (OSError, ValueError) as exc:
        raise RunFileError(f"{os.fspath(run)}: not a phasic_mpi run file "
                           f"({exc.__class__.__name__}: {exc})") from None


def summarize(run: str | os.PathLike | RunFile, *, group: bool = True) -> Summary:
    """Summarize the posterior and run diagnostics of a run file.

    Parameters
    ----------
    run : path or RunFile
    group : bool
        Summarize families of more than :data:`GROUP_MIN` parameters as one
        row each (default); ``False`` lists every parameter.

    Raises
    ------
    RunFileError
        If the file cannot be read as a run file, or has no posterior draws
        yet (e.g. the run did not finish).
    """
    rf = _open(run)
    post = rf.posterior()
    if not post:
        raise RunFileError(f"{rf.path}: no posterior draws (did the run finish?)")
    independent = bool(rf.group_attrs("posterior").get("draws_are_independent", False))
    # the posterior's variables in parameter order (a family as one array variable)
    names = [v for v, _, _ in rf.param_layout().variables if v in post]
    names += [n for n, a in post.items() if n not in names and a.ndim >= 2]
    n_chains, n_draws = post[names[0]].shape[:2] if names else (0, 0)
    families = _families(names, post) if group else {}
    grouped = {m for members in families.values() for m in members}
    # a family's row needs only what flags an entry: bulk ESS and R-hat
    stats = {**diagnose({n: post[n] for n in names if n not in grouped}, independent=independent),
             **diagnose({n: post[n] for n in names if n in grouped}, independent=independent,
                        statistics=("ess_bulk", "rhat"))}
    stats = {n: stats[n] for n in names}
    params = []
    for name in names:
        if name in grouped:
            continue
        x = post[name].reshape(n_chains, n_draws, -1)
        for j in range(x.shape[2]):  # entries of a small array variable as name[i,j]
            index = np.unravel_index(j, post[name].shape[2:])
            label = name if post[name].ndim == 2 else f"{name}[{','.join(map(str, index))}]"
            entry = {k: np.ravel(v)[j] for k, v in stats[name].items()}
            params.append(_moments(label, x[:, :, j], entry))
    groups = tuple(_group(base, members, post, stats, int(n_chains))
                   for base, members in families.items())
    found = convergence_warnings(stats=stats, n_chains=int(n_chains), independent=independent,
                                 round_trips=_sampling_round_trips(rf))
    return Summary(
        path=rf.path, algorithm=rf.algorithm, n_chains=int(n_chains), n_draws=int(n_draws),
        draws_are_independent=independent, parameters=tuple(params),
        run_info={k: v for k, v in rf.attrs.items() if k not in {"config", "param_names"}},
        observations=_observation_counts(rf), diagnostics=rf.diagnostics(),
        last_values=_last_values(rf), true_values=_true_values(rf), groups=groups,
        warnings=tuple(found), terms=_term_lines(rf),
    )


def _term_lines(rf: RunFile) -> tuple[str, ...]:
    """What each stored likelihood term observed, from ``model/terms`` and ``observed_data``."""
    obs = rf.read_group("observed_data")
    lines = []
    for a in rf.term_attrs():
        name = str(a.get("variable"))
        values = obs.get(name, np.zeros(0))
        if a.get("term") == "sfs":
            mut = (f"theta_mut = {a['theta_mut']:.6g}" if "theta_mut" in a else
                   f"theta_mut the parameter {a['theta_mut_param']}"
                   if "theta_mut_param" in a else "free of theta_mut")
            lines.append(f"{name}: {'folded' if a.get('folded') else 'unfolded'} SFS, "
                         f"{values.size} classes, {values.sum():.0f} segregating sites over "
                         f"{a.get('n_loci', 1)} loci, {a.get('likelihood')} likelihood, {mut}")
        else:
            se = obs.get(f"{name}_se", np.full(values.size, np.nan))
            shown = ", ".join(f"{v:.4g} ± {e:.2g}" for v, e in zip(values[:4], se[:4]))
            lines.append(f"{name}: {values.size} observed {a.get('kind')}"
                         f"{'s' * (values.size != 1)} ({shown}{', ...' * (values.size > 4)})")
    return tuple(lines)


def _observation_counts(rf: RunFile) -> dict[str, int]:
    obs = rf.read_group("observed_data")
    counts = {k: int(obs[k].size) for k in ("exact", "right_censored", "interval_lo") if k in obs}
    return {"interval" if k == "interval_lo" else k: v for k, v in counts.items()}


def _last_values(rf: RunFile) -> dict[str, tuple[Any, int, int]]:
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
    return last


def _sampling_round_trips(rf: RunFile) -> np.ndarray | None:
    """Parallel tempering: round trips per chain in the rounds after warm-up."""
    rows = rf.rows()
    if rows.get("pt/round_trips", 0) == 0 or rows.get("pt/round", 0) == 0:
        return None
    warmup = ((rf.config or {}).get("pt") or {}).get("warmup_rounds", 0)
    return sampling_round_trips(rf.history("pt/round"), rf.history("pt/round_trips"), warmup)


def _true_values(rf: RunFile) -> dict[str, float]:
    """The θ that simulated the data, when the run's config says so."""
    from phasic_mpi.analysis.truth import true_values

    return true_values(rf.config, tuple(rf.param_names))


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
    lines += [f"likelihood term {line}" for line in s.terms]
    lines.append("")
    lines += _table(s)
    if s.groups:
        lines += ["", f"parameter families (more than {GROUP_MIN} entries; "
                      "`phasic-mpi summary --all` lists every entry)"] + _group_table(s)
    if s.warnings:
        lines += ["", "warnings"] + [f"  ! {w}" for w in s.warnings]

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


def _aligned(rows: list[list[str]]) -> list[str]:
    """Rows as lines: the first column left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in
                                                  zip(r[1:], widths[1:])]).rstrip()
            for r in rows]


def _ess(x: float) -> str:
    return _DASH if math.isnan(x) else f"{x:.0f}"


def _rhat(x: float) -> str:
    return _DASH if math.isnan(x) else f"{x:.3f}"


def _table(s: Summary) -> list[str]:
    truth = ["true"] if s.true_values else []
    head = ["parameter", *truth, "mean", "sd", *(f"{100 * q:g}%" for q in QUANTILES),
            "mcse_mean", "mcse_sd", "ess_bulk", "ess_tail", "r_hat"]
    rows = [head]
    for p in s.parameters:
        true = [_num(s.true_values.get(p.name, math.nan))] if s.true_values else []
        rows.append([p.name, *true, _num(p.mean), _num(p.sd), *map(_num, p.quantiles),
                     _num(p.mcse_mean), _num(p.mcse_sd), _ess(p.ess_bulk), _ess(p.ess_tail),
                     _rhat(p.rhat)])
    return _aligned(rows) if s.parameters else []


def _group_table(s: Summary) -> list[str]:
    head = ["family", "entries", *(f"|.| {100 * q:g}%" for q in NORM_QUANTILES),
            "min ess_bulk", "max r_hat", "flagged"]
    rows = [head] + [[g.name, str(g.size), *map(_num, g.norm_quantiles), _ess(g.ess_bulk_min),
                      _rhat(g.rhat_max), str(g.n_flagged)]
                     for g in s.groups]
    return _aligned(rows)


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
    lines = ["comparison (posterior mean \u00b1 sd)"]
    lines += [f"  {label}: {s.path}" for label, s in zip(labels, summaries)]
    lines.append("")
    lines += _aligned(rows)
    return "\n".join(lines) + "\n"
