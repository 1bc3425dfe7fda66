"""The real-recordings targets, checked on a bench_accuracy JSON: one markdown row per target, beside its baselines.

    python benchmarks/accuracy_targets.py RESULTS.json [MORE.json ...] --model "model real_ws" [--reference "model pretrained"]

`--model` is the method label of the candidate in the JSON (bench_accuracy labels a model "model <run or file
stem>"); `--reference` the shipped model's label, for the "clean sets regress by at most 10%" rule. Every number
is read from the JSON; nothing is measured here. A set missing from the JSON is reported as not measured. Several
JSON files (runs on the same cached sets, e.g. one with --srp-dnn on some sets) are merged set by set, method by
method, later files adding methods.
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
MAX_REGRESSION = 1.10  # the clean two-talker sets may get at most 10% worse than the shipped model


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


def target_rows(results: dict[str, Any], model: str, reference: str | None) -> list[tuple[str, str, str, str]]:
    """-> (target, the model's figure, the baselines' figures, verdict) per target of the issue's table."""
    rows = []
    mae = lambda s, label=model: metric(results, s, label, "binned_mae_deg")  # noqa: E731
    count_acc, f1 = metric(results, "count", model, "count_accuracy"), metric(results, "count", model, "f1")
    others = [f"{k}: F1 {v:.2f}" for k, v in baselines(results, "count", "f1", (model,)).items()]
    ceiling = results.get("sets", {}).get("count", {}).get("resolution_ceiling", {})
    if ceiling:
        others.append("ceiling (true angles, talkers closer than R merged): " + ", ".join(
            f"R {r} deg {fmt(c['count_accuracy'], True)}" for r, c in ceiling.items()))
    rows.append(("(d) count: accuracy >= 90%, F1 within 10 deg >= 0.90",
                 f"{fmt(count_acc, True)}, F1 {fmt(f1)}", "; ".join(others),
                 verdict(None if count_acc is None or f1 is None else count_acc >= 0.9 and f1 >= 0.9)))
    for name, snr in (("diffuse10", "10 dB"), ("sensor10", "sensor 10 dB")):
        value, gcc, srp = mae(name), mae(name, GCC), mae(name, SRP_DNN)
        if name == "diffuse10":
            goal, ok = "<= 0.5x GCC-PHAT and <= 6 deg", None if value is None or gcc is None else value <= 0.5 * gcc and value <= 6.0
            unmeasured = None
        else:
            goal = "<= 0.5x GCC-PHAT and below SRP-DNN"
            ok = None if value is None or gcc is None else value <= 0.5 * gcc and (srp is None or value < srp)
            unmeasured = "SRP-DNN" if srp is None else None
        rows.append((f"(c) {'diffuse ' if name == 'diffuse10' else ''}{snr}: binned MAE {goal}", fmt(value),
                     f"GCC-PHAT {fmt(gcc)}, SRP-DNN {fmt(srp)}", verdict(ok, unmeasured)))
    value = mae("diffuse0")
    best = baselines(results, "diffuse0", "binned_mae_deg", (model, reference or ""))
    rows.append(("(c) diffuse 0 dB: binned MAE below every baseline", fmt(value),
                 "; ".join(f"{k} {v:.2f}" for k, v in best.items()),
                 verdict(None if value is None or not best else value < min(best.values()),
                         None if SRP_DNN in best else "SRP-DNN")))
    clean = mae("pra")
    for name in ("spacing8", "spacing12", "mismatch"):
        value = mae(name)
        rows.append((f"(e) {name}: within 1.5x of the model's clean 10 cm figure", fmt(value),
                     f"clean {fmt(clean)}; GCC-PHAT {fmt(mae(name, GCC))}",
                     verdict(None if value is None or clean is None else value <= 1.5 * clean)))
    acc5 = metric(results, "pra", model, "acc5")
    rows.append(("(b) clean pyroomacoustics rooms: ACC@5 >= 90%", fmt(acc5, True),
                 f"GCC-PHAT {fmt(metric(results, 'pra', GCC, 'acc5'), True)}",
                 verdict(None if acc5 is None else acc5 >= 0.9)))
    if reference:
        for name in ("fra", "pra"):
            value, shipped = mae(name), mae(name, reference)
            rows.append((f"({'a' if name == 'fra' else 'b'}) {name}: binned MAE at most 10% above the shipped model's",
                         fmt(value), f"shipped {fmt(shipped)}",
                         verdict(None if value is None or shipped is None else value <= MAX_REGRESSION * shipped)))
    return rows


def markdown(rows: list[tuple[str, str, str, str]]) -> str:
    lines = ["| target | model | baselines (same inputs) | |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", help="bench_accuracy.py --json files (merged)")
    p.add_argument("--model", required=True, help="the candidate's method label")
    p.add_argument("--reference", help="the shipped model's method label")
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
