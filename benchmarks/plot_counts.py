"""Count confusion of benchmark results as heat maps: one panel per set and method, rows the true number of talkers,
columns the number named, each row in percent of its clips (a row without clips is left blank).

    python benchmarks/plot_counts.py bench_cache/full.json bench_cache/real.json [--sets count20,count,rsmnmf] \\
        [--methods "model,GCC-PHAT (frames,DUET"] [--label "model shipped.safetensors=wide (default)"] \\
        --out docs/count_confusion.png

Reads the JSON files `bench_accuracy.py --json` writes (any number; a set found in several is taken from the first);
a method is kept when its name contains one of the --methods pieces; methods handed the true count are left out (their
matrix is the identity by construction). Prints every matrix it draws.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shards.limits import MAX_JSON_BYTES, LimitError, load_json, read_regular_file  # noqa: E402

DEFAULT_SETS = ("count20", "count", "rsmnmf")
DEFAULT_METHODS = ("model", "GCC-PHAT (frames", "DUET")
SET_TITLES = {"count20": "count20 (talkers >= 20 deg apart)", "count": "count (talkers anywhere)",
              "rsmnmf": "real array (rsmnmf)"}


def row_percent(confusion: list[list[int]]) -> np.ndarray:
    """a count confusion [true, named] of clip counts -> each row in percent of its clips; NaN for a row without
    clips."""
    counts = np.asarray(confusion, dtype=np.float64)
    clips = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(clips > 0, 100.0 * counts / clips, np.nan)


def panels(results: list[dict], sets: list[str], methods: list[str], labels: dict[str, str]
           ) -> list[tuple[str, str, np.ndarray]]:
    """bench_accuracy JSON records, the sets and method-name pieces wanted, renames -> [(set, method label, row
    percent matrix)], in the order of `sets`, then of the methods in the first file holding the set."""
    out = []
    for name in sets:
        record = next((r["sets"][name] for r in results if name in r.get("sets", {})), None)
        if record is None:
            continue
        for method, entry in record.get("methods", {}).items():
            confusion = entry.get("metrics", {}).get("confusion")
            if confusion is None or entry.get("given_count") or not any(piece in method for piece in methods):
                continue
            out.append((name, labels.get(method, method), row_percent(confusion)))
    return out


def draw(found: list[tuple[str, str, np.ndarray]], out: Path) -> Path:
    """panels -> one PNG: a row of heat maps per set, a column per method."""
    sets = list(dict.fromkeys(name for name, _, _ in found))
    columns = max(sum(1 for name, _, _ in found if name == s) for s in sets)
    fig, axes = plt.subplots(len(sets), columns, figsize=(3.1 * columns, 3.0 * len(sets)), squeeze=False)
    for ax in axes.ravel():
        ax.set_visible(False)
    for row, name in enumerate(sets):
        for col, (_, method, matrix) in enumerate(p for p in found if p[0] == name):
            ax = axes[row, col]
            ax.set_visible(True)
            ax.imshow(np.nan_to_num(matrix, nan=0.0), vmin=0, vmax=100, cmap="Blues")
            for (i, j), value in np.ndenumerate(matrix):
                if np.isfinite(value):
                    ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=8,
                            color="white" if value > 60 else "black")
            size = matrix.shape[0]
            ax.set_xticks(range(size))
            ax.set_yticks(range(size))
            ax.set_xlabel("talkers named")
            ax.set_ylabel("talkers present")
            ax.set_title(f"{SET_TITLES.get(name, name)}\n{method}", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", type=Path, help="bench_accuracy.py --json files")
    p.add_argument("--sets", default=",".join(DEFAULT_SETS), help="count sets to draw, comma-separated")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help="keep a method whose name contains one of these pieces, comma-separated")
    p.add_argument("--label", action="append", default=[], metavar="METHOD=LABEL", help="rename a method in the plot")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    try:  # data: a regular file of bounded size, parsed with bounded depth (NaN allowed: the truth holds it)
        results = [load_json(read_regular_file(path, MAX_JSON_BYTES), str(path), constants=True)
                   for path in args.results]
    except (OSError, LimitError, ValueError) as err:
        print(f"plot_counts: {err}", file=sys.stderr)
        return 2
    labels = dict(item.split("=", 1) for item in args.label)
    found = panels(results, [s for s in args.sets.split(",") if s], [m for m in args.methods.split(",") if m], labels)
    if not found:
        print(f"no count confusion for sets {args.sets} and methods {args.methods} in these files", file=sys.stderr)
        return 2
    for name, method, matrix in found:
        rows = " | ".join(" ".join("-" if not np.isfinite(v) else f"{v:.0f}" for v in r) for r in matrix)
        print(f"{name:8s} {method:40s} [{rows}]")
    print(f"wrote {draw(found, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
