"""The accuracy benchmark's report: printed tables per set, the notes that say how each number was made, the
machine."""
from __future__ import annotations

import math
import os
import platform
from typing import Any

import numpy as np
import pyroomacoustics as pra
import torch

from accuracy_methods import DETECTION_THRESHOLD_DEG, HOP, NFFT
from accuracy_sets import COUNT_FLOOR_DB, COUNT_MIN_ACTIVE_S, DIFFUSE_WAVES
from training.eval.prior import ORACLE_REFERENCE_SOURCES

NOTES = {
    "target": "lateral angle only: the angle between a source's direction and the +x array axis (mic 0 -> mic 1), "
              "0..180 degrees, which the TDOA fixes (azimuth is not identifiable from two mics, docs/protocol.md)",
    "metrics": "binned MAE per sorted slot: mean |floor(pred/5) - floor(true/5)| * 5 (the seed's metric); MAE in "
               "degrees; ACC@5/ACC@10: share of sources within 5/10 degrees; x real time: audio seconds per "
               "compute second (N * 3 s / wall time of the method, model loading excluded)",
    "count_metrics": f"count set: count accuracy (clips whose number of detections equals the number of talkers), "
                     f"4x4 confusion (rows: true count 0-3, columns: detected), SELD-style F1 of detections within "
                     f"{DETECTION_THRESHOLD_DEG:g} degrees after Hungarian matching per clip (ssl_model.metrics."
                     f"detection_metrics), and the mean error of all matched pairs",
    "speech": "mixture i of fra, pra, the noise and the array sets uses the same two talkers, crops and gains; only "
              "the rooms (and the noise or array) differ",
    "noise": f"diffuse: {DIFFUSE_WAVES} far-field plane waves from directions uniform on the sphere (a randomly "
             f"rotated Fibonacci lattice), each independent pink noise, delayed to each mic by an FFT phase "
             f"(benchmarks/accuracy_sets.diffuse_noise, independent of the training noise code); sensor: independent "
             f"white noise per mic; SNR = mixture power / noise power over both mics; then peak-normalized",
    "count": f"count set: 0/1/2/3 talkers for clip i % 4; each active talker speaks over a random sub-interval "
             f"(length U({COUNT_MIN_ACTIVE_S:g} s, 3 s), onset uniform, 10 ms raised-cosine ramps) of a 3 s clip in a "
             f"pyroomacoustics room with three sources; a diffuse pink floor {COUNT_FLOOR_DB:g} dB below one talker "
             f"speaking throughout (so a 0-talker clip is that floor alone)",
    "arrays": "spacing5/8/12/18: the pra scenes drawn again with the mics 5/8/12/18 cm apart (same seeds and speech); mismatch: "
              "the pra mixtures with mic 1 +2 or -2 dB in gain and +0.3 or -0.3 sample in latency (fractional delay "
              "by FFT phase), signs drawn per mixture",
    "gcc_phat": "ssl_model.baselines.gcc_phat, method 'votes' (512-sample Hann frames, hop 256, each voiced frame "
                "votes for its strongest lag on a 1/16-sample grid; the two top peaks), the set's d, c = 340 m/s; "
                "on the count set ssl_model.baselines.gcc_phat_count: only frames whose GCC-PHAT peak >= 0.25 vote, "
                "a peak is a talker when its +-0.5 sample vote mass is >= 10% of the voiced frames and >= 0.35 x the "
                "strongest (thresholds set a priori, not tuned on the benchmark)",
    "duet": "ssl_model.baselines.duet (Yilmaz and Rickard 2004): 1024-sample frames, bins 100 Hz .. c / 2d, weights "
            "|X0 X1|, (attenuation, delay) histogram; two-slot sets: its two strongest peaks; count set: peaks with "
            ">= 7.5% of the histogram mass and >= 0.2 x the strongest",
    "pra_doa": f"pyroomacoustics.doa on one STFT per mixture (nfft {NFFT}, hop {HOP}, periodic Hann, built once and "
               f"handed to each algorithm; its time is counted in each), mics at x = -d/2, +d/2, c = 340 m/s, "
               "far field, azimuth grid 0..180 degrees in 1-degree steps (pra's azimuth from +x equals the lateral "
               "angle of a source at the array's height; for 2-D mic positions it is the lateral estimate), "
               "freq_range {freq_range} Hz (by default the full band above 300 Hz: everything above c / 2d = 1.7 kHz "
               "aliases at 10 cm spacing, and only a wide band averages the grating lobes out). The two estimates "
               "are the two largest local maxima of the spatial spectrum on the half-circle grid (not pra's circular "
               "peak finder), sorted ascending; with one maximum only, it is used twice. On the count set SRP-PHAT "
               "and NormMUSIC are handed the true count (they cannot count) and give that many maxima",
    "music": "MUSIC and NormMUSIC run with a 1-dimensional signal subspace (num_src=1): with M = 2 mics and 2 "
             "sources the noise subspace would be empty; the two largest peaks of the resulting pseudo-spectrum "
             "give the two estimates",
    "chance": "the best constant prediction per sorted slot: the per-slot median of the true angles (binned MAE "
              "from ssl_model.oracle.chance_binned_mae, MAE/ACC from the median angle)",
    "oracle_floor": f"the TDOA oracle's expected binned MAE on the lateral angle (ssl_model.oracle): p(class | tdoa) "
                    f"from the 50 nearest in TDOA of {ORACLE_REFERENCE_SOURCES} reference sources drawn from the seed "
                    f"prior with the set's mic spacing (leave-one-out among the set's own sources given beside it "
                    f"for comparison). For the pyroomacoustics sets the prior is the seed prior minus the scenes "
                    f"inverse Sabine rejects",
    "pra_rooms": "pra.inverse_sabine(rt60, room_dim) -> (energy absorption, max order); pra.ShoeBox(room_dim, "
                 "fs=16000, materials=pra.Material(absorption), max_order=order), pyroomacoustics' fractional-delay "
                 "image sources (a fixed 40-sample offset common to both mics); RIRs cut at ceil(1.5 * 16000 * RT60) "
                 "samples (the tail energy dropped is reported)",
}
REAL_NOTE = ("rsmnmf: pairs (channels i, i + k; k = 2..6: 6-18 cm) cut from a measured 32-mic array (github.com/"
             "polimi-ispl/rs-mnmf, an office of T60 ~40 ms, 9 loudspeaker positions 0.25-0.9 m from the array), its "
             "RIRs resampled to 16 kHz and convolved with held-out speech, 1/2/3 talkers (equal shares, equal per "
             "spacing) whose delays at the pair are >= 1 sample apart; truth: the measured direct-path delay of the "
             "pair (cross-correlation of the 1.5 ms around the direct paths of the 48 kHz responses) read as "
             "arccos(-c tau / d), c = 340 m/s; each method is called once per spacing with it; GCC-PHAT (votes) is "
             "handed the true count; scores: benchmarks/accuracy_methods.rate_scores (benchmarks/real_array.py)")
PRINTED_NOTES = ("pra_doa", "music", "model", "srp_dnn", "real")


def fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, pattern)


def metric_cells(m: dict[str, float]) -> str:
    """flat metrics -> 'slot1 slot2 MAE ACC@5 ACC@10' cells (MAEs in degrees, accuracies in %)."""
    acc5 = None if m["acc5"] is None else 100 * m["acc5"]
    acc10 = None if m["acc10"] is None else 100 * m["acc10"]
    return (f"{fmt(m['binned_mae_deg_slot1'], '6.2f'):>6s} {fmt(m['binned_mae_deg_slot2'], '6.2f'):>6s} "
            f"{fmt(m['mae_deg'], '6.2f'):>6s} {fmt(acc5, '6.1f'):>6s} {fmt(acc10, '6.1f'):>6s}")


def set_header(name: str, result: dict[str, Any]) -> list[str]:
    return [f"set {name}: {result['description']}",
            f"  {result['mixtures']} mixtures, {result['talkers']} talkers, mics {100 * result['mic_spacing']:g} cm "
            f"apart; {result['build']}"]


def table_lines(name: str, result: dict[str, Any]) -> list[str]:
    """one two-talker set's result -> its printed table (rows: methods)."""
    floor_label = "oracle floor (exact TDOA, dense)"
    width = max(len(floor_label), *(len(label) for label in result["methods"]))
    lines = [*set_header(name, result),
             "  lateral angle; slot1/slot2: binned MAE (deg); MAE (deg); ACC@5/ACC@10 (%); x real time = audio s / "
             "compute s",
             f"  {'method':{width}s} {'slot1':>6s} {'slot2':>6s} {'MAE':>6s} {'ACC@5':>6s} {'ACC@10':>6s} "
             f"{'seconds':>8s} {'x real time':>11s}"]
    for label, row in result["methods"].items():
        lines.append(f"  {label:{width}s} {metric_cells(row['metrics'])} {fmt(row['seconds'], '8.1f'):>8s} "
                     f"{fmt(row['x_real_time'], '11.1f'):>11s}")
    floor = result["oracle_floor"]
    cells = metric_cells({**floor, "mae_deg": None, "acc5": None, "acc10": None})
    lines.append(f"  {floor_label:{width}s} {cells} {'-':>8s} {'-':>11s}")
    return lines


def breakdown_lines(result: dict[str, Any]) -> list[str]:
    """one two-talker set's result -> the model(s) and GCC-PHAT broken down by RT60 and source separation."""
    chosen = [label for label, row in result["methods"].items() if row["kind"] in ("model", "gcc_phat")]
    width = max(len(label) for label in chosen)
    lines = []
    for factor, title in (("rt60", "RT60 (s)"), ("separation", "separation (deg)")):
        lines.append(f"  by {title}:")
        lines.append(f"    {'method':{width}s} {'bin':>8s} {'n':>4s} {'slot1':>6s} {'slot2':>6s} {'MAE':>6s} "
                     f"{'ACC@5':>6s} {'ACC@10':>6s}")
        for label in chosen:
            for bin_label, m in result["methods"][label]["metrics"][f"by_{factor}"].items():
                lines.append(f"    {label:{width}s} {bin_label:>8s} {int(m['count']):4d} {metric_cells(m)}")
    return lines


def count_table_lines(name: str, result: dict[str, Any]) -> list[str]:
    """the count set's result -> its printed table (count accuracy, F1, precision, recall, matched error, speed)
    and each method's confusion matrix."""
    width = max(len(label) for label in result["methods"])
    lines = [*set_header(name, result),
             f"  count acc (%); F1 / precision / recall of detections within {DETECTION_THRESHOLD_DEG:g} deg "
             "(Hungarian); matched MAE (deg)",
             f"  {'method':{width}s} {'count':>6s} {'F1':>6s} {'prec':>6s} {'recall':>6s} {'MAE':>6s} {'seconds':>8s} "
             f"{'x real time':>11s}"]
    for label, row in result["methods"].items():
        m = row["metrics"]
        lines.append(f"  {label:{width}s} {fmt(100 * m['count_accuracy'], '6.1f'):>6s} {fmt(m['f1'], '6.3f'):>6s} "
                     f"{fmt(m['precision'], '6.3f'):>6s} {fmt(m['recall'], '6.3f'):>6s} "
                     f"{fmt(m['matched_mae_deg'], '6.2f'):>6s} {fmt(row['seconds'], '8.1f'):>8s} "
                     f"{fmt(row['x_real_time'], '11.1f'):>11s}")
    lines.append("  confusion (rows: true 0-3 talkers; columns: detected 0-3), F1 by true count:")
    for label, row in result["methods"].items():
        m = row["metrics"]
        rows = " | ".join(" ".join(f"{c:3d}" for c in r) for r in m["confusion"])
        by_count = " ".join(f"{k}:{fmt(v['f1'], '.2f')}" for k, v in m["by_count"].items())
        lines.append(f"    {label:{width}s} [{rows}]  F1 {by_count}")
    ceilings = result.get("resolution_ceiling", {})
    if ceilings:
        lines.append("  ceiling: the true angles with talkers closer than R merged (no method of resolution R does "
                     "better): " + "; ".join(f"R {r} deg {100 * c['count_accuracy']:.1f}%, F1 {c['f1']:.3f}"
                                             for r, c in ceilings.items()))
    return lines


def build_summary(data: dict[str, Any]) -> str:
    """set data -> 'cached (built in ...)' or 'built in ...', with the pra rejections."""
    meta = data["meta"]
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in meta["build_seconds"].items())
    text = f"cached (built {meta.get('built', '?')}: {parts})" if data["cached"] else f"built now: {parts}"
    rooms = meta["rooms"]
    if "rejected_by_inverse_sabine" in rooms:
        text += (f"; inverse Sabine rejected {rooms['rejected_by_inverse_sabine']} of {rooms['drawn']} scenes drawn; "
                 f"max order {rooms['max_order_range'][0]}-{rooms['max_order_range'][1]}; RIR cut at 1.5 RT60 drops "
                 f"<= {rooms['rir_cut_tail_db_max']:.0f} dB of the energy")
    return text


def machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__, "pyroomacoustics": pra.__version__}


def rate_cells(m: dict[str, Any]) -> str:
    """rate_scores -> 'count MDR FAR false F1 MAE' cells (rates in %, MAE in degrees)."""
    def pct(key: str) -> str:
        return fmt(None if m[key] is None else 100 * m[key], "6.1f")
    return (f"{pct('count_accuracy'):>6s} {pct('mdr'):>6s} {pct('far'):>6s} {pct('false_share'):>6s} "
            f"{fmt(m['f1'], '6.3f'):>6s} {fmt(m['matched_mae_deg'], '6.2f'):>6s}")


def real_table_lines(name: str, result: dict[str, Any]) -> list[str]:
    """the real-array set's result -> its printed tables: every method overall, then by true talker count and by
    pair spacing, and each method's count confusion."""
    width = max(len(label) for label in result["methods"])
    header = (f"{'count':>6s} {'MDR':>6s} {'FAR':>6s} {'false':>6s} {'F1':>6s} {'MAE':>6s}")
    lines = [f"set {name}: {result['description']}",
             f"  {result['mixtures']} clips, {result['talkers']} talkers, pairs {result['spacings_cm']} cm; "
             f"{result['build']}",
             f"  count acc (%); MDR = missed talkers / talkers, FAR = false detections / talkers (SRP-DNN's rates, %); "
             f"false = false detections / detections (%); hits within {DETECTION_THRESHOLD_DEG:g} deg (gated "
             "Hungarian); MAE of the hits (deg)",
             f"  {'method':{width}s} {header} {'seconds':>8s} {'x real time':>11s}"]
    for label, row in result["methods"].items():
        lines.append(f"  {label:{width}s} {rate_cells(row['metrics'])} {fmt(row['seconds'], '8.1f'):>8s} "
                     f"{fmt(row['x_real_time'], '11.1f'):>11s}"
                     + (f"  (not asked at {row['not_scored_cm']} cm: outside its spacings)" if row.get("not_scored_cm") else ""))
    for factor, title in (("by_count", "true talkers"), ("by_spacing", "spacing (cm)")):
        lines.append(f"  by {title}:")
        lines.append(f"    {'method':{width}s} {'bin':>6s} {'clips':>5s} {header}")
        for label, row in result["methods"].items():
            for key, m in row["metrics"][factor].items():
                lines.append(f"    {label:{width}s} {key:>6s} {m['clips']:5d} {rate_cells(m)}")
    lines.append("  confusion (rows: true 0-3 talkers; columns: detected 0-3):")
    for label, row in result["methods"].items():
        rows = " | ".join(" ".join(f"{c:3d}" for c in r) for r in row["metrics"]["confusion"][1:])
        lines.append(f"    {label:{width}s} [{rows}]")
    singles = {label: row["metrics"].get("one_talker_windows") for label, row in result["methods"].items()}
    if any(singles.values()):
        lines.append("  one-talker clips, their 1.5 s windows with signal (GCC-PHAT: every window, handed the count): "
                     f"named one talker, and named it within {next(s for s in singles.values() if s)['within_deg']:g} deg:")
        for label, w in singles.items():
            if w and w["windows"]:
                lines.append(f"    {label:{width}s} {w['named_one']} of {w['windows']} ({100 * w['named_one'] / w['windows']:.1f}%), "
                             f"within: {w['named_one_within']} ({100 * w['named_one_within'] / w['windows']:.1f}%)")
    return lines


def real_build_summary(data: dict[str, Any]) -> str:
    """the real-array set's data -> 'cached (built ...)' or 'built now ...', with its truth check."""
    meta = data["meta"]
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in meta["build_seconds"].items())
    text = f"cached (built {meta.get('built', '?')}: {parts})" if data["cached"] else f"built now: {parts}"
    fit = meta["truth_check"]["wavefront_fit"]
    return (text + f"; measured delays vs point sources on a line: rms {fit['rms_samples']:.2f} samples at 48 kHz, "
            f"{fit['rms_samples_with_offsets']:.3f} with a latency per channel")
