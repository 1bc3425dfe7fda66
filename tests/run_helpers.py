"""Helpers shared by the tests that run training as a subprocess."""
import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN = str(ROOT / "training" / "train.py")
TINY = str(ROOT / "configs" / "tiny.yaml")


def subprocess_env() -> dict[str, str]:
    """The test's environment for a training subprocess: one thread each, the repository importable."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore::DeprecationWarning")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def small_shards(tmp_path_factory, name: str, train: int, evaluation: int, shard_size: int,
                 rt60_max: float = 0.2) -> Path:
    """A small simulated shard root (short RIRs) for training tests -> its folder."""
    from simulate import generate_dataset

    out = tmp_path_factory.mktemp(name)
    generate_dataset(out, splits={"train": train, "eval": evaluation},
                     overrides=(f"shard_size={shard_size}", f"rt60_range=[0.1,{rt60_max}]"))
    return out


def records(run: Path) -> list[dict]:
    """A run folder's metrics.jsonl as a list of events."""
    return [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]
