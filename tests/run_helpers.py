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


def records(run: Path) -> list[dict]:
    """A run folder's metrics.jsonl as a list of events."""
    return [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]
