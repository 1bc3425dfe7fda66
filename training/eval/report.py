"""The evaluation's report: metrics.json (scores with their notes and provenance), its figures and its summary lines.

Reads the scores training.eval.target_scores computed and writes them down; computes nothing of its own.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shards.files import sha256_file
from ssl_model.targets import BIN_DEG, NUM_CLASSES, TARGETS, angles_to_classes
from training.checkpoint import metrics_record
from training.eval import plots
from training.eval.target_scores import METRIC_NAMES, TargetScores

FACTOR_LABELS = {"rt60": "RT60 (s)", "distance": "source distance (m)", "elevation": "source elevation (deg)",
                 "separation": "source separation (deg)"}
GCC_NOTE = ("GCC-PHAT estimates lateral angles from the two strongest TDOA peaks; on the azimuth target the same "
            "numbers are read as azimuths of sources at the array's height (elevation 0).")
ORACLE_NOTE = ("oracle: knows each source's exact direct-path TDOA and the eval prior, predicts the Bayes-optimal "
               "(median) class per sorted slot (ssl_model.oracle). oracle_floor_binned_mae_deg is its expected "
               "binned MAE (the floor, docs/protocol.md, fact 2). p(class | tdoa) comes from the 50 nearest in TDOA "
               "of a dense reference table of 200,000 sources drawn from the eval split's simulation prior "
               "(manifest config; see oracle_reference), where the floor is ~0.1 degree on the lateral target, "
               "which the TDOA fixes, and ~6.5-7 on azimuth under the seed prior. Without a readable manifest it "
               "falls back to the 20 nearest among the eval set's own sources (leave-one-out), whose wide "
               "neighbourhood overstates the lateral floor (~2 degrees on 400 sources).")
METRICS_NOTE = ("binned_mae_deg: mean |pred class - true class| * 5 (the seed's metric); mae_deg: mean |pred - true| "
                "in degrees; acc5/acc10: share with |pred - true| <= 5/10 degrees; slots are the two sources sorted "
                "by angle")


# ---------------------------------------------------------------------------------------------- figures


def training_records(metrics_file: Path) -> list[dict]:
    """metrics.jsonl -> records of the train loss and the held-out metrics, keyed for the curves plot."""
    if not metrics_file.is_file():
        return []
    records = []
    for line in metrics_file.read_text(errors="replace").splitlines():
        rec = metrics_record(line)
        if rec is None:
            continue  # a line cut by a killed run, or not a record
        if rec.get("event") == "train" and "loss" in rec:
            records.append({"step": rec["step"], "train loss": rec["loss"]})
        elif rec.get("event") == "eval":
            records.append({"step": rec["step"], **{f"eval {k}": rec[k] for k in METRIC_NAMES if k in rec}})
    return records


def truth_classes(true_deg: np.ndarray) -> np.ndarray:
    """true angles [N, S] (degrees) -> their classes [N, S]."""
    return angles_to_classes(torch.as_tensor(true_deg)).numpy()


def write_plots(out: Path, target: str, truth: dict, preds: dict, classes: dict, factors: dict,
                metrics_file: Path) -> dict[str, str]:
    """Every figure of the report -> {name: path}. truth/preds: per target ([N, S], and per method); classes and
    factors: the model's target's ({method: [N, S]}, {name: [N] or [N, S]}). No training-curves figure when
    metrics_file holds no record (the shipped model has no training log)."""
    paths: dict[str, Path] = {}
    t = truth[target]
    mine = preds[target]
    paths["pred_vs_true"] = plots.pred_vs_true(t, {k: mine[k] for k in ("model", "GCC-PHAT") if k in mine},
                                               out / f"pred_vs_true_{target}.png", target=target)
    for tgt in TARGETS:
        errors = {k: v - truth[tgt] for k, v in preds[tgt].items()}
        note = None if "model" in errors else f"no model curve: the model was\ntrained on the {target} target"
        paths[f"error_cdf_{tgt}"] = plots.error_cdf(errors, out / f"error_cdf_{tgt}.png", target=tgt, note=note)
    factor_arrays = {FACTOR_LABELS[k]: np.broadcast_to(v.reshape(len(t), -1), t.shape) for k, v in factors.items()}
    paths["error_vs_factors"] = plots.error_vs_factors(
        factor_arrays, {k: v - t for k, v in mine.items()}, out / f"error_vs_factors_{target}.png", target=target)
    paths["confusion"] = plots.confusion(truth_classes(t), classes["model"], NUM_CLASSES, BIN_DEG,
                                         out / f"confusion_{target}.png", target=target)
    records = training_records(metrics_file)
    if records:
        paths["training_curves"] = plots.training_curves(records, out / "training_curves.png")
    return {k: str(v) for k, v in paths.items()}


def plot_scores(out: Path, target: str, scores: dict[str, TargetScores], metrics_file: Path) -> dict[str, str]:
    """{target: TargetScores} with the model scored on `target` -> write_plots' figures."""
    return write_plots(out, target, {t: s.truth for t, s in scores.items()}, {t: s.degrees for t, s in scores.items()},
                       scores[target].classes, scores[target].factors, metrics_file)


# ---------------------------------------------------------------------------------------------- metrics.json


def speech_description(cfg) -> str:
    """TrainConfig -> where the eval speech came from, in words."""
    s = cfg.speech
    if s.source == "synthetic":
        return f"synthetic speech-like generator (training.data.speech, eval.seed={cfg.eval.seed})"
    return f"{s.source}: {s.eval_path}"


def eval_manifest(cfg) -> dict[str, Any]:
    """The eval split's manifest path and the sha256 of its bytes (None when the eval data is a glob or a URL)."""
    path = Path(cfg.data.shards) / cfg.data.eval_split / "manifest.json"
    if cfg.data.eval_glob or not path.is_file():
        return {"path": None, "sha256": None, "eval_glob": cfg.data.eval_glob or None}
    return {"path": str(path), "sha256": sha256_file(path)}


def target_entry(metrics: dict[str, Any], target: str, model_target: str) -> dict[str, Any]:
    """One target's scores -> its metrics.json entry (a note in place of the model's scores on the other target)."""
    if target == model_target:
        return metrics
    note = f"the model was trained on the {model_target} target and is scored on that one only"
    return {"model": None, "model_note": note, **{k: v for k, v in metrics.items() if k != "model"}}


def build_report(run_dir: Path, cfg, metadata: list[dict], distinct_scenes: int, scores: dict[str, TargetScores],
                 reference_info: dict, plot_paths: dict[str, str]) -> dict[str, Any]:
    """Everything metrics.json holds: the run, the eval set's counts and sources, every target's scores, the
    oracle's reference, the notes and the figures."""
    return {
        "run": str(run_dir),
        "model_target": cfg.target,
        "counts": {"mixtures": len(metadata), "sources": int(sum(len(m["sources"]) for m in metadata)),
                   "distinct_eval_scenes": distinct_scenes},
        "speech_source": speech_description(cfg),
        "eval_split": cfg.data.eval_split,
        "eval_manifest": eval_manifest(cfg),
        "eval_seed": cfg.eval.seed,
        "targets": {t: target_entry(s.metrics, t, cfg.target) for t, s in scores.items()},
        "oracle_reference": reference_info,
        "notes": {"gcc_phat": GCC_NOTE, "oracle": ORACLE_NOTE, "oracle_floor": reference_info["note"],
                  "metrics": METRICS_NOTE},
        "plots": plot_paths,
    }


def write_report(out: Path, report: dict[str, Any]) -> Path:
    """The report -> out/metrics.json (NaN allowed, numpy scalars as plain numbers); -> its path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "metrics.json"
    path.write_text(json.dumps(report, indent=1, default=_json_default, allow_nan=True))
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def summary_lines(report: dict[str, Any]) -> list[str]:
    """metrics report -> a few printable lines (binned MAE per slot, per method and target)."""
    counts = report["counts"]
    lines = [f"eval: {counts['mixtures']} mixtures of {counts['distinct_eval_scenes']} held-out scenes, "
             f"speech: {report['speech_source']}"]
    for tgt, res in report["targets"].items():
        parts = []
        for key, label in (("model", "model"), ("gcc_phat", "GCC-PHAT")):
            if res.get(key):
                slots = res[key]["per_slot"]
                parts.append(f"{label} {slots['slot1']['binned_mae_deg']:.2f}/{slots['slot2']['binned_mae_deg']:.2f}")
        floor, chance = res["oracle_floor_binned_mae_deg"], res["chance_binned_mae_deg"]
        parts.append(f"oracle floor {floor['slot1']:.2f}/{floor['slot2']:.2f}")
        parts.append(f"chance {chance['slot1']:.2f}/{chance['slot2']:.2f}")
        lines.append(f"{tgt:8s} binned MAE deg (slot1/slot2): " + ", ".join(parts))
    return lines
