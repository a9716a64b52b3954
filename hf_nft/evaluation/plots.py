"""Plotting a protection report's attack curves to PNG (matplotlib's Agg canvas; pyplot is not touched)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from hf_nft.attacks.files import atomic_path

if TYPE_CHECKING:
    from hf_nft.evaluation.report import ProtectionReport

COLORS = {"protected": "tab:red", "unprotected": "tab:blue", "scratch": "tab:gray"}
COLUMNS = 3


def plot_report(report: ProtectionReport, path: str | Path) -> None:
    """One panel per attack: each model role's mean curve with a ±1 std band; the headline is starred."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(report.results)
    rows = math.ceil(len(names) / COLUMNS)
    figure = Figure(figsize=(4.2 * COLUMNS, 3.2 * rows))
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, COLUMNS, squeeze=False, sharey=True)
    headline = report.headline["attack"]
    for axis, name in zip(axes.flat, names):
        for role, outcome in report.results[name].items():
            mean, std = outcome.mean_curve, outcome.std_curve
            axis.plot(outcome.steps, mean, label=role, color=COLORS.get(role))
            low = [m - s for m, s in zip(mean, std)]
            high = [m + s for m, s in zip(mean, std)]
            axis.fill_between(outcome.steps, low, high, color=COLORS.get(role), alpha=0.2)
        if name in report.overhead:
            axis.axhline(report.overhead[name]["target"], color="black", linestyle=":", linewidth=0.8)
        axis.set_title(("★ " if name == headline else "") + name, fontsize=9)
        axis.set_xlabel("attack step")
        axis.set_ylabel(f"restricted {report.metric}")
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(names) :]:
        axis.set_visible(False)
    axes.flat[0].legend(fontsize=8)
    figure.suptitle(f"Suite {report.suite!r}: restricted-domain {report.metric} during each attack")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
