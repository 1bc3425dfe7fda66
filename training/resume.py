"""What `--resume` may change, checked before anything is written, and the run's log cut back to the state.

A resumed run is the run it continues: every config key keeps its saved value except the ones below, whose
change is warned about and recorded in the resumed run's `start` record (`changed_on_resume`). A change to
any other key (the target, the model, the optimizer, the mixing, the seed, the batch) is refused in one line
and config.yaml stays as it was.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from configs import ConfigError, config_to_dict
from training.checkpoint import metrics_record
from training.launch import flatten
from training.config import TrainConfig

# key -> what changing it on resume does (docs/training.md, resume).
RESUMABLE = {
    "run.steps": "the run ends at the new count; the cosine schedule follows the new length",
    "run.log_every": "logging only",
    "run.save_every": "saving; the data streams reopen at the new save steps",
    "run.keep_states": "how many saved states stay on disk",
    "run.progress": "the progress bar",
    "run.log_with": "trackers",
    "run.max_skip_share": "the non-finite step budget",
    "run.compile": "torch.compile (same maths)",
    "run.init_from": "nothing: only a new run reads it (a resumed run has its own weights)",
    "run.init_partial": "nothing: only a new run reads it, with run.init_from",
    "run.init_fresh": "nothing: only a new run reads it, with run.init_from",
    "eval.every": "when the fixed eval set is scored",
    "data.num_workers": "the order of the scenes after the restored step",
    "data.max_fail_share": "the damaged-data budget",
    "data.min_shards_for_share": "the damaged-data budget",
    "data.verify_sha256": "sha256 checks",
    "data.shards": "where the same shards are read from (moved or regenerated copies)",
    "data.train_glob": "where the same shards are read from",
    "data.eval_glob": "where the same shards are read from",
    "speech.train_path": "where the same speech is read from",
    "speech.eval_path": "where the same speech is read from",
}
IGNORED = {"run.dir"}  # the run folder itself: it may have been moved


def config_changes(saved: TrainConfig, asked: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """-> {dotted key: (saved value, asked value)} for every key that differs (run.dir aside)."""
    old, new = flatten(config_to_dict(saved)), flatten(config_to_dict(asked))
    return {key: (old.get(key), new.get(key)) for key in sorted(set(old) | set(new))
            if key not in IGNORED and old.get(key) != new.get(key)}


def check_resume_changes(saved: TrainConfig, asked: TrainConfig, config_path: Path) -> dict[str, tuple[Any, Any]]:
    """-> the allowed changes (key: (saved, asked)); ConfigError in one line naming the first refused ones."""
    changes = config_changes(saved, asked)
    refused = [key for key in changes if key not in RESUMABLE]
    if refused:
        shown = "; ".join(f"{key}: {changes[key][0]!r} -> {changes[key][1]!r}" for key in refused[:3])
        more = f" (and {len(refused) - 3} more)" if len(refused) > 3 else ""
        what = "the architecture (model.*)" if any(k.startswith("model.") for k in refused) else "these keys"
        raise ConfigError(f"--resume: {shown}{more} differ from {config_path}; {what} cannot change on resume "
                          f"(only {', '.join(RESUMABLE)} may); start a new run in another run.dir")
    return {key: changes[key] for key in changes}


def drop_records_after(path: Path, step: int) -> int:
    """Rewrite metrics.jsonl (atomically) without the records past `step`, the restored state's step; a
    partial last line of a killed run goes too. -> how many lines were dropped."""
    if not path.is_file():
        return 0
    kept, dropped, damaged = [], 0, []
    lines = path.read_text(errors="replace").splitlines()
    for number, line in enumerate(lines, 1):
        record = metrics_record(line)
        if record is None and number < len(lines):  # a cut last line is a killed run's, not worth a warning
            damaged.append(number)
        if record is None or record["step"] > step:
            dropped += 1
        else:
            kept.append(line)
    if damaged:
        warnings.warn(f"{path}: dropped {len(damaged)} line(s) that are not a record with a whole-number step "
                      f"(line {', '.join(map(str, damaged[:5]))}{', ...' if len(damaged) > 5 else ''})",
                      RuntimeWarning, stacklevel=2)
    if dropped:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(f"{line}\n" for line in kept))
        os.replace(tmp, path)
    return dropped
