"""What `--resume` may change and what it refuses, checked before anything is written (issue 20, section 4)."""
import json
from pathlib import Path

import pytest

from configs import ConfigError
from run_helpers import TINY
from training.checkpoint import CONFIG, CheckpointError, run_config
from training.config import dump_config, load_train_config
from training.resume import RESUMABLE, check_resume_changes, config_changes, drop_records_after
from training.train import main


@pytest.fixture()
def run(tmp_path):
    """A run folder with its config and one complete (empty) saved state: enough for every check before loading."""
    run = tmp_path / "run"
    state = run / "states" / "step-00000002"
    state.mkdir(parents=True)
    (state / "trainer_state.json").write_text(json.dumps({"step": 2, "skipped_steps": 0, "world_size": 1}))
    dump_config(load_train_config(TINY, [f"run.dir={run}"]), run / CONFIG)
    return run


def files(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("override, words", [
    ("model.dim=128", ["model.dim: 64 -> 128", "the architecture (model.*) cannot change on resume"]),
    ("target=azimuth", ["target: 'lateral' -> 'azimuth'", "these keys cannot change"]),
    ("optim.lr=0.1", ["optim.lr: 0.002 -> 0.1"]),
    ("run.seed=7", ["run.seed: 0 -> 7"]),
])
def test_a_resume_that_would_change_the_run_is_refused_before_anything_is_written(run, override, words, capsys):
    before = files(run)
    assert main(["--run-dir", str(run), "--resume", override]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --resume: "), lines
    for word in words:
        assert word in lines[0]
    assert "start a new run in another run.dir" in lines[0]
    assert files(run) == before  # config.yaml untouched: a later plain --resume still works


def test_a_changed_architecture_from_another_config_file_is_refused_too(run, tmp_path, capsys):
    other = tmp_path / "other.yaml"
    dump_config(load_train_config(TINY, ["model.depth=3", f"run.dir={run}"]), other)
    before = files(run)
    assert main(["--config", str(other), "--resume"]) == 2
    assert "model.depth: 2 -> 3" in capsys.readouterr().err
    assert files(run) == before


def test_the_keys_that_may_change_are_allowed_and_returned():
    saved = load_train_config(TINY)
    asked = load_train_config(TINY, ["run.steps=900", "eval.every=50", "data.shards=/elsewhere", "run.dir=moved"])
    changes = check_resume_changes(saved, asked, Path(CONFIG))
    assert changes == {"run.steps": (600, 900), "eval.every": (200, 50), "data.shards": ("shards", "/elsewhere")}
    assert set(changes) <= set(RESUMABLE) and "run.dir" not in config_changes(saved, asked)
    assert not any(key.startswith(("model.", "optim.", "mix.")) or key in ("target", "sr", "run.seed", "run.batch_size")
                   for key in RESUMABLE)
    with pytest.raises(ConfigError, match=r"mix.gain_db: \[-3.0, 3.0\] -> \[0.0, 0.0\]"):
        check_resume_changes(saved, load_train_config(TINY, ["mix.gain_db=[0,0]"]), Path(CONFIG))


def test_a_yaml_tag_in_config_yaml_is_one_line_and_never_constructed(run, tmp_path, capsys):
    marker = tmp_path / "constructed"
    (run / CONFIG).write_text(f"run: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(CheckpointError, match="not a plain YAML config"):
        run_config(run)
    assert main(["--run-dir", str(run), "--resume"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {run / CONFIG}: not a plain YAML config")
    assert not marker.exists()


def test_records_past_the_restored_step_are_dropped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    records = [{"event": "start", "step": 0}, {"event": "train", "step": 20}, {"event": "eval", "step": 20},
               {"event": "data_error", "step": 21}, {"event": "train", "step": 25}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"event": "tra')  # a killed writer's last line
    assert drop_records_after(path, 20) == 3
    assert [json.loads(line) for line in path.read_text().splitlines()] == records[:3]
    assert drop_records_after(path, 20) == 0
