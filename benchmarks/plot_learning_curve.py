"""Learning curves of a multi-stage recipe: the in-training eval of each stage's run folder, chained on one axis of
training mixtures seen (a stage starts where the one before ended), beside runs drawn on their own.

    python benchmarks/plot_learning_curve.py --stage runs/wide --stage runs/wide_long \\
        [--beside "per-bin front end=runs/wide_perbin"] --out docs/wide_learning_curve.png

Reads metrics.jsonl (its `eval` records and the run's batch size from config.yaml); prints the chained table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.checkpoint import metrics_record, run_config  # noqa: E402
from training.eval.plots import STAGE_METRICS, stage_curves  # noqa: E402


def eval_points(run: Path, offset: float) -> tuple[list[tuple[float, dict]], float]:
    """run folder -> ([(mixtures seen, eval record)] shifted by `offset` mixtures, the mixtures its last step saw)."""
    batch = run_config(run).run.batch_size
    points, last = [], 0
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = metrics_record(line)
        if record is None:
            continue
        last = max(last, int(record.get("step", 0)))
        if record.get("event") == "eval":
            points.append((offset + record["step"] * batch, record))
    return points, offset + last * batch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stage", action="append", type=Path, required=True, help="a stage's run folder, in order")
    p.add_argument("--beside", action="append", default=[], metavar="LABEL=RUN",
                   help="a run drawn on its own from the start of the first stage")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    chained, ends, offset = [], [], 0.0
    for run in args.stage:
        points, offset = eval_points(run, offset)
        chained += points
        ends.append(offset)
    curves = {" -> ".join(run.name for run in args.stage): chained}
    for item in args.beside:
        label, _, run = item.partition("=")
        curves[label] = eval_points(Path(run), 0.0)[0]
    for label, points in curves.items():
        print(label)
        for x, rec in points:
            print(f"  {x:>9,.0f} mixtures  " + "  ".join(f"{key} {rec[key]:.3f}" for key, _ in STAGE_METRICS if key in rec))
    print(f"wrote {stage_curves(curves, args.out, stage_ends=ends[:-1])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
