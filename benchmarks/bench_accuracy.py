"""Accuracy on real speech in held-out rooms: the model(s) beside GCC-PHAT, pyroomacoustics' DOA, DUET and chance,
on clean two-talker mixtures, in noise, with 0-3 talkers that come and go, and on other or imperfect arrays.

    python benchmarks/bench_accuracy.py [--speech shards/speech/eval] [--mixtures 400] [--cache bench_cache/accuracy]
                                        [--model FILE ...] [--run DIR ...] [--json out.json] [--sets a,b,c,d,e]
                                        [--srp-dnn CHECKOUT] [--real-array CHECKOUT]

Sets (benchmarks/accuracy_sets.py; each N mixtures of 3 s at 16 kHz, seeded, cached as .npy + JSON):
- a `fra`: this project's FRA-RIR rooms, seed protocol, eval seed stream (held-out rooms);
- b `pra`: rooms of the same prior rendered by pyroomacoustics' image-source model (a simulator never trained on);
- c `noise`: the pra mixtures with spherically diffuse noise at 0/10/20 dB SNR and sensor noise at 10 dB
  (`diffuse0`, `diffuse10`, `diffuse20`, `sensor10`);
- d: `count`: 0-3 talkers (equal shares), each speaking over a random sub-interval, pyroomacoustics rooms;
  `count20`: the same talkers, onsets and floor in rooms whose sources are at least 20 degrees apart;
- e `arrays`: mics 5, 8, 12 and 18 cm apart (`spacing5`, `spacing8`, `spacing12`, `spacing18`), a 10 cm pair with +-2 dB gain and +-0.3
  sample latency mismatch (`mismatch`), and the pra mixtures recorded at 8 kHz (`pra8k`);
- `real` (optional, needs --real-array CHECKOUT, a clone of github.com/polimi-ispl/rs-mnmf): `rsmnmf`, pairs of
  6-18 cm cut from a measured 32-mic array in an office, its RIRs convolved with the held-out speech, 1-3 talkers
  (benchmarks/real_array.py), scored for count accuracy, miss and false-alarm rates and the matched angle error.
Speech: held-out talkers (by default the Dutch voice acting packed by `bash examples/prepare_speech.sh`).

Methods and scoring (benchmarks/accuracy_methods.py): the model(s) through one function (model_detections),
frame-voting GCC-PHAT (counting with a peak threshold on the count set), pyroomacoustics' SRP-PHAT, MUSIC and
NormMUSIC, DUET, chance and the TDOA oracle's floor; lateral angle; per-slot metrics on the two-talker sets,
count accuracy, confusion and SELD-style F1 on the count set. Report: benchmarks/accuracy_report.py.
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy_methods import (FREQ_RANGE, load_localizers, model_sources, score_count_set, score_pair_set,  # noqa: E402
                              score_real_set)
from accuracy_report import (NOTES, PRINTED_NOTES, REAL_NOTE, breakdown_lines, build_summary,  # noqa: E402
                             count_table_lines, machine, real_build_summary, real_table_lines, table_lines)
from accuracy_srp_dnn import srp_dnn_methods  # noqa: E402
from accuracy_sets import (CLIP, COUNT_SETS, GAIN_DB, GROUP_NAMES, GROUPS, MIC_SPACING, RECIPE, SEEDS, SETS, SR,  # noqa: E402
                           BenchError, load_sets, pair_config, set_mic_spacing, speech_kind, split_seeds, timed)
from real_array import REAL_GROUP, REAL_SETS, REPOSITORY, check_checkout, load_real_set  # noqa: E402
from shards.array import SOUND_SPEED  # noqa: E402
from training.eval.prior import ORACLE_REFERENCE_SOURCES, oracle_reference_table  # noqa: E402

SET_HELP = ("a,b,c,d,e (= fra,pra,noise,count,arrays), real (needs --real-array), or any of them and the leaf sets "
            + ", ".join([*SETS, *REAL_SETS]))


def parse_sets(text: str) -> list[str]:
    """'a,b' / 'fra,pra' / 'noise' / 'diffuse10' -> leaf set names (deduplicated, in the order given)."""
    names = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        group = GROUP_NAMES.get(part, part)
        if group == REAL_GROUP:
            leaves = list(REAL_SETS)
        else:
            leaves = GROUPS.get(group, [part] if part in SETS or part in REAL_SETS else None)
        if leaves is None:
            raise BenchError(f"--sets: unknown set {part!r}; expected {SET_HELP} (comma-separated)")
        names.extend(leaf for leaf in leaves if leaf not in names)
    if not names:
        raise BenchError(f"--sets: expected {SET_HELP} (comma-separated)")
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--speech", default="shards/speech/eval", help="speech shards or an audio folder (held-out talkers)")
    p.add_argument("--mixtures", type=int, default=400, help="mixtures per set")
    p.add_argument("--cache", default="bench_cache/accuracy", help="where the sets are cached")
    p.add_argument("--model", action="append", default=[], help="a shipped model's name (wide, real, two-talker) or a weights file (repeatable; default: the shipped ones)")
    p.add_argument("--run", action="append", default=[], help="a run folder holding model.safetensors (repeatable)")
    p.add_argument("--json", help="write every number here")
    p.add_argument("--sets", default="a,b,c,d,e", help=SET_HELP)
    p.add_argument("--srp-dnn", metavar="CHECKOUT", help="a local checkout of BingYang-20/SRP-DNN: score it too")
    p.add_argument("--real-array", metavar="CHECKOUT",
                   help=f"a local clone of {REPOSITORY} (measured array RIRs, GPL-3, never copied here): the set rsmnmf")
    p.add_argument("--split", default="test",
                   help="'test' (the benchmark) or another name, e.g. 'dev': other rooms, talkers and noise to tune on "
                        "(give it other speech and another --cache)")
    p.add_argument("--freq-range", default=f"{FREQ_RANGE[0]:g},{FREQ_RANGE[1]:g}",
                   help="LO,HI in Hz for pyroomacoustics' DOA (default %(default)s)")
    return p.parse_args(argv)


def parse_freq_range(text: str) -> tuple[float, float]:
    """'300,8000' -> (300.0, 8000.0); BenchError unless 0 <= LO < HI <= sr / 2."""
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise BenchError(f"--freq-range: expected LO,HI in Hz, got {text!r}") from None
    if not 0 <= lo < hi <= SR / 2:
        raise BenchError(f"--freq-range: need 0 <= LO < HI <= {SR // 2} Hz, got {text!r}")
    return lo, hi


def oracle_reference(spacing: float, tables: dict[float, tuple[dict[str, torch.Tensor], float]]
                     ) -> tuple[dict[str, torch.Tensor], float]:
    """mic spacing, tables built so far -> (the TDOA oracle's reference table for the seed prior with that pair,
    seconds it took); each spacing's table is drawn once."""
    if spacing not in tables:
        tables[spacing] = timed(lambda: oracle_reference_table(pair_config(spacing), ORACLE_REFERENCE_SOURCES,
                                                               SEEDS["oracle_reference"]))
    return tables[spacing]


def real_result(name: str, data: dict[str, Any], models: list, extra: dict, args: argparse.Namespace) -> dict[str, Any]:
    """the real-array set -> its scores with what the report says about it."""
    result = score_real_set(data, models, extra)
    meta = data["meta"]
    result.update(description=REAL_SETS[name], mixtures=args.mixtures, talkers=len(meta["talkers"]),
                  spacings_cm=sorted({round(100 * float(s), 3) for s in data["spacing"]}),
                  build=real_build_summary(data), cached=data["cached"], build_seconds=meta["build_seconds"],
                  rooms=meta["rooms"], truth_check=meta["truth_check"], checkout=meta["params"]["checkout"],
                  pairs=meta["pairs"], cache=str(Path(args.cache) / name))
    return result


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """parsed CLI, the command line -> the report (also printed, and written to --json)."""
    names = parse_sets(args.sets)
    real = [name for name in names if name in REAL_SETS]
    if real and args.real_array is None:
        raise BenchError(f"--sets {','.join(real)}: needs --real-array CHECKOUT (git clone {REPOSITORY})")
    if real:
        check_checkout(args.real_array)
    freq_range = parse_freq_range(args.freq_range)
    if args.mixtures < 1:
        raise BenchError(f"--mixtures: must be >= 1, got {args.mixtures}")
    sources = model_sources(args.model, args.run)
    SEEDS.update(split_seeds(args.split))
    speech_dir = Path(args.speech)
    speech_kind(speech_dir)  # fail before any work
    models = load_localizers(sources)
    extra, srp_dnn_note = srp_dnn_methods(args.srp_dnn)
    notes = {**NOTES, "pra_doa": NOTES["pra_doa"].replace("{freq_range}", f"[{freq_range[0]:g}, {freq_range[1]:g}]")}
    if srp_dnn_note:
        notes["srp_dnn"] = srp_dnn_note
    if not sources:
        notes["model"] = "no model row: no shipped model exists and neither --model nor --run was given"
        print(f"note: {notes['model']}", flush=True)
    elif any(localizer.target != "lateral" for _, localizer in models):
        notes["model"] = "a model trained on azimuth is scored here on the lateral angle (its angles read as lateral)"
    if real:
        notes["real"] = REAL_NOTE
    data = load_sets([name for name in names if name not in REAL_SETS], args.mixtures, Path(args.cache), speech_dir)
    for name in real:
        data[name] = load_real_set(args.real_array, args.mixtures, Path(args.cache), speech_dir, args.split)
    tables: dict[float, tuple[dict[str, torch.Tensor], float]] = {}
    report: dict[str, Any] = {
        "benchmark": "bench_accuracy", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(), "command": command,
        "parameters": {"speech": str(speech_dir), "mixtures": args.mixtures, "cache": str(args.cache), "sets": names,
                       "models": [{"label": label, "path": str(path)} for label, path in sources],
                       "split": args.split, "seeds": SEEDS, "sr": SR, "clip_seconds": CLIP / SR, "gain_db": list(GAIN_DB),
                       "mic_spacing": MIC_SPACING, "sound_speed": SOUND_SPEED,
                       "freq_range_hz": list(freq_range), "grid_deg": [0, 180, 1],
                       "oracle_reference_sources": ORACLE_REFERENCE_SOURCES, "recipe": RECIPE,
                       "srp_dnn": args.srp_dnn, "real_array": args.real_array},
        "notes": notes, "sets": {},
    }
    for name in names:
        if name in REAL_SETS:
            report["sets"][name] = real_result(name, data[name], models, extra, args)
            print("\n".join(["", *real_table_lines(name, report["sets"][name])]), flush=True)
            continue
        meta, spacing = data[name]["meta"], set_mic_spacing(name)
        if name in COUNT_SETS:
            result = score_count_set(data[name], models, freq_range, extra)
        else:
            reference, ref_seconds = oracle_reference(spacing, tables)
            result = score_pair_set(data[name], models, reference, freq_range, spacing, extra)
            result["oracle_reference_seconds"] = ref_seconds
        result.update(description=SETS[name], mixtures=args.mixtures, talkers=len(meta["talkers"]),
                      mic_spacing=spacing, build=build_summary(data[name]), cached=data[name]["cached"],
                      build_seconds=meta["build_seconds"], rooms=meta["rooms"], cache=str(Path(args.cache) / name))
        report["sets"][name] = result
        lines = (count_table_lines(name, result) if name in COUNT_SETS
                 else [*table_lines(name, result), *breakdown_lines(result)])
        print("\n".join(["", *lines]), flush=True)
    printed = [k for k in PRINTED_NOTES if k not in ("pra_doa", "music") or set(names) - set(REAL_SETS)]
    print("\n" + "\n".join(f"note ({k}): {v}" for k, v in notes.items() if k in printed))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1, allow_nan=True))
        print(f"wrote {args.json}")
    return report


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        run(parse_args(argv), " ".join(["benchmarks/bench_accuracy.py", *argv]))
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
