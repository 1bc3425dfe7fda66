"""A run folder's record of itself: config.yaml, metrics.jsonl (one JSON object per event, each with its
step) and the trackers. Only the main process writes; nothing is written before `open`, which runs after
every check of a new or resumed run passed."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

from training.checkpoint import CONFIG
from training.config import TrainConfig, dump_config
from training.launch import flat_config, tracker_kwargs
from training.resume import drop_records_after

METRICS = "metrics.jsonl"


class RunLog:
    def __init__(self, accelerator, run_dir: Path):
        self.accelerator, self.run_dir = accelerator, Path(run_dir)
        self.file: TextIO | None = None

    def open(self, cfg: TrainConfig, resumed_step: int | None) -> None:
        """Write config.yaml, cut metrics.jsonl back to the resumed step, start the trackers."""
        if not self.accelerator.is_main_process:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, self.run_dir / CONFIG)
        if resumed_step is not None:
            drop_records_after(self.run_dir / METRICS, resumed_step)
        self.accelerator.init_trackers("dual-mic-ssl", config=flat_config(cfg),
                                       init_kwargs=tracker_kwargs(self.run_dir.name, resumed_step))
        self.file = open(self.run_dir / METRICS, "a")

    def log(self, record: dict) -> None:
        """One event -> a line of metrics.jsonl (main process only)."""
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

    def scalars(self, prefix: str, record: dict, step: int) -> None:
        """The record's numbers -> the trackers, as `prefix/key`."""
        self.accelerator.log({f"{prefix}/{k}": v for k, v in record.items()
                              if isinstance(v, (int, float)) and not isinstance(v, bool)}, step=step)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
