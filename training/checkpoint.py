"""Run folders: exported weights, Accelerate states (atomic, newest kept), `load_run`.

Nothing here unpickles: weights are safetensors with their usage in the metadata (ssl_model.export);
Accelerate loads its optimizer and RNG files with `torch.load(weights_only=True)`; our own trainer state is
JSON.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch

from shards.files import kill_point
from ssl_model import SSLModel
from ssl_model.export import CheckpointError, LocalizerSpec, load_localizer, save_localizer
from training.config import TrainConfig, load_train_config

WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"
STATES = "states"
TRAINER_STATE = "trainer_state.json"  # written last inside a state folder: its presence marks it complete


def localizer_spec(cfg: TrainConfig) -> LocalizerSpec:
    """What a model trained under `cfg` expects of its input."""
    return LocalizerSpec(model=cfg.model, sr=cfg.sr, clip_samples=cfg.clip_samples, normalize=cfg.mix.normalize,
                         target=cfg.target, mic_spacing=cfg.data.mic_spacing)


def export_weights(model: torch.nn.Module, cfg: TrainConfig, path: str | Path) -> Path:
    """Model -> safetensors file with its LocalizerSpec, written atomically."""
    return save_localizer(model, localizer_spec(cfg), path)


def load_state(accelerator, state_dir: Path) -> None:
    """Accelerate state folder -> model, optimizer and RNG states; its loads are weights_only (no code runs)."""
    try:
        accelerator.load_state(str(state_dir))
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{state_dir}: cannot load this saved state without executing code or it is damaged "
                              f"({reason})") from None


def run_file(run_dir: str | Path, name: str) -> Path:
    """run folder, CONFIG or WEIGHTS -> that file's path; FileNotFoundError naming it when it is missing."""
    path = Path(run_dir) / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a training run folder?")
    return path


def run_config(run_dir: str | Path) -> TrainConfig:
    """run folder -> its resolved TrainConfig (no weights loaded)."""
    return load_train_config(run_file(run_dir, CONFIG))


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[SSLModel, TrainConfig]:
    """run folder -> (SSLModel in eval mode on `device`, its resolved TrainConfig)."""
    cfg = run_config(run_dir)
    model, _ = load_localizer(run_file(run_dir, WEIGHTS), device)
    return model, cfg


def state_dirs(run_dir: str | Path) -> list[Path]:
    """Complete Accelerate state folders of a run, oldest first."""
    root = Path(run_dir) / STATES
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if (p / TRAINER_STATE).is_file())


def latest_state(run_dir: str | Path) -> Path | None:
    states = state_dirs(run_dir)
    return states[-1] if states else None


def read_trainer_state(state_dir: Path) -> dict[str, Any]:
    return json.loads((state_dir / TRAINER_STATE).read_text())


def save_training_state(accelerator, run_dir: str | Path, step: int, trainer_state: dict[str, Any], keep: int) -> Path:
    """Accelerate save_state into a temporary folder, then trainer_state.json, then rename; prune old ones.

    A run killed at any point leaves either a complete state folder or a `.tmp` folder that is ignored.
    Every rank must call this (each writes its RNG state).
    """
    root = Path(run_dir) / STATES
    final = root / f"step-{step:08d}"
    tmp = root / f"step-{step:08d}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    kill_point(f"save:{step}")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / TRAINER_STATE).write_text(json.dumps({**trainer_state, "step": step}, indent=1))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in state_dirs(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final
