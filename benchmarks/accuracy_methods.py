"""The accuracy benchmark's methods and scoring: the model(s), GCC-PHAT, pyroomacoustics' SRP-PHAT / MUSIC /
NormMUSIC, DUET, chance and the TDOA oracle floor on the two-slot sets; counting and location-aware detection
on the count set; on the real-array set, the same counting methods with SRP-DNN's miss and false-alarm rates.
Every method sees the same waves; every time is wall time of the method alone."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyroomacoustics as pra
import torch
from einops import rearrange
from scipy.optimize import linear_sum_assignment
from tqdm.auto import tqdm

from accuracy_sets import SR, BenchError, at_bench_rate, timed
from shards.array import SOUND_SPEED
from ssl_model.baselines import duet, gcc_phat, gcc_phat_count
from ssl_model.loading import PRETRAINED_DIR, PRETRAINED_NAMES, WEIGHTS, CheckpointError, model_weights
from ssl_model.localizer import LocalizeError, Localizer, run_weights
from ssl_model.metrics import count_confusion, detection_metrics, localization_metrics
from ssl_model.oracle import chance_binned_mae, oracle_floor_binned_mae
from ssl_model.stream_audio import window_starts
from ssl_model.targets import angle_to_class

NFFT, HOP = 512, 256
# Hz handed to pyroomacoustics' DOA (--freq-range). The full band above 300 Hz: with 10 cm spacing everything above
# c / 2d = 1.7 kHz aliases, and only a wide band averages the grating lobes out. On a 40-mixture dev set
# (both sets) [300, 3500] gave SRP-PHAT a lateral MAE of 34-36 degrees (chance level), [300, 8000] 16-20.
FREQ_RANGE = (300.0, 8000.0)
GRID_DEG = np.arange(0.0, 181.0, 1.0)  # a linear array along x cannot tell front from back: [0, 180] suffices
PRA_METHODS = ("SRP", "MUSIC", "NormMUSIC")
PRA_COUNT_METHODS = ("SRP", "NormMUSIC")  # on the count set, given the true count
PRA_LABELS = {"SRP": "SRP-PHAT (pra)", "MUSIC": "MUSIC (pra)", "NormMUSIC": "NormMUSIC (pra)"}
RT60_BINS = (0.1, 0.3, 0.5, 0.7)
SEPARATION_BINS = (0.0, 10.0, 20.0, 40.0, 180.0)
DETECTION_THRESHOLD_DEG = 10.0
ONE_WINDOW_DEG = 5.0  # the real-recordings row: one talker named one in a window, within this many degrees
ONE_WINDOW_S = 1.5  # GCC-PHAT's windows for that row: the default localizer's


# ---------------------------------------------------------------------------------------------- classical methods


def gcc_angles(waves: np.ndarray, mic_spacing: float = 0.1, chunk: int = 32) -> np.ndarray:
    """waves [N, 2, T] -> frame-voting GCC-PHAT lateral angles [N, 2], sorted."""
    out = [gcc_phat(torch.from_numpy(waves[i:i + chunk]), sr=SR, mic_spacing=mic_spacing, sound_speed=SOUND_SPEED)
           for i in tqdm(range(0, len(waves), chunk), desc="GCC-PHAT", unit="batch")]
    return torch.cat(out).double().numpy()


def ranked_batches(fn: Callable[..., dict[str, torch.Tensor]], waves: np.ndarray, mic_spacing: float, label: str,
                   chunk: int = 16) -> dict[str, np.ndarray]:
    """a counting baseline (gcc_phat_count, duet), waves [N, 2, T] -> its outputs over all mixtures
    {'count': [N], 'lateral_deg': [N, P] ranked, ...}."""
    parts = [fn(torch.from_numpy(waves[i:i + chunk]), sr=SR, mic_spacing=mic_spacing, sound_speed=SOUND_SPEED)
             for i in tqdm(range(0, len(waves), chunk), desc=label, unit="batch")]
    return {key: torch.cat([p[key] for p in parts]).double().numpy() for key in ("count", "lateral_deg")}


def detections_of(ranked: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """counting baseline outputs -> per mixture {'angles_deg': the first `count` candidates sorted, 'count'}."""
    return [{"angles_deg": sorted(float(a) for a in row[:int(k)]), "count": int(k)}
            for row, k in zip(ranked["lateral_deg"], ranked["count"])]


def top_two(ranked: dict[str, np.ndarray]) -> np.ndarray:
    """counting baseline outputs -> its two strongest candidates [N, 2], sorted (two-slot scoring)."""
    return np.sort(ranked["lateral_deg"][:, :2], axis=1)


def stft(wave: np.ndarray) -> np.ndarray:
    """wave [M, T] -> X complex [M, NFFT//2+1, frames] (periodic Hann, hop HOP): pyroomacoustics' DOA input layout."""
    window = np.hanning(NFFT + 1)[:-1]
    frames = np.lib.stride_tricks.sliding_window_view(wave, NFFT, axis=-1)[:, ::HOP]  # [M, frames, NFFT]
    return np.fft.rfft(frames * window, axis=-1).transpose(0, 2, 1)


def make_doa(name: str, mic_spacing: float = 0.1) -> pra.doa.DOA:
    """'SRP' | 'MUSIC' | 'NormMUSIC' -> pyroomacoustics DOA object on the half-circle grid (MUSIC-type: num_src=1),
    mics at -d/2 and +d/2 on x."""
    mics = np.array([[-mic_spacing / 2, mic_spacing / 2], [0.0, 0.0]])  # [xy, mics] around the array centre
    return pra.doa.algorithms[name](mics, SR, NFFT, c=SOUND_SPEED, num_src=2 if name == "SRP" else 1,
                                    azimuth=np.deg2rad(GRID_DEG))


def grid_peaks(values: np.ndarray, count: int = 2) -> np.ndarray:
    """spectrum on the half-circle grid [G] -> indices [count] of its largest local maxima (ends count, no wrap);
    fewer maxima than `count`: the best repeated."""
    v = np.asarray(values, float)
    left = np.concatenate(([-np.inf], v[:-1]))
    right = np.concatenate((v[1:], [-np.inf]))
    maxima = np.flatnonzero((v >= left) & (v > right))
    if maxima.size == 0:
        maxima = np.array([int(np.argmax(v))])
    best = maxima[np.argsort(-v[maxima], kind="stable")][:count]
    return np.concatenate((best, np.full(count - best.size, best[0])))


def doa_angles(doa: pra.doa.DOA, X: np.ndarray, freq_range: tuple[float, float] = FREQ_RANGE,
               count: int = 2) -> np.ndarray:
    """DOA object, X [M, F, frames] -> `count` lateral angles [count] in degrees, sorted."""
    if count == 0:
        return np.zeros(0)
    doa.locate_sources(X, freq_range=list(freq_range))
    return np.sort(GRID_DEG[grid_peaks(doa.grid.values, count)])


def pra_angles(waves: np.ndarray, freq_range: tuple[float, float] = FREQ_RANGE, mic_spacing: float = 0.1,
               methods: tuple[str, ...] = PRA_METHODS, counts: np.ndarray | None = None
               ) -> dict[str, tuple[list[np.ndarray], float]]:
    """waves [N, 2, T] -> {algorithm: (per mixture sorted angles (2 each, or counts[i] each), seconds incl. the
    shared STFT)}."""
    doas = {name: make_doa(name, mic_spacing) for name in methods}
    angles: dict[str, list[np.ndarray]] = {name: [] for name in methods}
    seconds = dict.fromkeys(methods, 0.0)
    for n in tqdm(range(len(waves)), desc="pyroomacoustics DOA", unit="mixture"):
        X, stft_seconds = timed(lambda: stft(waves[n].astype(np.float64)))
        count = 2 if counts is None else int(counts[n])
        for name, doa in doas.items():
            found, spent = timed(lambda: doa_angles(doa, X, freq_range, count))
            angles[name].append(found)
            seconds[name] += spent + stft_seconds
    return {name: (angles[name], seconds[name]) for name in methods}


def chance_angles(true_sorted: np.ndarray) -> np.ndarray:
    """sorted truth [N, 2] -> the constant per-slot median [N, 2] (the lower median, like torch)."""
    median = torch.from_numpy(true_sorted).double().median(dim=0).values.numpy()
    return np.broadcast_to(median, true_sorted.shape).copy()


# ---------------------------------------------------------------------------------------------- the model(s)


def model_sources(models: list[str], runs: list[str]) -> list[tuple[str, Path]]:
    """--model (a shipped model's name or a weights file) / --run values -> [(label, weights path)]; every shipped
    model there is when neither is given; BenchError for a missing file or run. A shipped model is labelled by its name."""
    found = []
    try:
        for run in runs:
            found.append((f"model {Path(run).name}", run_weights(run)))
    except LocalizeError as err:
        raise BenchError(str(err)) from None
    shipped = [name for name in PRETRAINED_NAMES if (PRETRAINED_DIR / name / WEIGHTS).is_file()]
    for model in models or ([] if runs else shipped):
        try:
            path = model_weights(model)
        except CheckpointError as err:
            raise BenchError(f"--model {err}") from None
        found.append((f"model {model if model in PRETRAINED_NAMES else path.name}", path))
    labels: dict[str, int] = {}
    unique = []
    for label, path in found:  # two runs named alike keep distinct rows
        labels[label] = labels.get(label, 0) + 1
        unique.append((label if labels[label] == 1 else f"{label} #{labels[label]}", path))
    return unique


def load_localizers(sources: list[tuple[str, Path]]) -> list[tuple[str, Localizer]]:
    """[(label, weights path)] -> [(label, Localizer on the CPU)]; BenchError naming a file that does not load."""
    try:
        return [(label, Localizer.from_file(path, "cpu")) for label, path in sources]
    except LocalizeError as err:
        raise BenchError(str(err)) from None


def model_detections(localizer: Localizer, waves: np.ndarray, sr: int, mic_spacing: float,
                     label: str = "model") -> list[dict[str, Any]]:
    """THE one place a model is asked: waves [N, 2, T] at sr, the pair's spacing (m) -> per mixture
    {'angles_deg': sorted, 'count', 'ranked': candidates strongest first, 'windows': each window with signal's angles}.

    A model that takes the spacing is given the pair's; a model trained for one spacing is not told (it assumes
    its own: what a user of it gets on another array). A model that counts names 0-3 talkers; 'ranked' lists the
    recording's talkers and weaker candidates, then the slots its windows left empty (most probable first), so the
    two-slot metrics of the two-talker sets read its two strongest directions. The two-talker model names two.
    """
    low, high = localizer.spacing_range
    spacing = mic_spacing if low < high else None
    out = []
    for wave in tqdm(waves, desc=label, unit="mixture"):
        result = localizer(wave, sr, mic_spacing=spacing)
        empty = [(e, a) for w in result.windows for e, a in zip(w.existence[w.count:], w.slot_angles_deg[w.count:])]
        ranked = [float(a) for a in result.candidates_deg] + [float(a) for _, a in sorted(empty, key=lambda p: -p[0])]
        windows = [[float(a) for a in w.angles_deg] for w in result.windows if not w.silent]
        out.append({"angles_deg": sorted(float(a) for a in result.angles_deg), "count": result.count, "ranked": ranked,
                    "windows": windows})
    return out


def two_slots(detections: list[dict[str, Any]]) -> np.ndarray:
    """per mixture detections -> two sorted angles [N, 2] for the two-slot metrics: the two strongest candidates
    when a method ranks them ('ranked', strongest first), else its detections; two as they are, one repeated, none
    as 90 degrees twice, more than two: the first two in ascending order."""
    rows = []
    for d in detections:
        angles = (d["ranked"][:2] if d.get("ranked") else sorted(d["angles_deg"])) or [90.0]
        rows.append((angles * 2)[:2] if len(angles) == 1 else angles[:2])
    return np.sort(np.array(rows, dtype=np.float64), axis=1)


# ---------------------------------------------------------------------------------------------- scoring


def score(pred: np.ndarray, true_sorted: np.ndarray, rt60: np.ndarray) -> dict[str, Any]:
    """pred and sorted truth [N, 2] (degrees), rt60 [N] -> localization_metrics with RT60 and separation breakdowns."""
    true_t = torch.from_numpy(true_sorted).double()
    factors = {"rt60": torch.from_numpy(rt60).double(), "separation": true_t[:, 1] - true_t[:, 0]}
    bins = {"rt60": RT60_BINS, "separation": SEPARATION_BINS}
    return localization_metrics(torch.from_numpy(np.asarray(pred, float)).double(), true_t, factors, bins)


def scenes_tdoa(meta: dict[str, Any]) -> torch.Tensor:
    """set metadata -> direct-path TDOA [N, 2] in seconds, in source order."""
    return torch.tensor([[s["tdoa_s"] for s in scene["sources"]] for scene in meta["scenes"]], dtype=torch.float64)


def oracle_floors(meta: dict[str, Any], truth: np.ndarray, reference: dict[str, torch.Tensor]) -> dict[str, Any]:
    """set metadata, truth [N, 2] (source order), reference table -> lateral oracle floor per slot: dense and
    leave-one-out."""
    tdoa, lateral = scenes_tdoa(meta), torch.from_numpy(truth).double()
    dense = oracle_floor_binned_mae(tdoa=tdoa, angles_deg=lateral, reference=(reference["tdoa_s"], reference["lateral_deg"]))
    out = {"binned_mae_deg_slot1": float(dense[0]), "binned_mae_deg_slot2": float(dense[1]),
           "binned_mae_deg": float(dense.mean())}
    if len(truth) >= 2:
        loo = oracle_floor_binned_mae(tdoa=tdoa, angles_deg=lateral)
        out["leave_one_out"] = {"binned_mae_deg_slot1": float(loo[0]), "binned_mae_deg_slot2": float(loo[1])}
    return out


ExtraMethods = dict[str, Callable[[np.ndarray, float], list[dict[str, Any]]]]


def score_pair_set(data: dict[str, Any], models: list[tuple[str, Localizer]], reference: dict[str, torch.Tensor],
                   freq_range: tuple[float, float] = FREQ_RANGE, mic_spacing: float = 0.1,
                   extra_methods: ExtraMethods | None = None) -> dict[str, Any]:
    """one two-talker set's waves and truth, localizers, oracle reference, optional further methods (waves [N, 2, T],
    spacing -> detections) -> {'methods': {label: result}, 'oracle_floor', ...}. A set stored at another rate
    (meta 'sr') goes to the models at that rate (they resample, as for a user's file) and to the classical methods
    resampled to SR (their grids and bands are set for it)."""
    sr = int(data["meta"].get("sr", SR))
    recorded, rt60 = data["waves"], data["rt60"].astype(np.float64)
    waves = at_bench_rate(recorded, sr)
    true_sorted = np.sort(data["truth"].astype(np.float64), axis=1)
    audio_seconds = len(waves) * waves.shape[-1] / SR
    methods: dict[str, dict[str, Any]] = {}

    def add(label: str, kind: str, pred: np.ndarray, seconds: float | None, **extra: Any) -> None:
        pred = np.asarray(pred, float)
        if pred.shape != true_sorted.shape or not np.isfinite(pred).all():
            raise BenchError(f"{label}: predictions of shape {pred.shape} or not finite")
        methods[label] = {"kind": kind, "seconds": seconds,
                          "x_real_time": audio_seconds / seconds if seconds else None,
                          "metrics": score(pred, true_sorted, rt60), **extra,
                          "angles_deg": np.round(pred, 3).tolist()}

    for label, localizer in models:
        found, seconds = timed(lambda: model_detections(localizer, recorded, sr, mic_spacing, label))
        add(label, "model", two_slots(found), seconds, target=localizer.target, clip_seconds=localizer.window_s)
    pred, seconds = timed(lambda: gcc_angles(waves, mic_spacing))
    add("GCC-PHAT (votes)", "gcc_phat", pred, seconds)
    for name, (pred, seconds) in pra_angles(waves, freq_range, mic_spacing).items():
        add(PRA_LABELS[name], f"pra_{name}", np.array(pred), seconds, num_src=2 if name == "SRP" else 1)
    ranked, seconds = timed(lambda: ranked_batches(duet, waves, mic_spacing, "DUET"))
    add("DUET (two strongest)", "duet", top_two(ranked), seconds)
    for label, method in (extra_methods or {}).items():
        found, seconds = timed(lambda: method(waves, mic_spacing))
        add(label, "extra", two_slots(found), seconds)
    chance = chance_angles(true_sorted)
    add("chance (median per slot)", "chance", chance, None)
    binned = chance_binned_mae(angle_to_class(torch.from_numpy(true_sorted)))
    methods["chance (median per slot)"]["metrics"].update(
        binned_mae_deg_slot1=float(binned[0]), binned_mae_deg_slot2=float(binned[1]), binned_mae_deg=float(binned.mean()))
    return {"methods": methods, "oracle_floor": oracle_floors(data["meta"], data["truth"], reference),
            "truth_sorted_deg": np.round(true_sorted, 3).tolist(), "rt60": np.round(rt60, 4).tolist()}


def count_truth(truth: np.ndarray) -> list[list[float]]:
    """count set truth [N, 3] (NaN: silent slot) -> per clip the active talkers' lateral angles, sorted."""
    return [sorted(float(a) for a in row if np.isfinite(a)) for row in truth]


def detection_scores(found: list[dict[str, Any]], truth: list[list[float]]) -> dict[str, Any]:
    """detections and truth per clip -> detection_metrics overall and per true count ('by_count')."""
    pred = [d["angles_deg"] for d in found]
    out = detection_metrics(pred, truth, DETECTION_THRESHOLD_DEG)
    out["by_count"] = {str(k): detection_metrics([p for p, t in zip(pred, truth) if len(t) == k],
                                                 [t for t in truth if len(t) == k], DETECTION_THRESHOLD_DEG)
                       for k in sorted({len(t) for t in truth})}
    return out


RESOLUTIONS_DEG = (5.0, 10.0, 15.0, 20.0)


def merge_close(angles: list[float], resolution_deg: float) -> list[float]:
    """sorted angles (degrees) -> the angles a method that cannot resolve talkers closer than resolution_deg could
    name: each run of neighbours less than resolution_deg apart (a chain) becomes its mean."""
    groups: list[list[float]] = []
    for angle in angles:
        if groups and angle - groups[-1][-1] < resolution_deg:
            groups[-1].append(angle)
        else:
            groups.append([angle])
    return [sum(g) / len(g) for g in groups]


def resolution_ceilings(truth: list[list[float]], resolutions: tuple[float, ...] = RESOLUTIONS_DEG) -> dict[str, Any]:
    """per clip the true angles -> {resolution: count accuracy, F1, confusion} of the oracle that knows every
    talker's angle but merges those closer than the resolution (merge_close): the best any method of that
    resolution can score on the set."""
    out = {}
    for resolution in resolutions:
        m = detection_metrics([merge_close(t, resolution) for t in truth], truth, DETECTION_THRESHOLD_DEG)
        out[f"{resolution:g}"] = {k: m[k] for k in ("count_accuracy", "f1", "confusion")}
    return out


def score_count_set(data: dict[str, Any], models: list[tuple[str, Localizer]],
                    freq_range: tuple[float, float] = FREQ_RANGE,
                    extra_methods: ExtraMethods | None = None) -> dict[str, Any]:
    """the count set's waves and truth, localizers -> {'methods': {label: result}, 'truth_deg', 'counts'}.
    pyroomacoustics' methods are handed the true count (they cannot count); the others count for themselves."""
    waves, spacing = data["waves"], float(data["meta"]["mic_spacing"])
    truth = count_truth(data["truth"])
    counts = np.array([len(t) for t in truth])
    audio_seconds = len(waves) * waves.shape[-1] / SR
    methods: dict[str, dict[str, Any]] = {}

    def add(label: str, kind: str, found: list[dict[str, Any]], seconds: float, **extra: Any) -> None:
        methods[label] = {"kind": kind, "seconds": seconds, "x_real_time": audio_seconds / seconds if seconds else None,
                          "metrics": detection_scores(found, truth), **extra,
                          "detections": [{"angles_deg": [round(a, 3) for a in d["angles_deg"]], "count": d["count"]}
                                         for d in found]}

    for label, localizer in models:
        found, seconds = timed(lambda: model_detections(localizer, waves, SR, spacing, label))
        add(label, "model", found, seconds)
    ranked, seconds = timed(lambda: ranked_batches(gcc_phat_count, waves, spacing, "GCC-PHAT count"))
    add("GCC-PHAT (frames, peak threshold)", "gcc_phat_count", detections_of(ranked), seconds)
    ranked, seconds = timed(lambda: ranked_batches(duet, waves, spacing, "DUET"))
    add("DUET", "duet", detections_of(ranked), seconds)
    for name, (found, seconds) in pra_angles(waves, freq_range, spacing, PRA_COUNT_METHODS, counts).items():
        add(f"{PRA_LABELS[name]}, given the true count", f"pra_{name}",
            [{"angles_deg": a.tolist(), "count": len(a)} for a in found], seconds, given_count=True)
    for label, method in (extra_methods or {}).items():
        found, seconds = timed(lambda: method(waves, spacing))
        add(label, "extra", found, seconds)
    return {"methods": methods, "truth_deg": [[round(a, 3) for a in t] for t in truth], "counts": counts.tolist(),
            "resolution_ceiling": resolution_ceilings(truth)}


# ---------------------------------------------------------------------------------------------- the real-array set


def gated_matches(pred: list[float], true: list[float], threshold_deg: float = DETECTION_THRESHOLD_DEG
                  ) -> list[tuple[int, int, float]]:
    """one clip's detections and talkers (degrees) -> matched (pred index, true index, |error|) within threshold_deg:
    Hungarian matching on |error| with pairs beyond the threshold barred first (as SRP-DNN's getMetric), so the
    matching holds the most hits, then the least summed error."""
    if not pred or not true:
        return []
    error = np.abs(np.subtract.outer(np.asarray(pred, float), np.asarray(true, float)))
    rows, cols = linear_sum_assignment(np.where(error <= threshold_deg, error, 1e6))
    return [(int(r), int(c), float(error[r, c])) for r, c in zip(rows, cols) if error[r, c] <= threshold_deg]


def rate_scores(pred: list[list[float]], truth: list[list[float]],
                threshold_deg: float = DETECTION_THRESHOLD_DEG) -> dict[str, Any]:
    """detections and talkers per clip (degrees) -> count accuracy, confusion, and SRP-DNN's rates: MDR = missed
    talkers / talkers, FAR = false detections / talkers (their getMetric divides both by the true count), with
    false_share = false detections / detections beside it; a hit is a detection matched within threshold_deg
    (gated_matches) and matched_mae_deg the mean error of the hits; F1 = 2 hits / (detections + talkers)."""
    hits, errors = 0, []
    for p, t in zip(pred, truth):
        matches = gated_matches(list(p), list(t), threshold_deg)
        hits += len(matches)
        errors.extend(e for _, _, e in matches)
    talkers, detections = sum(len(t) for t in truth), sum(len(p) for p in pred)
    nan = float("nan")
    return {"clips": len(truth), "talkers": talkers, "detections": detections, "hits": hits,
            "count_accuracy": float(np.mean([len(p) == len(t) for p, t in zip(pred, truth)])) if truth else nan,
            "confusion": count_confusion([len(t) for t in truth], [len(p) for p in pred]).tolist(),
            "mdr": (talkers - hits) / talkers if talkers else nan,
            "far": (detections - hits) / talkers if talkers else nan,
            "false_share": (detections - hits) / detections if detections else nan,
            "f1": 2 * hits / (detections + talkers) if detections + talkers else nan,
            "matched_mae_deg": float(np.mean(errors)) if errors else nan, "threshold_deg": threshold_deg}


def single_talker_windows(found: list[dict[str, Any]], truth: list[list[float]],
                          within_deg: float = ONE_WINDOW_DEG) -> dict[str, Any] | None:
    """detections per clip holding their windows' angles ('windows', a model's) and truth -> over the windows with
    signal of the one-talker clips: how many, how many name exactly one talker, and how many name it within
    `within_deg` of the truth; None for a method without windows."""
    if not found or any("windows" not in d for d in found):
        return None
    windows = [(w, t[0]) for d, t in zip(found, truth) if len(t) == 1 for w in d["windows"]]
    one = [w for w, _ in windows if len(w) == 1]
    near = [w for w, true in windows if len(w) == 1 and abs(w[0] - true) <= within_deg]
    return {"windows": len(windows), "named_one": len(one), "named_one_within": len(near), "within_deg": within_deg}


def real_scores(found: list[dict[str, Any]], truth: list[list[float]], spacing: np.ndarray) -> dict[str, Any]:
    """detections and truth per clip, each clip's spacing (m) -> rate_scores overall, 'by_count' (true talkers),
    'by_spacing' (cm) and, for a model, 'one_talker_windows' (single_talker_windows)."""
    pred = [list(d["angles_deg"]) for d in found]
    out = rate_scores(pred, truth)
    out["one_talker_windows"] = single_talker_windows(found, truth)
    counts = np.array([len(t) for t in truth])
    out["by_count"] = {str(k): rate_scores([pred[i] for i in np.flatnonzero(counts == k)],
                                           [truth[i] for i in np.flatnonzero(counts == k)])
                       for k in sorted(set(counts.tolist()))}
    cm = np.round(np.asarray(spacing, float) * 100, 3)
    out["by_spacing"] = {f"{s:g}": rate_scores([pred[i] for i in np.flatnonzero(cm == s)],
                                               [truth[i] for i in np.flatnonzero(cm == s)])
                         for s in sorted(set(cm.tolist()))}
    return out


def per_group(keys: list[Any], run: Callable[[np.ndarray, Any], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """a key per clip (its spacing, or (spacing, count)), run(clip indices, key) -> detections of those clips ->
    the detections of every clip, in clip order."""
    out: list[dict[str, Any] | None] = [None] * len(keys)
    for key in sorted(set(keys)):
        idx = np.array([i for i, k in enumerate(keys) if k == key])
        for i, d in zip(idx, run(idx, key)):
            out[int(i)] = d
    return out  # type: ignore[return-value]


def gcc_given_count(waves: np.ndarray, spacing: float, count: int, chunk: int = 32) -> list[dict[str, Any]]:
    """clips [N, 2, T] of one spacing and true count -> frame-voting GCC-PHAT's `count` strongest peaks each, over
    the clip and over each of its windows (ONE_WINDOW_S long, half-overlapping as the localizer's: 'windows'), so
    that the one-talker window row has a classical reference given the count."""
    starts = window_starts(waves.shape[-1], int(round(ONE_WINDOW_S * SR)))
    width = min(int(round(ONE_WINDOW_S * SR)), waves.shape[-1])

    def peaks(batch: np.ndarray) -> np.ndarray:
        return gcc_phat(torch.from_numpy(np.ascontiguousarray(batch)), sr=SR, mic_spacing=spacing, num_sources=count,
                        sound_speed=SOUND_SPEED).double().numpy()

    out = []
    for i in range(0, len(waves), chunk):
        clips = waves[i:i + chunk]
        whole = peaks(clips)
        windows = peaks(np.concatenate([clips[..., s:s + width] for s in starts]))  # [window-major, count]
        windows = rearrange(windows, "(w n) k -> n w k", w=len(starts))
        out.extend({"angles_deg": sorted(float(a) for a in row), "count": count,
                    "windows": [sorted(float(a) for a in w) for w in per_window]}
                   for row, per_window in zip(whole, windows))
    return out


def score_real_set(data: dict[str, Any], models: list[tuple[str, Localizer]],
                   extra_methods: ExtraMethods | None = None) -> dict[str, Any]:
    """the real-array set (waves [N, 2, T], truth [N, 3] NaN-padded, spacing [N] m), localizers, optional further
    methods -> {'methods': {label: result}, 'truth_deg', 'counts', 'spacing_cm'}. Every method is called once per
    spacing with that spacing (GCC-PHAT once per spacing and true count, which it is handed); a model that takes
    the spacing is not asked at spacings outside the range it was trained for (its row lists them in
    'not_scored_cm' and scores the other clips)."""
    waves, spacing = data["waves"], np.round(data["spacing"].astype(np.float64), 6)
    truth = count_truth(data["truth"])
    counts = [len(t) for t in truth]
    spacings = spacing.tolist()
    methods: dict[str, dict[str, Any]] = {}

    def add(label: str, kind: str, found: list[dict[str, Any] | None], seconds: float, **extra: Any) -> None:
        kept = [i for i, d in enumerate(found) if d is not None]  # a model is not asked outside its spacings
        methods[label] = {"kind": kind, "seconds": seconds,
                          "x_real_time": len(kept) * waves.shape[-1] / SR / seconds if seconds else None,
                          "metrics": real_scores([found[i] for i in kept], [truth[i] for i in kept], spacing[kept]),
                          **extra, "detections": [None if d is None else
                                                  {"angles_deg": [round(float(a), 3) for a in d["angles_deg"]],
                                                   "count": int(d["count"])} for d in found]}

    for label, localizer in models:
        low, high = localizer.spacing_range
        outside = sorted({round(100 * s, 3) for s in spacings if low < high and not low - 1e-9 <= s <= high + 1e-9})

        def ask(idx: np.ndarray, s: float) -> list[dict[str, Any] | None]:
            if round(100 * s, 3) in outside:
                return [None] * len(idx)
            return model_detections(localizer, waves[idx], SR, s, f"{label} {100 * s:g} cm")

        found, seconds = timed(lambda: per_group(spacings, ask))
        add(label, "model", found, seconds, **({"not_scored_cm": outside} if outside else {}))
    found, seconds = timed(lambda: per_group(list(zip(spacings, counts)),
                                             lambda idx, key: gcc_given_count(waves[idx], *key)))
    add("GCC-PHAT (votes), given the true count", "gcc_phat", found, seconds, given_count=True)
    for fn, label, kind in ((gcc_phat_count, "GCC-PHAT (frames, peak threshold)", "gcc_phat_count"),
                            (duet, "DUET", "duet")):
        found, seconds = timed(lambda: per_group(spacings, lambda idx, s: detections_of(
            ranked_batches(fn, waves[idx], s, f"{label} {100 * s:g} cm"))))
        add(label, kind, found, seconds)
    for label, method in (extra_methods or {}).items():
        found, seconds = timed(lambda: per_group(spacings, lambda idx, s: method(waves[idx], s)))
        add(label, "extra", found, seconds)
    return {"methods": methods, "truth_deg": [[round(a, 3) for a in t] for t in truth], "counts": counts,
            "spacing_cm": [round(100 * s, 3) for s in spacings]}
