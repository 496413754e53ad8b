"""Plots shared by the reports, and the one matplotlib convention every report plot follows.

The convention: matplotlib's object API (:class:`~matplotlib.figure.Figure` on the Agg canvas, never
pyplot, so no display and no global state), panels of one size at one dpi in a constrained layout
(:func:`new_figure`), grid and labels set by :func:`style`, legends outside the axes so they never cover
bars or curves, PNGs written atomically by :func:`save`. Good parts are :data:`GOOD_COLOR`, defective
parts :data:`DEFECT_COLOR` in every plot.

The ROC is drawn in the line's words: x = false-reject rate (good parts failed), y = 1 - escape rate
(defects caught), with the operating point marked. matplotlib is imported inside the functions: the core
is imported by the station, which does not install it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable, List, Literal, Optional, Sequence, Tuple

import numpy as np
from numpy.typing import ArrayLike

from inspector.decision import DecisionPolicy
from inspector.fsutil import PathLike, atomic_path
from inspector.metrics import roc_auc, roc_curve

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

GOOD_COLOR, DEFECT_COLOR = "#2a7ab0", "#d1495b"
DPI = 100
PANEL = (5.0, 4.0)  # inches of one panel
LEGEND_SIZE = 8

Curve = Tuple[str, ArrayLike, ArrayLike]  # name, defect scores, is_defect


def new_figure(ncols: int = 1, nrows: int = 1, panel: Tuple[float, float] = PANEL) -> Tuple[Figure, List[Axes]]:
    """A figure of ``nrows`` x ``ncols`` panels and its axes, row by row."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, list(axes.ravel())


def save(fig: Figure, path: PathLike) -> Path:
    """Write ``fig`` as a PNG (atomically: a half-written plot never replaces a good one)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    return Path(path)


def legend(ax: Axes) -> None:
    """The legend right of the axes, outside the data and the tick labels, when anything is labelled."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=LEGEND_SIZE, frameon=False)


def style(
    ax: Axes, title: str, xlabel: str = "", ylabel: str = "", grid: Optional[Literal["both", "x", "y"]] = "both"
) -> None:
    """Title, axis labels, a light grid (``grid`` None: none) and the outside legend."""
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if grid is not None:
        ax.grid(alpha=0.3, axis=grid)
    legend(ax)


def mark_policy(ax: Axes, policy: DecisionPolicy, vertical: bool = True) -> None:
    """The threshold as a dashed line and the review band, if any, shaded."""
    line = ax.axvline if vertical else ax.axhline
    line(policy.threshold, color="black", lw=1, ls="--", label=f"threshold {policy.threshold:.3f}")
    if policy.review_low is not None and policy.review_high is not None:
        span = ax.axvspan if vertical else ax.axhspan
        span(policy.review_low, policy.review_high, color="orange", alpha=0.2, label="review band")


def roc(ax: Axes, curves: Iterable[Curve], threshold: float, title: str = "ROC") -> None:
    """ROC of the defect score per curve, each with its operating point at ``threshold``; a curve without
    both good and defect images is left out (the axes say so when none is left)."""
    drawn = 0
    for name, curve_scores, curve_defects in curves:
        scores, is_defect = np.asarray(curve_scores, float), np.asarray(curve_defects, bool)
        if is_defect.all() or not is_defect.any():
            continue
        fpr, tpr, _ = roc_curve(scores, is_defect)
        auc = roc_auc(scores, is_defect)
        (line,) = ax.plot(fpr, tpr, lw=1.5, label=f"{name} (AUC {auc:.4f})")
        fails = scores >= threshold
        ax.plot(
            [(fails & ~is_defect).sum() / (~is_defect).sum()],
            [(fails & is_defect).sum() / is_defect.sum()],
            "o",
            ms=8,
            mfc="none",
            color=line.get_color(),
        )
        drawn += 1
    if not drawn:
        ax.text(0.5, 0.5, "needs good and defect images", ha="center", va="center")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.5, ls=":")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    style(
        ax,
        f"{title}, o = threshold {threshold:.3f}",
        "false-reject rate (good parts failed)",
        "1 - escape rate (defects caught)",
    )


def score_histogram(
    ax: Axes,
    scores: ArrayLike,
    is_defect: ArrayLike,
    policy: DecisionPolicy,
    title: str,
    unit: str = "images",
    xlabel: str = "defect score 1 - p(good)",
) -> None:
    """Defect scores of good and defective parts over [0, 1] in 40 bins, with the threshold and review band."""
    values, defect = np.asarray(scores, float), np.asarray(is_defect, bool)
    for part, colour, name in ((~defect, GOOD_COLOR, "good"), (defect, DEFECT_COLOR, "defect")):
        ax.hist(values[part], bins=40, range=(0, 1), color=colour, alpha=0.6, label=f"{name} ({int(part.sum())})")
    mark_policy(ax, policy)
    style(ax, title, xlabel, unit)


def confusion(ax: Axes, cm: ArrayLike, labels: Sequence[str], title: str = "confusion matrix") -> None:
    """Counts per (true, predicted) class; the colour is the share of the true class's row."""
    counts = np.asarray(cm)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape, float), where=rows > 0)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            ax.text(
                j,
                i,
                str(counts[i, j]),
                ha="center",
                va="center",
                color="white" if share[i, j] > 0.5 else "black",
                fontsize=9,
            )
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, label="row share")
    style(ax, f"{title} (colour = row share)", "predicted", "true", grid=None)
