"""Score a run on the held-out split: model, GCC-PHAT, the TDOA oracle and chance, for both targets.

    python -m training.evaluate --run DIR [--shards DIR] [--speech SOURCE] [--num-samples N] [--device cpu] [-q | -v]

Uses the same fixed, seeded eval set as training (training.eval_set.fixed_eval_set). Writes DIR/eval/metrics.json
and PNG plots beside it. The model is scored on the target it was trained on; GCC-PHAT (a lateral-angle
estimate, read as the azimuth of a source at the array's height) and the oracle (exact TDOAs, Bayes-optimal
slots; ssl_model.oracle) are scored on both targets. The oracle reads p(class | tdoa) from a dense reference
table drawn from the eval split's own simulation prior (its manifest's config), else, when that manifest
cannot be read, from the eval set's own sources (leave-one-out, which overstates the lateral floor).
The model is run through ssl_model.Localizer (one window per eval clip). stdout carries the summary table and
the written files; notes and progress go to stderr (-q: errors only, -v: more).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from configs import ConfigError, build_config
from shards.files import sha256_file
from shards.layout import is_url, stable_seed
from shards.manifest import load_manifest
from shards.array import ArraySetup
from shards.prior import ScenePrior
from shards.scenes import prior_sources
from ssl_model.baselines import gcc_phat
from ssl_model.cli_log import add_verbosity, setup_logging
from ssl_model.localizer import LocalizeError, Localizer, torch_device
from ssl_model.metrics import localization_metrics
from ssl_model.oracle import chance_binned_mae, oracle_floor_binned_mae, oracle_slot_classes
from ssl_model.targets import (BIN_DEG, NUM_CLASSES, angle_to_class, angles_to_classes, class_centers,
                               metadata_factors, source_angles)
from training import plots
from training.checkpoint import run_config
from training.eval_set import fixed_eval_set, with_shards
from training.sources import DataError

TARGETS = ("lateral", "azimuth")
METRIC_NAMES = ("binned_mae_deg", "mae_deg", "acc5", "acc10")
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
ORACLE_REFERENCE_SOURCES = 200_000
ORACLE_REFERENCE_SEED = stable_seed("training.evaluate", "oracle_reference")
log = logging.getLogger("training.evaluate")


class EvaluateError(RuntimeError):
    """The run or the eval data cannot be scored; the message names what is missing."""


# ---------------------------------------------------------------------------------------------- scoring


def reshape_metrics(flat: dict[str, Any]) -> dict[str, Any]:
    """ssl_model.metrics output (flat `<metric>_slot<k>` keys) -> {metric: mean, per_slot: {slotk: {...}}, count, by_*}."""
    out: dict[str, Any] = {name: flat[name] for name in METRIC_NAMES}
    slots = sorted({k.rsplit("_slot", 1)[1] for k in flat if "_slot" in k and not k.startswith("by_")})
    out["per_slot"] = {f"slot{s}": {name: flat[f"{name}_slot{s}"] for name in METRIC_NAMES} for s in slots}
    out["count"] = int(flat["count"])
    out.update({k: v for k, v in flat.items() if k.startswith("by_")})
    return out


def score(pred_deg: torch.Tensor, true_deg: torch.Tensor, factors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """[N, S] predictions and sorted truth (degrees), factors {name: [N] or [N, S]} -> metrics dict."""
    return reshape_metrics(localization_metrics(pred_deg.double(), true_deg.double(), factors))


def per_slot(values: torch.Tensor) -> dict[str, float]:
    """[S] -> {'slot1': ..., 'slot2': ..., 'mean': ...}."""
    out = {f"slot{i + 1}": float(v) for i, v in enumerate(values.tolist())}
    out["mean"] = float(values.double().mean())
    return out


def unique_scenes(metadata: Sequence[dict]) -> tuple[list[dict], torch.Tensor]:
    """eval metadata (N mixtures, RIRs may repeat) -> (one dict per distinct scene (U), index long [N] into them)."""
    first: dict[tuple, int] = {}
    index = [first.setdefault((m.get("shard"), m.get("key"), m.get("index")), len(first)) for m in metadata]
    scenes = [None] * len(first)
    for m, i in zip(metadata, index):
        scenes[i] = m
    return scenes, torch.tensor(index, dtype=torch.long)


def oracle_predictions(metadata: Sequence[dict], target: str, neighbours: int | None = None,
                       reference: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """eval metadata (N) -> the TDOA oracle's realized slot predictions: (classes long [N, S], bin centres [N, S]).

    p(class | tdoa) comes from `reference` (tdoa [R], angles [R] of the target) when given; else it is estimated
    leave-one-out over distinct scenes: a repeated RIR would be its own neighbour.
    """
    metadata, index = unique_scenes(metadata)
    tdoa = torch.tensor([[float(s["tdoa_s"]) for s in m["sources"]] for m in metadata], dtype=torch.float64)
    angles = torch.tensor([[float(s[f"{target}_deg"]) for s in m["sources"]] for m in metadata], dtype=torch.float64)
    median = oracle_slot_classes(tdoa, angles, neighbours, reference=reference)[index]  # [N, S], ascending in the slot
    return median, class_centers(median).double()


def oracle_reference_table(prior: Any, sources: int = ORACLE_REFERENCE_SOURCES,
                           seed: int = ORACLE_REFERENCE_SEED) -> dict[str, torch.Tensor]:
    """a scene prior (shards.prior.ScenePrior, or a record with its fields such as a SimulateConfig), R, seed ->
    {'tdoa_s', 'lateral_deg', 'azimuth_deg': float64 [R']} of ceil(R / sources per scene) scenes drawn from it."""
    return prior_sources(ScenePrior.of(prior), sources, seed)


def manifest_prior(config: Any, location: str) -> ScenePrior:
    """A split manifest's `config` object -> the scene prior it records (its other keys shape the render only);
    ConfigError naming the key for a value of the wrong type."""
    if not isinstance(config, dict):
        raise ValueError(f"{location}: no 'config' object")
    return build_config(ScenePrior, {key: value for key, value in config.items() if key in ScenePrior.keys()})


def eval_manifest_location(cfg) -> str:
    """TrainConfig -> where the eval split's manifest.json is (a local path or a URL)."""
    if is_url(str(cfg.data.shards)):
        return f"{str(cfg.data.shards).rstrip('/')}/{cfg.data.eval_split}/manifest.json"
    return str(Path(cfg.data.shards) / cfg.data.eval_split / "manifest.json")


def eval_prior_reference(cfg, sources: int = ORACLE_REFERENCE_SOURCES) -> tuple[dict[str, torch.Tensor] | None, dict]:
    """TrainConfig -> (oracle reference table drawn from the eval split's prior, or None; how the floor is estimated).

    The prior is the scene prior (shards.prior) recorded in the eval split's manifest; without one (data.eval_glob, an
    unreadable or foreign manifest) the oracle falls back to leave-one-out over the eval set.
    """
    location = eval_manifest_location(cfg)
    try:
        if cfg.data.eval_glob:
            raise ValueError("the eval data is given as data.eval_glob, so no split manifest names its prior")
        table = oracle_reference_table(manifest_prior(load_manifest(location).get("config"), location), sources)
    except (ValueError, TypeError, KeyError) as err:  # ConfigError is a ValueError
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        return None, {"estimator": "leave-one-out", "neighbours": 20, "manifest": location,
                      "note": f"oracle floor estimated leave-one-out from the eval set's own sources (20 nearest "
                              f"in TDOA), which overstates the lateral floor; no dense reference table because: "
                              f"{reason}"}
    return table, {"estimator": "reference", "neighbours": 50, "sources": int(table["tdoa_s"].numel()),
                   "seed": ORACLE_REFERENCE_SEED, "manifest": location,
                   "note": f"p(class | tdoa) from the 50 nearest of {table['tdoa_s'].numel()} reference sources drawn "
                           f"from the eval split's simulation prior (manifest config), seed {ORACLE_REFERENCE_SEED}"}


# ---------------------------------------------------------------------------------------------- inference


def model_predictions(localizer: Localizer, batches: list, progress: bool) -> torch.Tensor:
    """eval batches -> the model's angles_deg [N, S], decoded and sorted as training's eval does."""
    angles = [localizer.clip_angles(wave) for wave, _, _ in tqdm(batches, desc="model", unit="batch",
                                                                 disable=not progress)]
    return torch.cat(angles).double()


def gcc_predictions(batches: list, sr: int, distance: float, speed: float, progress: bool) -> torch.Tensor:
    """eval batches -> GCC-PHAT lateral angles [N, S], sorted."""
    out = [gcc_phat(wave.cpu(), sr=sr, mic_distance=distance, sound_speed=speed)
           for wave, _, _ in tqdm(batches, desc="GCC-PHAT", unit="batch", disable=not progress)]
    return torch.cat(out).double()


# ---------------------------------------------------------------------------------------------- plots


def training_records(metrics_file: Path) -> list[dict]:
    """metrics.jsonl -> records of the train loss and the held-out metrics, keyed for the curves plot."""
    if not metrics_file.is_file():
        return []
    records = []
    for line in metrics_file.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a killed run
        if rec.get("event") == "train" and "loss" in rec:
            records.append({"step": rec["step"], "train loss": rec["loss"]})
        elif rec.get("event") == "eval":
            records.append({"step": rec["step"], **{f"eval {k}": rec[k] for k in METRIC_NAMES if k in rec}})
    return records


def write_plots(out: Path, target: str, truth: dict, preds: dict, classes: dict, factors: dict,
                metrics_file: Path) -> dict[str, str]:
    """Every figure of the report -> {name: path}. truth/preds/classes: per target, per method, [N, S] arrays.
    No training-curves figure when metrics_file holds no record (the shipped model has no training log)."""
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


def truth_classes(true_deg: np.ndarray) -> np.ndarray:
    return angles_to_classes(torch.as_tensor(true_deg)).numpy()


# ---------------------------------------------------------------------------------------------- the run


def with_data_sources(cfg, shards: str | None, speech: str | None, num_samples: int | None):
    """TrainConfig with the eval shards root, the eval speech source and the eval set size overridden."""
    if shards:
        cfg = with_shards(cfg, shards)
    if speech:
        if speech == "synthetic":
            new = dataclasses.replace(cfg.speech, source="synthetic", eval_path="")
        else:
            path = Path(speech)
            if not path.exists():
                raise EvaluateError(f"--speech {speech}: expected 'synthetic', a speech shard folder or an audio folder")
            kind = "shards" if (path.is_dir() and any(path.glob("speech-*.tar"))) or path.suffix == ".tar" else "folder"
            new = dataclasses.replace(cfg.speech, source=kind, eval_path=str(path), train_path=cfg.speech.train_path or str(path))
        cfg = dataclasses.replace(cfg, speech=new)
    if num_samples:
        cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, num_samples=int(num_samples)))
    return cfg


def speech_description(cfg) -> str:
    s = cfg.speech
    if s.source == "synthetic":
        return f"synthetic speech-like generator (training.speech, eval.seed={cfg.eval.seed})"
    return f"{s.source}: {s.eval_path}"


def eval_manifest(cfg) -> dict[str, Any]:
    """The eval split's manifest path and the sha256 of its bytes (None when the eval data is a glob or a URL)."""
    path = Path(cfg.data.shards) / cfg.data.eval_split / "manifest.json"
    if cfg.data.eval_glob or not path.is_file():
        return {"path": None, "sha256": None, "eval_glob": cfg.data.eval_glob or None}
    return {"path": str(path), "sha256": sha256_file(path)}


def evaluate_run(run_dir: str | Path, shards: str | None = None, speech: str | None = None,
                 num_samples: int | None = None, device: str = "cpu", progress: bool = True,
                 out_dir: str | Path | None = None, eval_like: str | Path | None = None) -> dict[str, Any]:
    """Score a run folder; writes {out_dir or run/eval}/metrics.json and the plots -> the metrics dict.

    eval_like: another run folder whose eval set (clip length, mixing, speech, eval.seed) to use instead of this
    run's, so two models are scored on the very same mixtures.
    """
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "eval"
    try:
        model_cfg = run_config(run_dir)
        localizer = Localizer.from_run(run_dir, device)
        cfg = run_config(eval_like) if eval_like is not None else model_cfg
    except (FileNotFoundError, LocalizeError) as err:
        raise EvaluateError(str(err)) from None
    log.info("%r", localizer)
    cfg = dataclasses.replace(with_data_sources(cfg, shards, speech, num_samples), target=model_cfg.target)
    batches = fixed_eval_set(cfg, device=device).batches
    metadata = [m for _, _, metas in batches for m in metas]
    if len(metadata) < 2:
        raise EvaluateError(f"the eval set holds {len(metadata)} scene(s); need at least 2 (eval.num_samples)")

    scenes, _ = unique_scenes(metadata)
    if len(scenes) < 2:
        raise EvaluateError(f"the eval split holds {len(scenes)} distinct scene(s); the oracle needs at least 2")
    log.info("eval set: %d mixtures of %d distinct held-out scenes", len(metadata), len(scenes))
    model_deg = model_predictions(localizer, batches, progress)
    model_cls = angle_to_class(model_deg)
    array = ArraySetup.from_meta(metadata[0], "the eval set's first scene")
    gcc_deg = gcc_predictions(batches, cfg.sr, array.mic_spacing, array.sound_speed, progress).clamp(0, 180)
    reference, reference_info = eval_prior_reference(cfg)
    if reference is None:
        log.warning("%s", reference_info["note"])

    results: dict[str, Any] = {}
    truth, preds, classes_of = {}, {}, {}
    factors_model = {}
    for tgt in TARGETS:
        true_deg = source_angles(metadata, tgt)
        factors = metadata_factors(metadata, tgt)
        ref = None if reference is None else (reference["tdoa_s"], reference[f"{tgt}_deg"])
        oracle_cls, oracle_deg = oracle_predictions(metadata, tgt, reference=ref)
        methods = {"GCC-PHAT": (gcc_deg, angle_to_class(gcc_deg)), "oracle (exact TDOA)": (oracle_deg, oracle_cls)}
        if tgt == cfg.target:
            methods = {"model": (model_deg, model_cls), **methods}
            factors_model = {k: v.numpy() for k, v in factors.items()}
        entry: dict[str, Any] = {}
        if tgt == cfg.target:
            entry["model"] = score(model_deg, true_deg, factors)
        else:
            entry["model"] = None
            entry["model_note"] = f"the model was trained on the {cfg.target} target and is scored on that one only"
        entry["gcc_phat"] = score(gcc_deg, true_deg, factors)
        entry["oracle_tdoa"] = score(oracle_deg, true_deg, factors)
        entry["oracle_floor_binned_mae_deg"] = per_slot(oracle_floor_binned_mae(scenes, target=tgt, reference=ref))
        entry["chance_binned_mae_deg"] = per_slot(chance_binned_mae(angle_to_class(true_deg)))
        results[tgt] = entry
        truth[tgt] = true_deg.numpy()
        preds[tgt] = {k: v[0].numpy() for k, v in methods.items()}
        classes_of[tgt] = {k: v[1].numpy() for k, v in methods.items()}

    plots = write_plots(out, cfg.target, truth, preds, classes_of[cfg.target], factors_model, run_dir / "metrics.jsonl")
    report = {
        "run": str(run_dir),
        "model_target": cfg.target,
        "counts": {"mixtures": len(metadata), "sources": int(sum(len(m["sources"]) for m in metadata)),
                   "distinct_eval_scenes": len(scenes)},
        "speech_source": speech_description(cfg),
        "eval_split": cfg.data.eval_split,
        "eval_manifest": eval_manifest(cfg),
        "eval_seed": cfg.eval.seed,
        "targets": results,
        "oracle_reference": reference_info,
        "notes": {"gcc_phat": GCC_NOTE, "oracle": ORACLE_NOTE, "oracle_floor": reference_info["note"],
                  "metrics": "binned_mae_deg: mean |pred class - true class| * 5 (the seed's metric); mae_deg: "
                             "mean |pred - true| in degrees; acc5/acc10: share with |pred - true| <= 5/10 degrees; "
                             "slots are the two sources sorted by angle"},
        "plots": plots,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(report, indent=1, default=_json_default, allow_nan=True))
    return report


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="run folder (config.yaml, model.safetensors, metrics.jsonl)")
    p.add_argument("--shards", help="shard root holding the eval split (default: the run's data.shards)")
    p.add_argument("--speech", help="eval speech: 'synthetic', a speech shard folder or an audio folder "
                                    "(default: the run's speech config)")
    p.add_argument("--num-samples", type=int, help="eval mixtures (default: the run's eval.num_samples)")
    p.add_argument("--out", help="output folder (default RUN/eval)")
    p.add_argument("--eval-like", help="score on this other run's eval set (clip, mixing, speech, seed), e.g. to put "
                                       "two models on the same mixtures")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (-q implies it)")
    add_verbosity(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args)
    try:
        device = str(torch_device(args.device, "--device"))
        report = evaluate_run(args.run, args.shards, args.speech, args.num_samples, device,
                              progress=not (args.no_progress or args.quiet), out_dir=args.out, eval_like=args.eval_like)
    except (EvaluateError, DataError, ConfigError, LocalizeError, FileNotFoundError) as err:
        log.error("%s", err)
        return 2
    for line in summary_lines(report):
        print(line)
    out = Path(args.out) if args.out else Path(args.run) / "eval"
    print(f"wrote {out / 'metrics.json'} and {len(report['plots'])} plots:")
    for path in report["plots"].values():
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
