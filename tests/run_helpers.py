"""Helpers shared by the tests that run training as a subprocess."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hang_guard import HANG_S

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


def assert_usage_names_the_command(module: str, script: str, parse_args, monkeypatch, capsys) -> None:
    """`python -m module --help` says `usage: python -m module`, and parse_args run as the console script `script`
    says `usage: script`."""
    proc = subprocess.run([sys.executable, "-m", module, "--help"], env=subprocess_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=HANG_S)
    assert proc.returncode == 0 and proc.stdout.startswith(f"usage: python -m {module} "), proc.stdout[:200]
    monkeypatch.setattr(sys, "argv", [str(ROOT / ".venv" / "bin" / script)])
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    assert capsys.readouterr().out.startswith(f"usage: {script} ")
