"""Choose a counting model's decoding thresholds (ssl_model.talkers.Decoding) on a development set, never on the
benchmark's own mixtures.

    python benchmarks/bench_accuracy.py --split dev --speech shards/speech/train --cache bench_dev --sets count \
        --mixtures 200                      # builds the dev count set (other rooms, talkers, activity; training voices)
    python benchmarks/calibrate_decoding.py --run runs/real_ft --cache bench_dev --mixtures 200 [--json out.json] \
        [--write runs/real_ft/calibrated.safetensors]  # the model with the chosen thresholds in its metadata

The dev count set is drawn like the benchmark's count set (0-3 talkers that come and go, pyroomacoustics rooms) from
other seeds (bench_accuracy --split dev) and other speech. The model runs once per existence threshold; every
clustering setting is then applied to the same windows (Localizer.aggregate). Each setting is scored by the count
set's metrics (count accuracy, F1 of detections within 10 degrees, and the share of single talkers named one, the
first promise: one talker is one talker); the best mean of the three is printed first, then the current defaults for
comparison.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy_methods import count_truth, detection_scores, load_localizers, model_sources  # noqa: E402
from accuracy_report import machine  # noqa: E402
from accuracy_sets import SEEDS, SR, BenchError, load_sets, split_seeds  # noqa: E402
from ssl_model.loading import save_localizer  # noqa: E402
from ssl_model.localizer import Localizer  # noqa: E402
from ssl_model.talkers import Decoding  # noqa: E402

EXISTENCE = (0.5, 0.6, 0.7, 0.8, 0.9)
RESOLVE_SAMPLES = (0.0, 0.25, 0.5, 0.75, 1.0)  # 0: a window's slots are never copies of each other
MERGE_DEG = (10.0, 15.0, 20.0)
MIN_SHARE = (0.2, 0.25, 0.34, 0.5)  # finer values by --min-share (0.3: one window of three needs existence >= 0.9)
ONE_PER_WINDOW = (True, False)
REACH_LEVEL = (0.0, 0.6)  # 0: detections join clusters within merge_deg only; 0.6: or within their posterior's span
TRACK_SUPPORT = (False, True)  # True: votes weighted by the frame head's support too (models with a frame head only)
MIRROR = (False, True)  # True: each window heard twice, the second time with its channels swapped (two model passes)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", action="append", default=[], help="a run folder holding model.safetensors")
    p.add_argument("--model", action="append", default=[], help="a shipped model's name or a weights file")
    p.add_argument("--cache", default="bench_dev", help="where the dev sets are cached")
    p.add_argument("--speech", default="shards/speech/train", help="the dev set's speech (not the benchmark's voices)")
    p.add_argument("--split", default="dev", help="the seed split of the dev set (never 'test')")
    p.add_argument("--mixtures", type=int, default=200, help="mixtures of the dev count set")
    p.add_argument("--existence", default=",".join(f"{e:g}" for e in EXISTENCE),
                   help="existence thresholds to try, comma-separated (each costs one model pass over the set)")
    p.add_argument("--resolve", default=",".join(f"{r:g}" for r in RESOLVE_SAMPLES),
                   help="window resolutions in samples of delay to try, comma-separated (each costs one model pass)")
    p.add_argument("--min-share", default=",".join(f"{s:g}" for s in MIN_SHARE),
                   help="a talker's least share of the windows to try, comma-separated (no model pass each)")
    p.add_argument("--mirror", default="off", help="channel-swap averaging (decoding.mirror: a second model pass) to "
                                                   "try: off (default), on, or off,on")
    p.add_argument("--json", help="write every setting's scores here")
    p.add_argument("--write", metavar="FILE", help="save the model with the best thresholds in its metadata here "
                                                   "(Localizer.from_file then decodes with them)")
    return p.parse_args(argv)


def settings(existence: tuple[float, ...] = EXISTENCE, resolve: tuple[float, ...] = RESOLVE_SAMPLES,
             min_share: tuple[float, ...] = MIN_SHARE, track_support: tuple[bool, ...] = TRACK_SUPPORT,
             mirror: tuple[bool, ...] = MIRROR) -> list[Decoding]:
    """-> every Decoding of the grid (existence, resolution and mirror vary slowest: one model pass per triple)."""
    return [Decoding(existence=e, resolve_samples=r, mirror=w, merge_deg=m, min_share=s, one_per_window=o,
                     reach_level=h, track_support=t)
            for e, r, w, m, s, o, h, t in itertools.product(existence, resolve, mirror, MERGE_DEG, min_share,
                                                            ONE_PER_WINDOW, REACH_LEVEL, track_support)]


def switches(text: str, flag: str) -> tuple[bool, ...]:
    """'off,on' -> (False, True); BenchError naming the flag otherwise."""
    words = [w.strip() for w in text.split(",") if w.strip()]
    if not words or any(w not in ("off", "on") for w in words):
        raise BenchError(f"{flag}: expected off, on or off,on, got {text!r}")
    return tuple(dict.fromkeys(w == "on" for w in words))


def floats(text: str, flag: str) -> tuple[float, ...]:
    """'0.5,0.6' -> (0.5, 0.6); BenchError naming the flag otherwise."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise BenchError(f"{flag}: expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise BenchError(f"{flag}: expected at least one number")
    return values


def scored(found: list[dict[str, Any]], truth: list[list[float]]) -> dict[str, float]:
    """detections and truth per clip -> count accuracy, F1, the share of single talkers named one and their mean."""
    m = detection_scores(found, truth)
    singles = [len(f["angles_deg"]) == 1 for f, t in zip(found, truth) if len(t) == 1]
    one = float(np.mean(singles)) if singles else 1.0
    return {"count_accuracy": m["count_accuracy"], "f1": m["f1"], "one_named_one": one,
            "score": (m["count_accuracy"] + m["f1"] + one) / 3, "matched_mae_deg": m["matched_mae_deg"]}


def calibrate(localizer: Localizer, waves: np.ndarray, truth: list[list[float]], spacing: float,
              grid: list[Decoding] | None = None) -> list[dict[str, Any]]:
    """waves [N, 2, T] at SR and their talkers -> one row per Decoding of the grid (its setting and scores), best
    first. The model runs once per existence threshold, window resolution and mirror setting (a window's copies are
    dropped as its slots are read); the clustering settings reuse those windows."""
    rows = []
    duration = waves.shape[-1] / SR
    grid = settings() if grid is None else grid
    for (existence, resolve, mirror), group in itertools.groupby(
            grid, key=lambda d: (d.existence, d.resolve_samples, d.mirror)):
        windowed = localizer.with_decoding(Decoding(existence=existence, resolve_samples=resolve, mirror=mirror))
        windows = [windowed(w, SR, mic_spacing=spacing).windows
                   for w in tqdm(waves, desc=f"existence {existence}, resolve {resolve} samples, mirror {mirror}")]
        for decoding in group:
            decoder = localizer.with_decoding(decoding)
            found = [{"angles_deg": sorted(float(a) for a in decoder.aggregate(list(w), duration, SR, spacing).angles_deg)}
                     for w in windows]
            rows.append({"decoding": dataclasses.asdict(decoding), **scored(found, truth)})
    return sorted(rows, key=lambda r: -r["score"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.split == "test":
        raise BenchError("--split test is the benchmark: calibrate on another split")
    SEEDS.update(split_seeds(args.split))
    sources = model_sources(args.model, args.run)
    (label, localizer), = load_localizers(sources[:1])
    if not localizer.counts:
        raise BenchError(f"{label}: the model has no count head; there is nothing to calibrate")
    data = load_sets(["count"], args.mixtures, Path(args.cache), Path(args.speech))["count"]
    truth = count_truth(data["truth"])
    spacing = float(data["meta"]["mic_spacing"])
    grid = settings(floats(args.existence, "--existence"), floats(args.resolve, "--resolve"),
                    floats(args.min_share, "--min-share"), TRACK_SUPPORT if localizer.tracks else (False,),
                    switches(args.mirror, "--mirror"))
    rows = calibrate(localizer, data["waves"], truth, spacing, grid)
    default = next((r for r in rows if r["decoding"] == dataclasses.asdict(Decoding())), rows[-1])
    print(f"{label} on the {args.split} count set ({len(truth)} clips): best settings, then the defaults")
    for r in rows[:8] + [default]:
        d = r["decoding"]
        print(f"  existence {d['existence']:.2f}  resolve {d['resolve_samples']:.2f} samples  merge {d['merge_deg']:4.0f} deg  min share {d['min_share']:.2f}  "
              f"one per window {str(d['one_per_window']):5}  reach {d['reach_level']:.1f}  track {str(d['track_support']):5}  "
              f"mirror {str(d['mirror']):5}  count {100 * r['count_accuracy']:5.1f}%  F1 {r['f1']:.3f}  one named one {100 * r['one_named_one']:3.0f}%  "
              f"matched MAE {r['matched_mae_deg']:.2f}")
    if args.write:
        best = Decoding(**rows[0]["decoding"])
        save_localizer(localizer.model, dataclasses.replace(localizer.spec, decoding=best), args.write)
        print(f"wrote {args.write}: {best}")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": str(sources[0][1]), "split": args.split, "seeds": SEEDS,
                                               "speech": args.speech, "machine": machine(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as err:
        sys.exit(f"calibrate_decoding: {err}")
