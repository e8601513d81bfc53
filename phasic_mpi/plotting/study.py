"""Figures of a study file: coverage per factor, SBC histograms, error vs sample size.

Read only the study file (no MPI). Each function returns the path written or
``None`` when its figure does not apply (a note on stderr says why).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from scipy import stats

from phasic_mpi.plotting._style import (
    CHAIN_COLORS,
    DEFAULT_DPI,
    grid_shape,
    hide_unused,
    note,
    save,
    styled,
    subplots,
)
from phasic_mpi.io.studyfile import DONE, StudyFile, read_study
from phasic_mpi.analysis.studyreport import calibration, sbc_histogram

__all__ = ["plot_coverage", "plot_error_vs_size", "plot_sbc", "plot_study", "plot_time"]

_SIZE_KEYS = ("data.simulate.n",)


def _method_factor(sf: StudyFile) -> int | None:
    return next((i for i, (name, _) in enumerate(sf.factors) if name == "method"), None)


def _groups(sf: StudyFile) -> list[tuple[str, np.ndarray]]:
    """(label, cell mask) per method, or one group of all cells."""
    done = sf.status == DONE
    method = _method_factor(sf)
    if method is None:
        return [("all cells", done)]
    return [(label, done & (sf.cells["grid_index"][:, method] == i))
            for i, label in enumerate(sf.factor_labels(method))]


def _has_truth(sf: StudyFile) -> bool:
    return bool(np.isfinite(sf.cells["truth"][sf.status == DONE]).any())


@styled
def plot_coverage(sf: StudyFile, out_dir: str, dpi: int = DEFAULT_DPI) -> str | None:
    """Empirical coverage of each credible level per factor value, with 95 % intervals."""
    name = os.path.basename(sf.path)
    if not _has_truth(sf):
        note(name, "coverage skipped: no cell knows its true θ")
        return None
    factors = list(range(len(sf.factors))) or [None]
    panels = [(f, j) for j in range(len(sf.param_names)) for f in factors]
    rows, cols = grid_shape(len(panels), max_cols=max(1, len(factors)))
    fig, axes = subplots(rows, cols, panel=(3.8, 3.0))
    for ax, (factor, j) in zip(axes.ravel(), panels):
        labels = ["all"] if factor is None else sf.factor_labels(factor)
        x = np.arange(len(labels))
        for m, level in enumerate(sf.levels):
            color = CHAIN_COLORS[m % len(CHAIN_COLORS)]
            shift = (m - (len(sf.levels) - 1) / 2) * 0.2
            cov, lo, hi = [], [], []
            for i in range(len(labels)):
                sel = sf.status == DONE
                if factor is not None:
                    sel = sel & (sf.cells["grid_index"][:, factor] == i)
                c = [c for c in calibration(sf, sel) if c.level == level][j]
                interval = c.interval()
                cov.append(c.coverage)
                lo.append(c.coverage - interval[0])
                hi.append(interval[1] - c.coverage)
            ax.errorbar(x + shift, cov, yerr=[lo, hi], fmt="o", color=color, capsize=3,
                        markersize=4, label=f"{level:g} credible interval")
            ax.axhline(level, color=color, linestyle=":", linewidth=1.2)
        ax.set_xticks(x, labels, rotation=30 if max(map(len, labels)) > 6 else 0)
        ax.set_xlim(-0.6, len(labels) - 0.4)
        ax.set_ylim(min(0.0, min(sf.levels) - 0.3), 1.02)
        ax.set_xlabel("all cells" if factor is None else sf.factors[factor][0])
        ax.set_ylabel(f"coverage of {sf.param_names[j]}")
    hide_unused(axes, len(panels))
    return save(fig, out_dir, "study_coverage", dpi, legend_from=axes.ravel()[0],
                title="Coverage of the true θ (dotted: nominal; bars: 95 % Clopper–Pearson)")


@styled
def plot_sbc(sf: StudyFile, out_dir: str, dpi: int = DEFAULT_DPI, bins: int = 10) -> str | None:
    """SBC rank histograms per parameter (and method), with the 99 % band of a uniform rank."""
    name = os.path.basename(sf.path)
    if not _has_truth(sf):
        note(name, "SBC histograms skipped: no cell knows its true θ")
        return None
    groups = _groups(sf)
    panels = [(g, j) for j in range(len(sf.param_names)) for g in range(len(groups))]
    rows, cols = grid_shape(len(panels), max_cols=max(len(groups), 1))
    fig, axes = subplots(rows, cols, panel=(3.8, 2.8))
    centres = (np.arange(bins) + 0.5) / bins
    for ax, (g, j) in zip(axes.ravel(), panels):
        label, sel = groups[g]
        counts, expected, p = sbc_histogram(sf, j, sel, bins)
        total = int(counts.sum())
        ax.bar(centres, counts, width=1.0 / bins, color="0.6", edgecolor="white", label="cells")
        if total:
            lo = stats.binom.ppf(0.005, total, expected / total)
            hi = stats.binom.ppf(0.995, total, expected / total)
            ax.fill_between(np.repeat(np.linspace(0, 1, bins + 1), 2)[1:-1], np.repeat(lo, 2),
                            np.repeat(hi, 2), color=CHAIN_COLORS[0], alpha=0.2,
                            label="99 % range if calibrated")
            ax.step(np.linspace(0, 1, bins + 1), np.append(expected, expected[-1]),
                    where="post", color=CHAIN_COLORS[0], linewidth=1.2, label="expected")
        p_text = "" if np.isnan(p) else f", χ² p = {p:.2g}"
        ax.set_title(f"{sf.param_names[j]} — {label} ({total} cells{p_text})")
        ax.set_xlabel("normalised rank of the truth among posterior draws")
        ax.set_ylabel("cells")
        ax.set_xlim(0, 1)
    hide_unused(axes, len(panels))
    return save(fig, out_dir, "study_sbc", dpi, legend_from=axes.ravel()[0],
                title="Simulation-based calibration: ranks of the truth "
                      "(∪: too narrow, ∩: too wide, slope: biased)")


def _size_factor(sf: StudyFile) -> int | None:
    """The factor that is the sample size (or else the first numeric one)."""
    for keys in (_SIZE_KEYS, None):
        for i, (factor, values) in enumerate(sf.factors):
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            if numeric and len(values) > 1 and (keys is None or factor in keys):
                return i
    return None


@styled
def plot_error_vs_size(sf: StudyFile, out_dir: str, dpi: int = DEFAULT_DPI) -> str | None:
    """RMSE, |bias| and mean posterior sd against the sample size (log-log), per method."""
    name = os.path.basename(sf.path)
    size = _size_factor(sf)
    if size is None or not _has_truth(sf):
        note(name, "error vs sample size skipped: "
                   + ("no numeric grid factor" if size is None else "no true θ"))
        return None
    sizes = np.asarray(sf.factors[size][1], dtype=float)
    method = _method_factor(sf)
    methods = [None] if method is None else list(range(len(sf.factors[method][1])))
    d = len(sf.param_names)
    rows, cols = grid_shape(d)
    fig, axes = subplots(rows, cols, panel=(5.5, 4.2))
    for j, ax in enumerate(axes.ravel()[:d]):
        for k, m in enumerate(methods):
            color = CHAIN_COLORS[k % len(CHAIN_COLORS)]
            label = "" if m is None else sf.factor_labels(method)[m] + ": "
            rmse, bias, sd = [], [], []
            for i in range(len(sizes)):
                sel = sf.cells["grid_index"][:, size] == i
                if m is not None:
                    sel &= sf.cells["grid_index"][:, method] == m
                known = sel & (sf.status == DONE) & np.isfinite(sf.cells["truth"][:, j])
                err = sf.cells["mean"][known, j] - sf.cells["truth"][known, j]
                rmse.append(np.sqrt(np.mean(err ** 2)) if err.size else np.nan)
                bias.append(abs(np.mean(err)) if err.size else np.nan)
                sd.append(np.mean(sf.cells["sd"][known, j]) if err.size else np.nan)
            ax.plot(sizes, rmse, "o-", color=color, label=f"{label}RMSE")
            ax.plot(sizes, sd, "s--", color=color, alpha=0.7, label=f"{label}mean posterior sd")
            ax.plot(sizes, bias, "^:", color=color, alpha=0.7, label=f"{label}|bias|")
        ref = np.nanmax(ax.get_lines()[0].get_ydata())
        ax.plot(sizes, ref * np.sqrt(sizes[0] / sizes), color="0.3", linewidth=0.8,
                label="∝ 1/√n")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sizes, [f"{v:g}" for v in sizes])
        ax.minorticks_off()
        ax.set_xlabel(sf.factors[size][0])
        ax.set_ylabel(f"error of {sf.param_names[j]}")
        ax.legend(fontsize=7, ncol=1 if len(methods) == 1 else 2, loc="best")
    hide_unused(axes, d)
    return save(fig, out_dir, "study_error", dpi,
                title="Posterior-mean error against sample size")


@styled
def plot_time(sf: StudyFile, out_dir: str, dpi: int = DEFAULT_DPI) -> str | None:
    """Wall time per cell for each value of each factor (box plots)."""
    done = (sf.status == DONE) & np.isfinite(sf.wall_time_s)
    if not done.any() or not sf.factors:
        note(os.path.basename(sf.path), "time skipped: no finished cells or no factors")
        return None
    rows, cols = grid_shape(len(sf.factors))
    fig, axes = subplots(rows, cols, panel=(3.8, 3.0))
    for f, ax in enumerate(axes.ravel()[:len(sf.factors)]):
        labels = sf.factor_labels(f)
        data = [sf.wall_time_s[done & (sf.cells["grid_index"][:, f] == i)] for i in
                range(len(labels))]
        ax.boxplot([x if x.size else [np.nan] for x in data], showfliers=True)
        ax.set_xticks(np.arange(1, len(labels) + 1), labels)
        ax.set_xlabel(sf.factors[f][0])
        ax.set_ylabel("wall time per cell (s)")
    hide_unused(axes, len(sf.factors))
    return save(fig, out_dir, "study_time", dpi, title="Cost per cell")


def plot_study(path: str | os.PathLike, out_dir: str | os.PathLike,
               dpi: int = DEFAULT_DPI) -> list[str]:
    """Write every figure of a study file that applies; returns the paths."""
    sf = read_study(path)
    out = os.fspath(out_dir)
    written: list[Any] = [plot_coverage(sf, out, dpi), plot_sbc(sf, out, dpi),
                          plot_error_vs_size(sf, out, dpi), plot_time(sf, out, dpi)]
    return [p for p in written if p is not None]
