"""The end-to-end demo, smoke version: every stage runs and leaves its files (the numbers mean nothing)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hang_guard import HANG_S

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

from demo import summary_table  # noqa: E402


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=HANG_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = proc.stdout
    for needle in ("model (tiny, CPU)", "GCC-PHAT", "oracle floor", "chance", "lateral", "azimuth", "wall time"):
        assert needle in printed
    assert (out / "shards" / "eval" / "manifest.json").is_file()
    run = out / "runs" / "tiny-lateral"
    assert (run / "model.safetensors").is_file()
    report = json.loads((run / "eval" / "metrics.json").read_text())
    assert report["model_target"] == "lateral"
    for path in report["plots"].values():
        assert Path(path).read_bytes()[:4] == b"\x89PNG"
    localized = json.loads((out / "localize_lateral.json").read_text())
    assert len(localized["angles_deg"]) == 2 and len(localized["truth_deg"]) == 2
    assert (out / "scene.wav").is_file() and (out / "localize_lateral.png").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["quick"] is True and summary["total_s"] > 0


def _report(target: str, with_model: bool) -> dict:
    scores = {"per_slot": {"slot1": {"binned_mae_deg": 1.0}, "slot2": {"binned_mae_deg": 2.0}}, "acc5": 0.5}
    floors = {"slot1": 0.1, "slot2": 0.2, "mean": 0.15}
    entry = {"gcc_phat": scores, "oracle_floor_binned_mae_deg": floors, "chance_binned_mae_deg": floors}
    res = {t: {**entry, "model": scores if (with_model and t == target) else None} for t in ("lateral", "azimuth")}
    return {"targets": res}


def test_summary_table_marks_untrained_target():
    lines = summary_table({"lateral": _report("lateral", True)})
    model_row = next(line for line in lines if line.startswith("model"))
    lateral_cell, azimuth_cell = model_row.split("|")[1:]
    assert "1.00" in lateral_cell and "50.0%" in lateral_cell
    assert "1.00" not in azimuth_cell and "-" in azimuth_cell
    assert len(lines) == 7


def test_summary_table_adds_the_shipped_models_row():
    lines = summary_table({"lateral": _report("lateral", True)}, pretrained=_report("lateral", True))
    row = next(line for line in lines if line.startswith("pretrained"))
    lateral_cell, azimuth_cell = row.split("|")[1:]
    assert "1.00" in lateral_cell and "-" in azimuth_cell and "1.00" not in azimuth_cell
    assert len(lines) == 8
