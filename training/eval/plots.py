"""Evaluation plots from plain numpy arrays, written as PNG with matplotlib's Agg backend.

Every function takes arrays (no model, no torch) and a path, draws one figure and returns the path,
so the plots can be tested and re-drawn from a saved metrics file without the model.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

SLOT_NAMES = ("slot 1 (smaller angle)", "slot 2 (larger angle)")
GUIDES_DEG = (5, 10)  # the ACC@5 / ACC@10 thresholds, drawn on the error CDFs
# One colour per method, fixed so the same method looks the same in every figure.
METHOD_COLORS = {"model": "tab:blue", "GCC-PHAT": "tab:orange", "oracle": "tab:green", "chance": "tab:gray"}


def _color(label: str, index: int) -> str:
    for name, color in METHOD_COLORS.items():
        if label.startswith(name):
            return color
    return f"C{index % 10}"


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def binned_abs_error(pred_deg: np.ndarray, true_deg: np.ndarray, bin_deg: float) -> np.ndarray:
    """|class(pred) - class(true)| * bin_deg, the seed's binned error (ssl_model.targets.angle_to_class's bins,
    180 falls in the last one); pred_deg, true_deg: same shape -> same shape."""
    last = round(180.0 / bin_deg) - 1
    classes = [np.clip(np.floor(np.asarray(a, float) / bin_deg), 0, last) for a in (pred_deg, true_deg)]
    return np.abs(classes[0] - classes[1]) * bin_deg


def pred_vs_true(true_deg: np.ndarray, preds: Mapping[str, np.ndarray], path: str | Path, *, target: str,
                 bin_deg: float = 5.0) -> Path:
    """Scatter of predicted against true angle per method, one panel per slot; true_deg and each pred: [N, 2].
    The legend gives each slot's MAE (mean |pred - true|) and binned MAE (the seed's metric evaluate prints)."""
    true_deg = np.asarray(true_deg, float)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), sharey=True)
    for slot, ax in enumerate(axes):
        ax.plot([0, 180], [0, 180], color="0.6", lw=1, ls="--", label="perfect")
        for i, (label, pred) in enumerate(preds.items()):
            pred = np.asarray(pred, float)
            err = np.abs(pred[:, slot] - true_deg[:, slot])
            binned = binned_abs_error(pred[:, slot], true_deg[:, slot], bin_deg)
            ax.scatter(true_deg[:, slot], pred[:, slot], s=12 if i == 0 else 9, alpha=0.75 if i == 0 else 0.45,
                       marker="o" if i == 0 else "x", color=_color(label, i), zorder=3 - i,
                       label=f"{label}: MAE {err.mean():.1f}°, binned MAE {binned.mean():.1f}°")
        ax.set_xlim(0, 180)
        ax.set_ylim(0, 180)
        ax.set_aspect("equal")
        ax.set_xticks(range(0, 181, 30))
        ax.set_yticks(range(0, 181, 30))
        ax.grid(alpha=0.3)
        ax.set_title(SLOT_NAMES[slot])
        ax.set_xlabel(f"true {target} angle (deg)")
        ax.legend(loc="upper left", fontsize=8)
    axes[0].set_ylabel(f"predicted {target} angle (deg)")
    fig.suptitle(f"Predicted vs true {target} angle on the held-out split (N={len(true_deg)} mixtures)\n"
                 f"MAE: mean |pred - true|; binned MAE: mean |class error| x {bin_deg:g}° (the seed's metric, "
                 f"as evaluate prints it)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def error_cdf(errors: Mapping[str, np.ndarray], path: str | Path, *, target: str, note: str | None = None) -> Path:
    """Empirical CDF of absolute errors per method; each value: errors in degrees, any shape. `note`: a line
    written on the axes (e.g. why a method has no curve)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    top = 5.0
    for i, (label, err) in enumerate(errors.items()):
        err = np.sort(np.abs(np.asarray(err, float)).ravel())
        if err.size == 0:
            continue
        top = max(top, float(np.quantile(err, 0.98)))
        share = np.arange(1, err.size + 1) / err.size
        ax.step(err, share, where="post", color=_color(label, i),
                label=f"{label} (median {np.median(err):.1f}°)")
    for mark in GUIDES_DEG:
        ax.axvline(mark, color="0.55", lw=0.8, ls=":")
        ax.annotate(f"{mark}° (ACC@{mark})", (mark, 0.03), xytext=(3, 0), textcoords="offset points",
                    rotation=90, fontsize=7, color="0.35", va="bottom")
    if note:
        ax.text(0.98, 0.45, note, transform=ax.transAxes, ha="right", va="center", fontsize=8, wrap=True,
                bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.7"})
    ax.set_xlim(0, min(180.0, top * 1.05))
    ax.set_ylim(0, 1.01)
    ax.set_xlabel(f"absolute {target} error (deg)")
    ax.set_ylabel("share of sources with error <= x")
    ax.set_title(f"Error CDF, {target} target (both slots pooled)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def _binned_means(x: np.ndarray, y: np.ndarray, edges: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean and standard error of y in bins of x; x, y: [N] -> (centers, means, sems, counts) of [bins]."""
    idx = np.clip(np.digitize(x, edges) - 1, 0, len(edges) - 2)
    centers = 0.5 * (edges[:-1] + edges[1:])
    means = np.full(len(centers), np.nan)
    sems = np.full(len(centers), np.nan)
    counts = np.bincount(idx, minlength=len(centers))
    for b in range(len(centers)):
        sel = y[idx == b]
        if sel.size:
            means[b] = sel.mean()
            sems[b] = sel.std() / math.sqrt(sel.size)
    return centers, means, sems, counts


def error_vs_factors(factors: Mapping[str, np.ndarray], errors: Mapping[str, np.ndarray], path: str | Path,
                     *, target: str, bins: int = 6) -> Path:
    """Mean error against each scene factor, one panel per factor; factors and errors: name -> [N, 2] per source."""
    names = list(factors)
    cols = 2
    rows = max(1, math.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(10, 3.6 * rows), squeeze=False)
    for k, name in enumerate(names):
        ax = axes[k // cols][k % cols]
        x = np.asarray(factors[name], float).ravel()
        finite = np.isfinite(x)
        lo, hi = (float(x[finite].min()), float(x[finite].max())) if finite.any() else (0.0, 1.0)
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
        for i, (label, err) in enumerate(errors.items()):
            y = np.abs(np.asarray(err, float)).ravel()
            centers, means, sems, counts = _binned_means(x[finite], y[finite], edges)
            ax.errorbar(centers, means, yerr=sems, marker="o", ms=4, capsize=3, color=_color(label, i), label=label)
        # Every method is scored on the same sources, so one row of counts (under the bin centres) serves them all.
        ax.set_xticks(centers, [f"{c:.3g}\nn={n}" for c, n in zip(centers, counts)], fontsize=7)
        ax.set_xlabel(name)
        ax.set_ylabel(f"mean |{target} error| (deg)")
        ax.set_title(f"error vs {name.split(' (')[0]}")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for k in range(len(names), rows * cols):
        axes[k // cols][k % cols].set_visible(False)
    fig.suptitle(f"Where the errors are, {target} target (bins of equal width, bars: standard error, "
                 f"n: sources per bin, under its centre)")
    fig.tight_layout()
    return _save(fig, path)


def confusion(true_cls: np.ndarray, pred_cls: np.ndarray, num_classes: int, bin_deg: float, path: str | Path,
              *, target: str) -> Path:
    """Row-normalized confusion matrix of classes, both slots pooled; true_cls, pred_cls: [N, 2] ints."""
    t = np.asarray(true_cls, int).ravel()
    p = np.asarray(pred_cls, int).ravel()
    counts = np.zeros((num_classes, num_classes))
    np.add.at(counts, (np.clip(t, 0, num_classes - 1), np.clip(p, 0, num_classes - 1)), 1)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    fig, ax = plt.subplots(figsize=(6.6, 5.6))
    extent = (0, num_classes * bin_deg, num_classes * bin_deg, 0)
    image = ax.imshow(share, cmap="viridis", vmin=0, vmax=1, extent=extent, interpolation="nearest")
    fig.colorbar(image, ax=ax, label="share of the true class's sources")
    ticks = np.arange(0, num_classes * bin_deg + 1e-9, 30)
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xlabel(f"predicted {target} class (deg, {bin_deg:g}° bins)")
    ax.set_ylabel(f"true {target} class (deg)")
    ax.set_title(f"Confusion matrix, {target} target (both slots, N={t.size})")
    return _save(fig, path)


def _is_loss(key: str) -> bool:
    return "loss" in key.lower()


def training_curves(records: Sequence[Mapping[str, object]], path: str | Path, *, step_key: str = "step") -> Path:
    """Numeric fields of metrics.jsonl against the step: losses on the left, other metrics on the right."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    for i, rec in enumerate(records):
        step = rec.get(step_key, i)
        for key, value in rec.items():
            if key == step_key or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(float(value)):
                continue
            xs, ys = series.setdefault(key, ([], []))
            xs.append(float(step))  # type: ignore[arg-type]
            ys.append(float(value))
    losses = {k: v for k, v in series.items() if _is_loss(k)}
    skip = ("time", "lr", "epoch", "samples", "seconds", "skipped", "per_s", "rate")
    others = {k: v for k, v in series.items() if not _is_loss(k) and not any(s in k.lower() for s in skip)}
    shares = {k: v for k, v in others.items() if "acc" in k.lower()}
    degrees = {k: v for k, v in others.items() if k not in shares}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    share_ax = axes[1].twinx() if shares else None
    panels = ((axes[0], losses, "-", 0), (axes[1], degrees, "-", 0), (share_ax, shares, "--", len(degrees)))
    for ax, group, line, first in panels:
        for i, (key, (xs, ys)) in enumerate(sorted(group.items())):
            marker = "" if len(xs) > 20 else "o"
            ax.plot(xs, ys, line, marker=marker, ms=3, lw=1.2, color=f"C{(first + i) % 10}", label=key)
    for ax, title in ((axes[0], "losses"), (axes[1], "held-out metrics")):
        ax.set_xlabel("training step")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("loss")
    axes[1].set_ylabel("error (deg)")
    if share_ax is not None:
        share_ax.set_ylabel("accuracy (share, dashed)")
        share_ax.set_ylim(0, 1.02)
    for ax, group in ((axes[0], losses), (axes[1], others)):
        both = (ax, share_ax) if ax is axes[1] and share_ax is not None else (ax,)
        handles = [h for a in both for h in a.get_legend_handles_labels()[0]]
        if handles:
            # The twin axis is drawn on top, so the legend goes there to stay readable.
            both[-1].legend(handles=handles, fontsize=7, loc="center right", framealpha=0.9)
        else:
            ax.text(0.5, 0.5, "nothing logged", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(f"Training curves from metrics.jsonl ({len(records)} records)")
    fig.tight_layout()
    return _save(fig, path)


STAGE_METRICS = (("binned_mae_deg", "binned MAE (deg)"), ("acc5", "ACC@5 (share)"), ("count_acc", "count accuracy"))


def stage_curves(curves: Mapping[str, Sequence[tuple[float, Mapping[str, float]]]], path: str | Path, *,
                 stage_ends: Sequence[float] = (), title: str = "Held-out in-training eval") -> Path:
    """curves {label: [(mixtures seen, eval record)]} -> one panel per STAGE_METRICS key against the mixtures seen,
    one line per label; dotted verticals where a stage ended (stage_ends, in mixtures)."""
    fig, axes = plt.subplots(1, len(STAGE_METRICS), figsize=(4.2 * len(STAGE_METRICS), 3.8))
    for ax, (key, name) in zip(axes, STAGE_METRICS):
        for i, (label, points) in enumerate(curves.items()):
            xs = [x for x, rec in points if key in rec]
            ys = [float(rec[key]) for x, rec in points if key in rec]
            ax.plot(xs, ys, "-o", ms=3, lw=1.2, color=f"C{i % 10}", label=label)
        for end in stage_ends:
            ax.axvline(end, ls=":", color="gray", lw=1)
        ax.set_xlabel("training mixtures seen")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
