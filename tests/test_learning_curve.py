"""benchmarks/plot_learning_curve.py: stages chained on one axis of mixtures seen, each at its own batch size."""
import json
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from plot_learning_curve import eval_points, main  # noqa: E402


def run_folder(path: Path, batch: int, evals: dict[int, float], last: int) -> Path:
    path.mkdir()
    (path / "config.yaml").write_text(yaml.safe_dump({"run": {"batch_size": batch}}))
    lines = [{"event": "eval", "step": s, "binned_mae_deg": mae, "acc5": 0.5, "count_acc": 0.4} for s, mae in evals.items()]
    lines += [{"event": "train", "step": last, "loss": 1.0}, {"event": "end", "step": last}]
    (path / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


def test_the_second_stage_starts_where_the_first_ended(tmp_path, capsys):
    first = run_folder(tmp_path / "one", 16, {1000: 20.0, 2000: 18.0}, 2500)
    second = run_folder(tmp_path / "two", 8, {1000: 17.0}, 1000)
    points, end = eval_points(first, 0.0)
    assert [x for x, _ in points] == [16000, 32000] and end == 40000
    points, end = eval_points(second, end)
    assert [x for x, _ in points] == [48000] and end == 48000
    out = tmp_path / "curve.png"
    assert main(["--stage", str(first), "--stage", str(second), "--beside", f"alone={second}", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000 and "48,000 mixtures  binned_mae_deg 17.000" in capsys.readouterr().out
