"""The whole job end to end on a CPU: simulate, train the tiny model, evaluate, plot, localize one file.

    python examples/demo.py [--out demo_out] [--quick] [--steps N] [--targets lateral,azimuth]     (= make demo)

1. simulate the seed protocol's splits (3000 train, 200 eval scenes, disjoint seeds) into OUT/shards;
2. train configs/tiny.yaml on the built-in synthetic speech, one run per target, in a subprocess (OUT/runs/...);
3. evaluate each run on the held-out split (metrics.json and plots in OUT/runs/<run>/eval);
4. render a stereo wav from one eval scene (synthetic speech convolved with the scene's RIRs) and localize it;
5. print a summary table: model, GCC-PHAT, oracle floor and chance on both targets, and the plot paths.
`--quick` is a smoke version (tiny splits, a few dozen steps) for the test suite; its numbers mean nothing.
The summary goes to stdout; the stages' notes go to stderr through logging (-q: errors only).
A script beside the packages, not in one: it is the one pipeline that uses every package (simulate, shards,
training, ssl_model).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run by path: the repository root importable

from shards.files import read_samples  # noqa: E402
from shards.layout import shard_name  # noqa: E402
from shards.samples import decode_rir  # noqa: E402
from simulate import generate_dataset  # noqa: E402
from configs.cli_log import add_verbosity, setup_logging  # noqa: E402
from ssl_model.localize import plot_half_circle  # noqa: E402
from ssl_model.loading import model_weights  # noqa: E402
from ssl_model.localizer import Localizer  # noqa: E402
from ssl_model.targets import TARGETS  # noqa: E402
from training.checkpoint import WEIGHTS  # noqa: E402
from training.eval.report import summary_lines  # noqa: E402
from training.eval.evaluate import evaluate_run  # noqa: E402
from training.data.mixing import mix  # noqa: E402
from training.data.speech import synthetic_speech  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.yaml"
# The shipped two-talker model's folder (model.safetensors and its training config): the model of the seed's scene,
# which the demo's held-out mixtures are.
PRETRAINED_RUN = model_weights("two-talker").parent
log = logging.getLogger("demo")


@dataclass(frozen=True)
class Plan:
    train_scenes: int
    eval_scenes: int
    shard_size: int
    steps: int | None  # None: the config's run.steps
    eval_mixtures: int  # for the final evaluation (distinct scenes matter for the oracle's kNN)
    overrides: tuple[str, ...]  # extra training overrides


FULL = Plan(train_scenes=3000, eval_scenes=200, shard_size=100, steps=None, eval_mixtures=200, overrides=())
QUICK = Plan(train_scenes=16, eval_scenes=24, shard_size=8, steps=20, eval_mixtures=24,
             overrides=("eval.every=0", "eval.num_samples=16", "run.log_every=10", "run.save_every=20",
                        "data.rir_reservoir=16", "speech.reservoir=32"))


@contextlib.contextmanager
def stage(key: str, title: str, timings: dict[str, float]):
    """Log a stage header, run the block, record its wall time under `key` (logged when it succeeds)."""
    log.info("\n== %s", title)
    t0 = time.time()
    try:
        yield
    finally:
        timings[key] = time.time() - t0
    log.info("   (%.0f s)", timings[key])


def simulate(out: Path, plan: Plan) -> dict[str, Path]:
    return generate_dataset(out, splits={"train": plan.train_scenes, "eval": plan.eval_scenes},
                            overrides=(f"shard_size={plan.shard_size}",), workers=1, progress=True)


def train(run_dir: Path, shards: Path, target: str, plan: Plan) -> None:
    """configs/tiny.yaml on synthetic speech, in a subprocess (its own threads and Accelerate state)."""
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a fresh run each time: metrics.jsonl would otherwise mix two runs
    cmd = [sys.executable, "-m", "training.train", "--config", str(TINY), "--shards", str(shards),
           "--run-dir", str(run_dir), f"target={target}", "speech.source=synthetic", *plan.overrides]
    if plan.steps is not None:
        cmd += ["--steps", str(plan.steps)]
    log.info("   $ %s", " ".join(cmd[1:]))
    proc = subprocess.run(cmd, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"error: training ({target}) failed with exit code {proc.returncode}")


def first_eval_scene(shards: Path) -> tuple[np.ndarray, dict]:
    """The eval split's first scene -> (rir float32 [mics, sources, L], its metadata)."""
    first = shards / "eval" / shard_name("eval", 0)
    for key, parts in read_samples(first):
        scene = decode_rir(key, parts, str(first))
        return scene.rir, scene.meta
    raise SystemExit(f"error: {first} holds no scene")


def render_scene(rir: np.ndarray, sr: int, seconds: float, seed: int = 7) -> np.ndarray:
    """rir [M, S, L] -> stereo mixture [T, M] of synthetic speech (one clip per source), peak 0.9."""
    g = torch.Generator().manual_seed(seed)
    speech = synthetic_speech(rir.shape[1], int(seconds * sr), sr, g)[None]  # [1, S, T]
    wave = mix(speech, torch.from_numpy(rir)[None], normalize="peak")  # [1, M, T]
    return wave[0].T.numpy()


def localize_file(path: Path, run_dir: Path, plot: Path, truth_deg: list[float]) -> dict[str, Any]:
    """The localize CLI's steps on one file -> its JSON result, plus the truth and the plot path."""
    result = Localizer.from_run(run_dir).localize_file(path).to_dict()
    result["truth_deg"] = [round(a, 2) for a in truth_deg]
    result["plot"] = str(plot_half_circle(result, plot, title=f"{path.name} ({run_dir.name})", truth_deg=truth_deg))
    return result


def fmt(value: float | None) -> str:
    return "    -" if value is None else f"{value:5.2f}"


def summary_table(reports: dict[str, dict], pretrained: dict | None = None) -> list[str]:
    """{target: evaluate report} (and the shipped model's report on the same mixtures) -> lines: binned MAE (deg)
    per slot, per method and target, plus ACC@5. Every row is a label, the report each target's cell reads and the
    method it reads there; a method a report did not score (a model on a target it was not trained on) shows -."""
    any_report = next(iter(reports.values()))
    baselines = {t: reports.get(t, any_report) for t in TARGETS}  # every report scores them on the same mixtures
    rows = [("model (tiny, CPU)", reports, "model")]
    if pretrained:
        rows.append(("pretrained (shipped)", dict.fromkeys(TARGETS, pretrained), "model"))
    rows += [("GCC-PHAT", baselines, "gcc_phat"),
             ("oracle floor (exact TDOA)", baselines, "oracle_floor_binned_mae_deg"),
             ("chance (median class)", baselines, "chance_binned_mae_deg")]

    def cell(report: dict | None, target: str, method: str) -> str:
        scores = report["targets"][target].get(method) if report else None
        if not scores:
            return f"{fmt(None)} {fmt(None)} {'    -':>6}"
        if "per_slot" not in scores:  # a floor: a number per slot, no accuracy
            return f"{fmt(scores['slot1'])} {fmt(scores['slot2'])} {'    -':>6}"
        slots = scores["per_slot"]
        return (f"{fmt(slots['slot1']['binned_mae_deg'])} {fmt(slots['slot2']['binned_mae_deg'])} "
                f"{100 * scores['acc5']:5.1f}%")

    header = f"{'method':<26}" + "".join(f"| {t + ' (slot1 slot2 acc5)':<27}" for t in TARGETS)
    lines = [header, "-" * len(header)]
    for label, by_target, method in rows:
        lines.append(f"{label:<26}" + "".join(f"| {cell(by_target.get(t), t, method):<27}" for t in TARGETS))
    lines.append("binned MAE in degrees (the seed's metric: |class error| x 5) per sorted slot; acc5: share within 5 deg")
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python examples/demo.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out/)")
    p.add_argument("--quick", action="store_true", help="smoke version: tiny splits, a few dozen steps")
    p.add_argument("--steps", type=int, help="training steps per target (default: configs/tiny.yaml's run.steps)")
    p.add_argument("--targets", help="comma-separated targets to train a tiny model for "
                                     "(default lateral,azimuth; with --quick: lateral)")
    add_verbosity(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args, default=logging.INFO)
    plan = QUICK if args.quick else FULL
    if args.steps is not None:
        if args.steps < 1:
            log.error("--steps: expected a positive integer, got %d", args.steps)
            return 2
        plan = dataclasses.replace(plan, steps=args.steps)
    args.targets = args.targets or ("lateral" if args.quick else "lateral,azimuth")
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if not targets or any(t not in TARGETS for t in targets):
        log.error("--targets: expected lateral and/or azimuth, got %r", args.targets)
        return 2
    out = Path(args.out).resolve()
    shards, runs = out / "shards", out / "runs"
    timings: dict[str, float] = {}
    t0 = time.time()

    with stage("simulate", f"1. simulate {plan.train_scenes} train + {plan.eval_scenes} eval scenes -> {shards}", timings):
        simulate(shards, plan)
    reports: dict[str, dict] = {}
    for target in targets:
        run_dir = runs / f"tiny-{target}"
        with stage(f"train {target}", f"2. train configs/tiny.yaml, target={target} -> {run_dir}", timings):
            train(run_dir, shards, target, plan)
        with stage(f"evaluate {target}", f"3. evaluate {run_dir.name} on {plan.eval_mixtures} held-out mixtures", timings):
            reports[target] = evaluate_run(run_dir, num_samples=plan.eval_mixtures, device="cpu", progress=True)
            for line in summary_lines(reports[target]):
                log.info("   %s", line)

    pretrained = None
    if PRETRAINED_RUN.joinpath(WEIGHTS).is_file():
        with stage("pretrained", f"3b. score the shipped two-talker model ({PRETRAINED_RUN}) on the same held-out mixtures", timings):
            pretrained = evaluate_run(PRETRAINED_RUN, shards=str(shards), speech="synthetic",
                                      num_samples=plan.eval_mixtures, device="cpu", progress=True,
                                      out_dir=out / "pretrained_eval", eval_like=runs / f"tiny-{targets[0]}")
            for line in summary_lines(pretrained):
                log.info("   %s", line)

    with stage("render+localize", "4. render one eval scene to a stereo wav and localize it", timings):
        rir, meta = first_eval_scene(shards)
        wav = out / "scene.wav"
        sf.write(wav, render_scene(rir, int(meta["sr"]), 3.0), int(meta["sr"]), subtype="FLOAT")
        localized = {}
        for target in targets:
            run_dir = runs / f"tiny-{target}"
            truth = sorted(float(s[f"{target}_deg"]) for s in meta["sources"])
            localized[target] = localize_file(wav, run_dir, out / f"localize_{target}.png", truth)
            (out / f"localize_{target}.json").write_text(json.dumps(localized[target], indent=1))

    total = time.time() - t0
    print("\n== summary" + (" (--quick: a smoke run, the numbers mean nothing)" if args.quick else ""))
    report = next(iter(reports.values()))
    print(f"held-out: {report['counts']['mixtures']} mixtures of {report['counts']['distinct_eval_scenes']} eval scenes "
          f"(disjoint seeds from the {plan.train_scenes} train scenes); speech: {report['speech_source']}")
    for line in summary_table(reports, pretrained):
        print(line)
    print(f"\nlocalized {wav} (eval scene {meta.get('split', 'eval')}/{meta.get('index', 0)}, RT60 {meta['rt60']:.2f} s):")
    for target, res in localized.items():
        print(f"  {target:8s} estimate {res['angles_deg']} deg, truth {res['truth_deg']} deg  -> {res['plot']}")
    print(f"  CLI: python -m ssl_model.localize {wav} --run {runs / ('tiny-' + targets[0])} --plot out.png")
    print("\nplots:")
    for target, rep in reports.items():
        for name, path in rep["plots"].items():
            print(f"  {target:8s} {name:18s} {path}")
    print("\nwall time: " + ", ".join(f"{name} {sec:.0f} s" for name, sec in timings.items()) + f"; total {total:.0f} s ({total / 60:.1f} min)")
    (out / "summary.json").write_text(json.dumps({"timings_s": timings, "total_s": total, "quick": args.quick,
                                                  "localized": localized,
                                                  "metrics": {t: str(runs / f"tiny-{t}" / "eval" / "metrics.json")
                                                              for t in reports}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
