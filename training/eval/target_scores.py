"""Pure scoring of the held-out evaluation: predictions against the truth, per target, with the TDOA oracle and
chance beside them. Tensors in, numbers out: no files, no plots, no models (training.eval.evaluate runs those).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ssl_model.metrics import localization_metrics
from ssl_model.oracle import chance_binned_mae, oracle_floor_binned_mae, oracle_slot_classes
from ssl_model.targets import angle_to_class, class_centers, metadata_factors, source_angles

METRIC_NAMES = ("binned_mae_deg", "mae_deg", "acc5", "acc10")
ORACLE = "oracle (exact TDOA, 5-degree bins)"  # its angles are bin centres: the label says so (plots, predictions)


@dataclass
class TargetScores:
    """One target's scores and the arrays behind them: metrics (the metrics.json entry's numbers; model None when
    the model was not scored on this target), truth [N, S], degrees and classes {method: [N, S]} (the model first
    when scored, then GCC-PHAT and the oracle), factors {name: [N] or [N, S]}."""
    metrics: dict[str, Any]
    truth: np.ndarray
    degrees: dict[str, np.ndarray]
    classes: dict[str, np.ndarray]
    factors: dict[str, np.ndarray]


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


def score_target(metadata: Sequence[dict], target: str, predictions: dict[str, torch.Tensor],
                 reference: dict[str, torch.Tensor] | None) -> TargetScores:
    """eval metadata (N), a target, predictions {'model' (only when scored on this target), 'GCC-PHAT': degrees
    [N, S]}, the oracle's reference table or None -> TargetScores: every method, the oracle's floor and chance."""
    scenes, _ = unique_scenes(metadata)
    true_deg = source_angles(metadata, target)
    factors = metadata_factors(metadata, target)
    ref = None if reference is None else (reference["tdoa_s"], reference[f"{target}_deg"])
    oracle_cls, oracle_deg = oracle_predictions(metadata, target, reference=ref)
    degrees = {**predictions, ORACLE: oracle_deg}
    classes = {**{name: angle_to_class(deg) for name, deg in predictions.items()}, ORACLE: oracle_cls}
    model = predictions.get("model")
    metrics = {"model": None if model is None else score(model, true_deg, factors),
               "gcc_phat": score(predictions["GCC-PHAT"], true_deg, factors),
               "oracle_tdoa": score(oracle_deg, true_deg, factors),
               "oracle_floor_binned_mae_deg": per_slot(oracle_floor_binned_mae(scenes, target=target, reference=ref)),
               "chance_binned_mae_deg": per_slot(chance_binned_mae(angle_to_class(true_deg)))}
    return TargetScores(metrics, true_deg.numpy(), {k: v.numpy() for k, v in degrees.items()},
                        {k: v.numpy() for k, v in classes.items()}, {k: v.numpy() for k, v in factors.items()})
