"""The real-recordings targets, checked on a bench_accuracy JSON: one markdown row per target, beside its baselines.

    python benchmarks/accuracy_targets.py RESULTS.json [MORE.json ...] --model "model real" [--reference "model two-talker"]

`--model` is the method label of the candidate in the JSON (bench_accuracy labels a model "model <run or file
stem>"); `--reference` the two-talker model's label, for the "clean sets within 1.3x of the two-talker model" rule.
Every number is read from the JSON; nothing is measured here. A set missing from the JSON is reported as not
measured. Several JSON files (runs on the same cached sets, e.g. one with --srp-dnn on some sets) are merged set by
set, method by method, later files adding methods.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

GCC = "GCC-PHAT (votes)"
SRP_DNN = "SRP-DNN (pretrained, zero-shot)"
CHANCE = "chance (median per slot)"
CLEAN_RATIO = 1.3  # the clean sets may be at most 1.3x the two-talker model's binned MAE
ARRAY_RATIO = 1.3  # other spacings, mismatched mics and 8 kHz input: at most 1.3x the model's own clean figure
SHIP_ACC5 = 0.80
CLEAN_ACC5 = 0.85  # clean pyroomacoustics rooms: ACC@5 goal of the default
ONE_TALKER = 0.95  # count20: one talker named one in this share of its clips
GCC_NOISE_RATIO = 0.6  # diffuse 10 dB: at most this times GCC-PHAT's binned MAE  # the shipping rule: a default model keeps ACC@5 >= 80% on clean pyroomacoustics rooms
NOISE_SETS = (("diffuse0", "diffuse 0 dB"), ("diffuse10", "diffuse 10 dB"), ("diffuse20", "diffuse 20 dB"),
              ("sensor10", "sensor 10 dB"))


def merged(files: list[dict[str, Any]]) -> dict[str, Any]:
    """bench_accuracy results -> one: per set, the union of their methods (a later file's method replaces an earlier
    one of the same label)."""
    sets: dict[str, Any] = {}
    for results in files:
        for name, data in results.get("sets", {}).items():
            entry = sets.setdefault(name, {"methods": {}})
            entry["methods"].update(data.get("methods", {}))
            if "resolution_ceiling" in data:
                entry["resolution_ceiling"] = data["resolution_ceiling"]
    return {"sets": sets}


def metric(results: dict[str, Any], set_name: str, label: str, key: str) -> float | None:
    """-> results['sets'][set]['methods'][label]['metrics'][key], or None where any level is missing."""
    try:
        return float(results["sets"][set_name]["methods"][label]["metrics"][key])
    except (KeyError, TypeError):
        return None


def by_count(results: dict[str, Any], set_name: str, label: str, count: str) -> float | None:
    """-> the count accuracy of a method on the clips of one true count, or None where it is missing."""
    try:
        return float(results["sets"][set_name]["methods"][label]["metrics"]["by_count"][count]["count_accuracy"])
    except (KeyError, TypeError):
        return None


def baselines(results: dict[str, Any], set_name: str, key: str, exclude: tuple[str, ...]) -> dict[str, float]:
    """Every non-model method's `key` on a set (chance and the candidates left out)."""
    methods = results.get("sets", {}).get(set_name, {}).get("methods", {})
    return {label: float(m["metrics"][key]) for label, m in methods.items()
            if m.get("kind") != "model" and label not in exclude and label != CHANCE and key in m.get("metrics", {})}


def fmt(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "not measured"
    return f"{100 * value:.1f}%" if percent else f"{value:.2f}"


def verdict(ok: bool | None, unmeasured: str | None = None) -> str:
    """-> 'not measured', '**missed**' or 'met'; a target met only because a baseline (`unmeasured`) is missing
    says so."""
    if ok is None:
        return "not measured"
    if not ok:
        return "**missed**"
    return f"met ({unmeasured} not measured)" if unmeasured else "met"


def count_rows(results: dict[str, Any], model: str) -> list[tuple[str, str, str, str]]:
    """The two count sets' rows: count20 (talkers >= 20 deg apart) against fixed goals, count (talkers anywhere)
    against its 10-degree resolution ceiling."""
    rows = []
    for name in ("count20", "count"):
        acc, f1 = metric(results, name, model, "count_accuracy"), metric(results, name, model, "f1")
        others = [f"{k}: {fmt(metric(results, name, k, 'count_accuracy'), True)}, F1 {v:.2f}"
                  for k, v in baselines(results, name, "f1", (model,)).items()]
        ceiling = results.get("sets", {}).get(name, {}).get("resolution_ceiling", {})
        if ceiling:
            others.append("ceiling (true angles, talkers closer than R merged): " + ", ".join(
                f"R {r} deg {fmt(c['count_accuracy'], True)}" for r, c in ceiling.items()))
        if name == "count20":
            goal = "(d) count20, talkers >= 20 deg apart: accuracy >= 90%, F1 within 10 deg >= 0.90"
            ok = None if acc is None or f1 is None else acc >= 0.9 and f1 >= 0.9
            one = by_count(results, name, model, "1")
            rows.append(("(d) count20, one talker named one: >= 95% of its clips", fmt(one, True),
                         "; ".join(f"{k}: {fmt(by_count(results, name, k, '1'), True)}"
                                   for k in baselines(results, name, "f1", (model,))),
                         verdict(None if one is None else one >= ONE_TALKER)))
        else:
            ten = ceiling.get("10", {}).get("count_accuracy")
            goal = "(d) count, talkers anywhere: accuracy >= 95% of the 10-deg resolution ceiling, F1 >= 0.85"
            ok = None if acc is None or f1 is None or ten is None else acc >= 0.95 * ten and f1 >= 0.85
            if ten is not None and acc is not None:
                others.insert(0, f"{100 * acc / ten:.1f}% of the 10-deg ceiling")
        rows.append((goal, f"{fmt(acc, True)}, F1 {fmt(f1)}", "; ".join(others), verdict(ok)))
    return rows


def target_rows(results: dict[str, Any], model: str, reference: str | None) -> list[tuple[str, str, str, str]]:
    """-> (target, the model's figure, the baselines' figures, verdict) per target of the table."""
    mae = lambda s, label=model: metric(results, s, label, "binned_mae_deg")  # noqa: E731
    rows = count_rows(results, model)
    for name, title in NOISE_SETS:
        value, gcc, srp = mae(name), mae(name, GCC), mae(name, SRP_DNN)
        goal = "below SRP-DNN" + (f" and <= {GCC_NOISE_RATIO:g}x GCC-PHAT" if name == "diffuse10" else "")
        ok = None if value is None or (name == "diffuse10" and gcc is None) else (
            (srp is None or value < srp) and (name != "diffuse10" or value <= GCC_NOISE_RATIO * gcc))
        rows.append((f"(c) {title}: binned MAE {goal}", fmt(value), f"GCC-PHAT {fmt(gcc)}, SRP-DNN {fmt(srp)}",
                     verdict(ok, "SRP-DNN" if srp is None else None)))
    clean = mae("pra")
    for name, title in (("spacing5", "5 cm"), ("spacing8", "8 cm"), ("spacing12", "12 cm"), ("spacing18", "18 cm"),
                        ("mismatch", "gain/latency mismatch"), ("pra8k", "8 kHz input")):
        value = mae(name)
        rows.append((f"(e) {title}: binned MAE within {ARRAY_RATIO:g}x of the model's clean 10 cm 16 kHz figure",
                     fmt(value), f"clean {fmt(clean)}; GCC-PHAT {fmt(mae(name, GCC))}",
                     verdict(None if value is None or clean is None else value <= ARRAY_RATIO * clean)))
    acc5 = metric(results, "pra", model, "acc5")
    gcc_acc5 = f"GCC-PHAT {fmt(metric(results, 'pra', GCC, 'acc5'), True)}"
    rows.append((f"(b) clean pyroomacoustics rooms: ACC@5 >= {100 * CLEAN_ACC5:g}%", fmt(acc5, True), gcc_acc5,
                 verdict(None if acc5 is None else acc5 >= CLEAN_ACC5)))
    rows.append((f"shipping rule: clean pyroomacoustics ACC@5 >= {100 * SHIP_ACC5:g}%", fmt(acc5, True), gcc_acc5,
                 verdict(None if acc5 is None else acc5 >= SHIP_ACC5)))
    if reference:
        for name in ("fra", "pra"):
            value, shipped = mae(name), mae(name, reference)
            rows.append((f"({'a' if name == 'fra' else 'b'}) {name}: binned MAE within {CLEAN_RATIO:g}x of the "
                         "two-talker model's", fmt(value), f"two-talker {fmt(shipped)}",
                         verdict(None if value is None or shipped is None else value <= CLEAN_RATIO * shipped)))
    return rows


def markdown(rows: list[tuple[str, str, str, str]]) -> str:
    lines = ["| target | model | baselines (same inputs) | |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", help="bench_accuracy.py --json files (merged)")
    p.add_argument("--model", required=True, help="the candidate's method label")
    p.add_argument("--reference", help="the two-talker model's method label")
    args = p.parse_args(argv)
    results = merged([json.loads(Path(path).read_text()) for path in args.results])
    labels = {label for s in results.get("sets", {}).values() for label in s.get("methods", {})}
    for label in filter(None, (args.model, args.reference)):
        if label not in labels:
            print(f"error: {' '.join(args.results)}: no method labelled {label!r} (labels: {sorted(labels)})", file=sys.stderr)
            return 2
    print(markdown(target_rows(results, args.model, args.reference)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
