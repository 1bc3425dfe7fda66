"""The TDOA oracle's reference table: a dense sample of the eval split's scene prior, as its manifest records it.

The prior is the manifest's `config` read as a shards.prior.ScenePrior (the simulator is never imported); without
a readable one (data.eval_glob, a missing, unreadable or foreign manifest) there is no table and the oracle falls
back to leave-one-out over the eval set, which overstates the lateral floor.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from configs import build_config
from shards.layout import is_url, stable_seed
from shards.manifest import load_manifest
from shards.prior import ScenePrior
from shards.scenes import prior_sources

ORACLE_REFERENCE_SOURCES = 200_000
# The seed every report names; "training.evaluate" is the evaluator's former module path, kept so the seed is too.
ORACLE_REFERENCE_SEED = stable_seed("training.evaluate", "oracle_reference")


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
    """TrainConfig -> (oracle reference table drawn from the eval split's prior, or None; how the floor is estimated)."""
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
