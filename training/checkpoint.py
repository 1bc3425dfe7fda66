"""Run folders: exported weights, Accelerate states (atomic, newest kept), `load_run`.

Nothing here unpickles: weights are safetensors with their usage in the metadata (ssl_model.export);
Accelerate loads its optimizer and RNG files with `torch.load(weights_only=True)`; our own trainer state is
JSON and each rank's data-path state (training.data.batches) is safetensors with JSON metadata.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate.utils import RNG_STATE_NAME
from accelerate.utils.other import load as accelerate_load
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from configs import ConfigError, build_config
from shards.faults import fault_point
from shards.limits import MAX_JSON_BYTES, load_json, read_regular_file
from ssl_model import SSLModel
from ssl_model.export import WEIGHTS, CheckpointError, LocalizerSpec, load_localizer, save_localizer
from training.config import TrainConfig, load_train_config

CONFIG = "config.yaml"
STATES = "states"
TRAINER_STATE = "trainer_state.json"  # written last inside a state folder: its presence marks it complete
DATA_STATE = "data_state_{rank}.safetensors"  # one per rank: reservoirs, slot RNG, stream accounting


def localizer_spec(cfg: TrainConfig) -> LocalizerSpec:
    """What a model trained under `cfg` expects of its input."""
    return LocalizerSpec(model=cfg.model, clip_samples=cfg.clip_samples, normalize=cfg.mix.normalize, target=cfg.target)


def export_weights(model: torch.nn.Module, cfg: TrainConfig, path: str | Path) -> Path:
    """Model -> safetensors file with its LocalizerSpec, written atomically; CheckpointError in one line when the
    disk is full or read-only, with no partial file left and the previous weights file untouched."""
    path = Path(path)
    try:
        return save_localizer(model, localizer_spec(cfg), path)
    except (OSError, SafetensorError) as err:
        path.with_name(path.name + ".tmp").unlink(missing_ok=True)  # save_localizer's temporary name
        raise CheckpointError(f"{path}: cannot write the weights ({first_line(err)}); the previous file, if any, "
                              f"is unchanged") from None


def first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def random_states_problem(state_dir: Path, rank: int) -> str | None:
    """Why Accelerate will not restore this rank's RNG states from `state_dir` (it only logs that), or None."""
    path = Path(state_dir) / f"{RNG_STATE_NAME}_{rank}.pkl"
    try:
        accelerate_load(path)  # the very load Accelerate runs: weights_only, so a pickle's code never runs
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as err:
        return first_line(err)
    return None


def load_state(accelerator, state_dir: Path) -> None:
    """Accelerate state folder -> model, optimizer and RNG states; its loads are weights_only (no code runs).

    Random states that cannot be loaded are a warning, not an error: the weights and the optimizer are whole,
    only the global draws after the restored step (dropout) differ from the uninterrupted run's.
    """
    problem = random_states_problem(state_dir, accelerator.process_index)
    if problem is not None:
        warnings.warn(f"{state_dir}: random states of rank {accelerator.process_index} refused ({problem}); the run "
                      f"continues from fresh random states, so dropout and other global draws after this step will "
                      f"not reproduce the uninterrupted run (the data stream has its own saved state)",
                      RuntimeWarning, stacklevel=2)
    try:
        accelerator.load_state(str(state_dir))
    except RuntimeError as err:
        if "size mismatch" in str(err) or "Missing key" in str(err) or "Unexpected key" in str(err):
            raise CheckpointError(f"{state_dir}: its weights are of another architecture than the model of "
                                  f"config.yaml ({first_line(err)}); resume with the config the run was "
                                  f"started with") from None
        raise CheckpointError(f"{state_dir}: cannot load this saved state without executing code or it is damaged "
                              f"({first_line(err)})") from None
    except (pickle.UnpicklingError, SafetensorError, OSError, EOFError) as err:
        raise CheckpointError(f"{state_dir}: cannot load this saved state without executing code or it is damaged "
                              f"({first_line(err)})") from None


def write_synced(path: Path, data: bytes) -> None:
    """Write and fsync a file, so a full disk fails here and not later."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def save_data_state(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """One rank's data-path state -> a safetensors file, its JSON part in the metadata."""
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path), metadata={"state": json.dumps(meta)})


def load_data_state(state_dir: Path, rank: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """-> this rank's saved data-path state, None when the state has none for it (another world size);
    CheckpointError naming the file when it is not safetensors or lacks its metadata."""
    path = Path(state_dir) / DATA_STATE.format(rank=rank)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads((handle.metadata() or {})["state"])
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: not a data state this repository writes ({first_line(err)})") from None
    return tensors, meta


def metrics_record(line: str) -> dict[str, Any] | None:
    """One line of metrics.jsonl -> its record, or None when it is not a JSON object (bounded: shards.limits)
    whose `step` is a whole number >= 0 (a line cut by a killed run, or one edited by hand)."""
    try:
        record = load_json(line, "metrics.jsonl", constants=True)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    step = record.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return None
    return {**record, "step": step}


def run_file(run_dir: str | Path, name: str) -> Path:
    """run folder, CONFIG or WEIGHTS -> that file's path; FileNotFoundError naming it when it is missing."""
    path = Path(run_dir) / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a training run folder?")
    return path


def run_config(run_dir: str | Path, overrides=()) -> TrainConfig:
    """run folder -> its resolved TrainConfig (no weights loaded), with `key=value` overrides on top;
    CheckpointError in one line when config.yaml is not plain YAML (a tag: nothing in it is constructed)."""
    path = run_file(run_dir, CONFIG)
    try:
        return load_train_config(path, overrides)
    except yaml.YAMLError as err:  # the loader's one line already names the file and says nothing was run
        raise CheckpointError(" ".join(str(err).split())) from None


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
    """A state's trainer_state.json, checked: a JSON object (bounded, no NaN/Infinity) whose step is a whole
    number >= 0 and whose counters are whole numbers; CheckpointError in one line naming the file otherwise."""
    path = Path(state_dir) / TRAINER_STATE
    try:
        state = load_json(read_regular_file(path, MAX_JSON_BYTES), str(path))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable trainer state ({first_line(err).removeprefix(f'{path}: ')})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    for key in ("step", "skipped_steps", "world_size"):
        value = state.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise CheckpointError(f"{path}: {key} is {value!r}, expected a whole number >= 0")
    window = state.get("window", {})
    if not isinstance(window, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                               and math.isfinite(v) for v in window.values()):
        raise CheckpointError(f"{path}: window must map names to finite numbers")
    return state


def started_config(trainer_state: dict[str, Any], state_dir: Path) -> TrainConfig | None:
    """The config a saved state was trained under (stored in its trainer_state.json), or None for a state saved
    before states carried it; CheckpointError naming the file when it is not a valid config."""
    stored = trainer_state.get("config")
    if stored is None:
        return None
    try:
        if not isinstance(stored, dict):
            raise ConfigError("expected a mapping")
        return build_config(TrainConfig, stored)
    except ConfigError as err:
        raise CheckpointError(f"{Path(state_dir) / TRAINER_STATE}: config: {first_line(err)}") from None


def save_training_state(accelerator, run_dir: str | Path, step: int, trainer_state: dict[str, Any], keep: int,
                        data_state: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None) -> Path:
    """Accelerate save_state into a temporary folder, each rank's data state, then trainer_state.json, then
    rename; prune old ones.

    A run killed at any point leaves either a complete state folder or a `.tmp` folder that is ignored.
    Every rank must call this (each writes its RNG and data states).
    """
    root = Path(run_dir) / STATES
    final = root / f"step-{step:08d}"
    tmp = root / f"step-{step:08d}.tmp"
    try:
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True, exist_ok=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp), safe_serialization=True)
        if data_state is not None:
            save_data_state(tmp / DATA_STATE.format(rank=accelerator.process_index), *data_state)
        fault_point(f"save:{step}")
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            write_synced(tmp / TRAINER_STATE, json.dumps({**trainer_state, "step": step}, indent=1).encode())
    except (OSError, SafetensorError, RuntimeError) as err:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing half-written stays; the last complete state is untouched
        raise CheckpointError(f"{root}: cannot save the state of step {step} ({first_line(err)}); nothing "
                              f"half-written was left, the last complete state stays (free space, then --resume)") from None
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in state_dirs(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final
