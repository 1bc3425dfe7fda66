"""The simulator's scenes: its whole config checked, then the draws of its scene prior (shards.scenes)."""
from __future__ import annotations

import torch

from configs import ConfigError
from shards.prior import ScenePrior
from shards.scenes import PriorError, Scenes, draw_scenes
from simulate.config import SimulateConfig


def sample_scenes(
    cfg: SimulateConfig, count: int, generator: torch.Generator, device: torch.device | str = "cpu"
) -> Scenes:
    """cfg, count B, a CPU generator -> Scenes of B scenes on `device` (shards.scenes.draw_scenes of the config's
    prior); ConfigError naming the key when the config is impossible."""
    cfg.validate()
    try:
        return draw_scenes(ScenePrior.of(cfg), count, generator, device)
    except PriorError as err:
        raise ConfigError(str(err)) from None
