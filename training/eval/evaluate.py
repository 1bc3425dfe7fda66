"""Score a run on the held-out split: model, GCC-PHAT, the TDOA oracle and chance, for both targets.

    python -m training.eval.evaluate --run DIR [--shards DIR] [--speech SOURCE] [--num-samples N] [--device cpu]
        [-q | -v]

Uses the same fixed, seeded eval set as training (training.data.eval_set.fixed_eval_set). Writes DIR/eval/metrics.json
and PNG plots beside it. The model is scored on the target it was trained on; GCC-PHAT (a lateral-angle
estimate, read as the azimuth of a source at the array's height) and the oracle (exact TDOAs, Bayes-optimal
slots; ssl_model.oracle) are scored on both targets. The oracle reads p(class | tdoa) from a dense reference
table drawn from the eval split's own scene prior (its manifest's config; training.eval.prior), else, when that
manifest cannot be read, from the eval set's own sources (leave-one-out, which overstates the lateral floor).
The model is run through ssl_model.Localizer (one window per eval clip). stdout carries the summary table and
the written files; notes and progress go to stderr (-q: errors only, -v: more).

`evaluate_run` reads top to bottom: load the run -> the eval set -> predictions -> scores (training.eval.target_scores)
-> figures and metrics.json (training.eval.report). This module runs things; it computes no score itself.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from configs import ConfigError
from shards.array import ArraySetup
from ssl_model.baselines import gcc_phat
from ssl_model.cli_log import add_verbosity, setup_logging
from ssl_model.export import command_name
from ssl_model.localizer import LocalizeError, Localizer, torch_device
from ssl_model.targets import TARGETS
from training.checkpoint import run_config
from training.config import ALLOW_FLAG, check_commands
from training.data.eval_set import fixed_eval_set, with_shards
from training.data.sources import DataError
from training.eval.prior import eval_prior_reference
from training.eval.report import build_report, plot_scores, summary_lines, write_report
from training.eval.target_scores import score_target, unique_scenes

log = logging.getLogger("training.eval.evaluate")


EVAL_KEYS = ("data.shards", "data.eval_glob", "speech.eval_path")  # the locations the eval set is read from


class EvaluateError(RuntimeError):
    """The run or the eval data cannot be scored; the message names what is missing."""


def evaluate_run(run_dir: str | Path, shards: str | None = None, speech: str | None = None,
                 num_samples: int | None = None, device: str = "cpu", progress: bool = True,
                 out_dir: str | Path | None = None, eval_like: str | Path | None = None,
                 allow_commands: bool = False) -> dict[str, Any]:
    """Score a run folder; writes {out_dir or run/eval}/metrics.json and the plots -> the metrics dict.

    eval_like: another run folder whose eval set (clip length, mixing, speech, eval.seed) to use instead of this
    run's, so two models are scored on the very same mixtures.
    """
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "eval"
    localizer, cfg = load_run(run_dir, device, eval_like)
    if localizer.counts:
        raise EvaluateError(f"{run_dir}: a counting model (0-{cfg.model.num_slots} talkers); this evaluator scores "
                            "models that always name every source: score it with benchmarks/bench_accuracy.py (its count "
                            "sets) or its training run's eval records")
    cfg = with_data_sources(cfg, shards, speech, num_samples)
    typed = {"data.shards", "data.eval_glob"} if shards else set()
    check_commands(cfg, typed | ({"speech.eval_path"} if speech else set()), allow_commands,
                   f"{eval_like or run_dir}/config.yaml", keys=EVAL_KEYS)
    batches, metadata, distinct = eval_batches(cfg, device)
    array = ArraySetup.from_meta(metadata[0], "the eval set's first scene")
    predictions = {"model": model_predictions(localizer, batches, progress),
                   "GCC-PHAT": gcc_predictions(batches, cfg.sr, array, progress).clamp(0, 180)}
    reference, reference_info = eval_prior_reference(cfg)
    if reference is None:
        log.warning("%s", reference_info["note"])
    scores = {t: score_target(metadata, t, scored_on(predictions, t, cfg.target), reference) for t in TARGETS}
    plot_paths = plot_scores(out, cfg.target, scores, run_dir / "metrics.jsonl")
    report = build_report(run_dir, cfg, metadata, distinct, scores, reference_info, plot_paths)
    write_report(out, report)
    return report


def load_run(run_dir: Path, device: str, eval_like: str | Path | None) -> tuple[Localizer, Any]:
    """-> (the run's model as a Localizer, the TrainConfig of the eval set: eval_like's, or the run's; the run's
    target either way)."""
    try:
        model_cfg = run_config(run_dir)
        localizer = Localizer.from_run(run_dir, device)
        cfg = run_config(eval_like) if eval_like is not None else model_cfg
    except (FileNotFoundError, LocalizeError) as err:
        raise EvaluateError(str(err)) from None
    log.info("%r", localizer)
    return localizer, dataclasses.replace(cfg, target=model_cfg.target)


def with_data_sources(cfg, shards: str | None, speech: str | None, num_samples: int | None):
    """TrainConfig with the eval shards root, the eval speech source and the eval set size overridden."""
    if shards:
        cfg = with_shards(cfg, shards)
    if speech:
        if speech == "synthetic":
            new = dataclasses.replace(cfg.speech, source="synthetic", eval_path="")
        else:
            path = Path(speech)
            if not path.exists():
                raise EvaluateError(f"--speech {speech}: expected 'synthetic', a speech shard folder or an audio folder")
            kind = "shards" if (path.is_dir() and any(path.glob("speech-*.tar"))) or path.suffix == ".tar" else "folder"
            new = dataclasses.replace(cfg.speech, source=kind, eval_path=str(path), train_path=cfg.speech.train_path or str(path))
        cfg = dataclasses.replace(cfg, speech=new)
    if num_samples:
        cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, num_samples=int(num_samples)))
    return cfg


def eval_batches(cfg, device: str) -> tuple[list, list[dict], int]:
    """-> (the fixed eval set's batches, their metadata (N), the number of distinct scenes); EvaluateError when
    the oracle would have fewer than 2 of either."""
    batches = fixed_eval_set(cfg, device=device).batches
    metadata = [m for _, _, metas in batches for m in metas]
    if len(metadata) < 2:
        raise EvaluateError(f"the eval set holds {len(metadata)} scene(s); need at least 2 (eval.num_samples)")
    scenes, _ = unique_scenes(metadata)
    if len(scenes) < 2:
        raise EvaluateError(f"the eval split holds {len(scenes)} distinct scene(s); the oracle needs at least 2")
    log.info("eval set: %d mixtures of %d distinct held-out scenes", len(metadata), len(scenes))
    return batches, metadata, len(scenes)


def model_predictions(localizer: Localizer, batches: list, progress: bool) -> torch.Tensor:
    """eval batches -> the model's angles_deg [N, S], decoded and sorted as training's eval does."""
    angles = [localizer.clip_angles(wave) for wave, _, _ in tqdm(batches, desc="model", unit="batch",
                                                                 disable=not progress)]
    return torch.cat(angles).double()


def gcc_predictions(batches: list, sr: int, array: ArraySetup, progress: bool) -> torch.Tensor:
    """eval batches, the array record -> GCC-PHAT lateral angles [N, S], sorted."""
    out = [gcc_phat(wave.cpu(), sr=sr, mic_spacing=array.mic_spacing, sound_speed=array.sound_speed)
           for wave, _, _ in tqdm(batches, desc="GCC-PHAT", unit="batch", disable=not progress)]
    return torch.cat(out).double()


def scored_on(predictions: dict[str, torch.Tensor], target: str, model_target: str) -> dict[str, torch.Tensor]:
    """The predictions scored on `target`: the model's only on the target it was trained on."""
    return predictions if target == model_target else {k: v for k, v in predictions.items() if k != "model"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=command_name("training.eval.evaluate"), description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="run folder (config.yaml, model.safetensors, metrics.jsonl)")
    p.add_argument("--shards", help="shard root holding the eval split (default: the run's data.shards)")
    p.add_argument("--speech", help="eval speech: 'synthetic', a speech shard folder or an audio folder "
                                    "(default: the run's speech config)")
    p.add_argument("--num-samples", type=int, help="eval mixtures (default: the run's eval.num_samples)")
    p.add_argument("--out", help="output folder (default RUN/eval)")
    p.add_argument("--eval-like", help="score on this other run's eval set (clip, mixing, speech, seed), e.g. to put "
                                       "two models on the same mixtures")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="where the model and the eval mixtures run: cpu, cuda or cuda:N (default: cuda when there is "
                        "one, else cpu)")
    p.add_argument(ALLOW_FLAG, dest="allow_commands", action="store_true",
                   help="for this run, let pipe: shard commands written in the run's config.yaml run (without it a "
                        "pipe: location in a run folder is refused)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (-q implies it)")
    add_verbosity(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args)
    try:
        device = str(torch_device(args.device, "--device"))
        report = evaluate_run(args.run, args.shards, args.speech, args.num_samples, device,
                              progress=not (args.no_progress or args.quiet), out_dir=args.out, eval_like=args.eval_like,
                              allow_commands=args.allow_commands)
    except (EvaluateError, DataError, ConfigError, LocalizeError, FileNotFoundError) as err:
        log.error("%s", err)
        return 2
    for line in summary_lines(report):
        print(line)
    out = Path(args.out) if args.out else Path(args.run) / "eval"
    print(f"wrote {out / 'metrics.json'} and {len(report['plots'])} plots:")
    for path in report["plots"].values():
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
