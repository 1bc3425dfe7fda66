"""From window detections to a recording's talkers, and from per-step activity maps to tracks (numpy in and out).

- Resolution lives in delay, not in degrees: a pair d apart hears a talker at lateral angle theta as the delay
  d cos(theta) / c (`delay_samples`), and near endfire many degrees are one delay. Two talkers whose delays differ by
  less than `resolve_samples` (half a sample by default) are one talker to the pair: `distinct` keeps the stronger.
- `cluster_detections`: every window names 0-3 talkers (angle, existence probability), copies already dropped; a
  recording's talkers are the clusters of those detections, greedily, strongest first: a detection joins the
  nearest cluster within `merge_deg` (or within `resolve_samples` of its delay) that holds no detection of its own
  window yet (two talkers a window names stay two), else it starts one; clusters the pair cannot tell apart merge. A cluster's share is the sum of its detections' probabilities over the number of windows (1 for a talker
  heard in every window); the recording's talkers are the clusters with a share of at least `min_share`, at most
  `max_talkers` of them. One window gives back exactly the window's own talkers.
- `track_support`: a window's talkers -> how strongly its frame head (a second head, trained step by step on the same
  talkers) hears anyone near each of them. With `Decoding.track_support` a window's vote for a talker is the geometric
  mean of its existence and that support: a window that names one talker confidently at a wrong angle (a reflection
  taken for the talker, in one window of three) does so while its track hears little there, and that vote no longer
  makes a second talker.
- `track_peaks`: a step's activity over direction classes -> the angles of its local maxima above a threshold.
- `TrackGrid`: the steps of overlapping windows placed on one time grid and averaged where windows overlap.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from configs import need

MERGE_DEG = 10.0  # detections of one talker in different windows: within two 5-degree bins
RESOLVE_SAMPLES = 0.5  # talkers closer than half a sample of delay are one talker to a two-mic pair
MIN_SHARE = 0.2  # a talker heard (weighted by probability) in at least a fifth of the windows
ACTIVE = 0.5  # a direction class of a track step is active above this probability
EXISTENCE = 0.5  # a window's slot holds a talker above this existence probability
REACH_LEVEL = 0.0  # 0: a detection reaches merge_deg; else also the span of its posterior above this share of its peak
MAX_REACH_DEG = 30.0  # however flat its posterior, a detection never reaches further


@dataclass(frozen=True)
class Decoding:
    """How windows' slots become talkers: a slot holds a talker above `existence`; of two held slots whose delays
    differ by less than `resolve_samples` only the stronger is a talker (0 keeps both); detections within
    `merge_deg` of a cluster join it (or within the span of its own slot posterior above `reach_level` of the posterior's
    peak, when that is wider: posterior_reach), two of one window only when `one_per_window` is off; a recording keeps
    the clusters with a share of at least `min_share` (cluster_detections), each window's vote weighted by its
    existence or, with `track_support` (models with a frame head), by the geometric mean of its existence and its
    track's support (`track_support`). With `mirror` each window is heard twice, the second time with its channels
    swapped, and the two passes averaged (ssl_model/mirror.py). benchmarks/calibrate_decoding.py chooses them on a
    development set. Checked when made: ConfigError naming the threshold (`decoding.KEY`) when it cannot work."""
    existence: float = EXISTENCE
    merge_deg: float = MERGE_DEG
    min_share: float = MIN_SHARE
    one_per_window: bool = True
    resolve_samples: float = RESOLVE_SAMPLES
    reach_level: float = REACH_LEVEL
    track_support: bool = False
    mirror: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for key in ("existence", "merge_deg", "min_share", "resolve_samples", "reach_level"):
            value = getattr(self, key)
            need(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
                 f"decoding.{key}", f"must be a finite number, got {value!r}")
        # 0 would name every slot and 1 none: a probability threshold strictly between them
        need(0.0 < self.existence < 1.0, "decoding.existence", f"must be in (0, 1), got {self.existence}")
        need(0.0 < self.merge_deg <= 180.0, "decoding.merge_deg", f"must be in (0, 180] degrees, got {self.merge_deg}")
        need(0.0 <= self.min_share <= 1.0, "decoding.min_share", f"must be in [0, 1], got {self.min_share}")
        need(0.0 <= self.resolve_samples <= 4.0, "decoding.resolve_samples",
             f"must be in [0, 4] samples of delay, got {self.resolve_samples}")
        need(0.0 <= self.reach_level < 1.0, "decoding.reach_level",
             f"must be in [0, 1) of a posterior's peak (0: off), got {self.reach_level}")
        for key in ("one_per_window", "track_support", "mirror"):
            need(isinstance(getattr(self, key), bool), f"decoding.{key}",
                 f"must be true or false, got {getattr(self, key)!r}")


@dataclass(frozen=True)
class Talkers:
    """A recording's talkers: angles_deg [K] ascending with their shares [K]; candidates_deg [M] every cluster,
    strongest first (K <= M)."""
    angles_deg: np.ndarray
    shares: np.ndarray
    candidates_deg: np.ndarray


def delay_samples(angles_deg: np.ndarray, spacing_m: float, sample_rate: float, sound_speed: float) -> np.ndarray:
    """lateral angles [...] (degrees) -> the direct-path delays [...] a pair `spacing_m` apart hears, in samples:
    spacing cos(theta) / c * sample_rate (positive towards 0 degrees, mic 1's side)."""
    return spacing_m * np.cos(np.deg2rad(np.asarray(angles_deg, dtype=np.float64))) / sound_speed * sample_rate


def distinct(delays: np.ndarray, strengths: np.ndarray, resolve_samples: float) -> np.ndarray:
    """delays [N] (samples), strengths [N] -> indices (ascending) of the detections that are talkers of their own:
    strongest first, a detection whose delay is within `resolve_samples` of a stronger kept one is its copy."""
    kept: list[int] = []
    for i in np.argsort(-np.asarray(strengths), kind="stable"):
        if all(abs(float(delays[i]) - float(delays[k])) >= resolve_samples for k in kept):
            kept.append(int(i))
    return np.asarray(sorted(kept), dtype=np.int64)


def cluster_detections(angles: np.ndarray, probs: np.ndarray, windows: np.ndarray, num_windows: int,
                       merge_deg: float = MERGE_DEG, min_share: float = MIN_SHARE, max_talkers: int = 3,
                       one_per_window: bool = True, delays: np.ndarray | None = None,
                       resolve_samples: float = 0.0, reaches: np.ndarray | None = None) -> Talkers:
    """angles [N] (degrees), probs [N] and window indices [N] of every detection (, their delays [N] in samples,
    their reaches [N] in degrees) -> Talkers (module docstring; without `one_per_window`, two detections of one window
    within merge_deg are one talker; without delays, resolution is in degrees only; a detection joins a cluster within
    the larger of merge_deg and its own reach)."""
    delays = np.zeros(len(angles)) if delays is None else np.asarray(delays, dtype=np.float64)
    reaches = np.zeros(len(angles)) if reaches is None else np.asarray(reaches, dtype=np.float64)
    centres: list[float] = []
    lags: list[float] = []
    weights: list[float] = []
    members: list[set[int]] = []

    def near(k: int, angle: float, lag: float, reach: float) -> bool:
        return abs(centres[k] - angle) <= max(merge_deg, reach) or abs(lags[k] - lag) < resolve_samples

    for i in np.argsort(-probs, kind="stable"):
        angle, lag, prob, window = float(angles[i]), float(delays[i]), float(probs[i]), int(windows[i])
        fits = [k for k in range(len(centres))
                if near(k, angle, lag, float(reaches[i])) and not (one_per_window and window in members[k])]
        if fits:
            k = min(fits, key=lambda j: abs(centres[j] - angle))
            centres[k] = (centres[k] * weights[k] + angle * prob) / (weights[k] + prob)
            lags[k] = (lags[k] * weights[k] + lag * prob) / (weights[k] + prob)
            weights[k] += prob
            members[k].add(window)
        else:
            centres.append(angle)
            lags.append(lag)
            weights.append(prob)
            members.append({window})
    if resolve_samples > 0:  # clusters one delay apart are one talker: the weaker's weight joins the stronger
        for k in sorted(range(len(centres)), key=lambda j: weights[j]):
            stronger = [j for j in range(len(centres)) if j != k and weights[j] >= weights[k] > 0
                        and abs(lags[j] - lags[k]) < resolve_samples]
            if stronger:
                j = min(stronger, key=lambda j: abs(lags[j] - lags[k]))
                weights[j] += weights[k]
                weights[k] = 0.0
    shares = np.asarray(weights, dtype=np.float64) / max(num_windows, 1)
    order = [k for k in np.argsort(-shares, kind="stable") if weights[k] > 0]
    kept = [k for k in order if shares[k] >= min_share][:max_talkers]
    kept.sort(key=lambda k: centres[k])
    return Talkers(angles_deg=np.asarray([centres[k] for k in kept], dtype=np.float64),
                   shares=np.minimum(shares[kept], 1.0) if kept else np.zeros(0),
                   candidates_deg=np.asarray([centres[k] for k in order], dtype=np.float64))


def posterior_reach(posterior: np.ndarray, angle_deg: float, bin_deg: float, level: float,
                    most_deg: float = MAX_REACH_DEG) -> float:
    """posterior [C] of a slot over direction classes, the angle it was decoded to -> how far (degrees, at most
    `most_deg`) from that angle the contiguous run of classes around it stays above `level` x the run's peak: a
    flat posterior (the model unsure where on a plateau the talker is) reaches far, a sharp one about a class. 0 for
    level 0 (off)."""
    if level <= 0:
        return 0.0
    classes = len(posterior)
    centre = int(np.clip(np.floor(angle_deg / bin_deg), 0, classes - 1))
    lo = hi = centre
    floor = level * float(posterior.max())
    while lo > 0 and posterior[lo - 1] >= floor:
        lo -= 1
    while hi < classes - 1 and posterior[hi + 1] >= floor:
        hi += 1
    span = max(angle_deg - lo * bin_deg, (hi + 1) * bin_deg - angle_deg)
    return float(min(span, most_deg))


def track_support(activity: np.ndarray, angles_deg: np.ndarray, reach_deg: float) -> np.ndarray:
    """a window's track activity [steps, C] in [0, 1] over classes spanning 0-180 degrees and its talkers' angles
    [K] (degrees) -> [K]: per talker the highest activity of any step in any class whose centre lies within reach_deg
    of it (the nearest class at least); 0 for a window without steps."""
    angles = np.asarray(angles_deg, dtype=np.float64)
    if activity.shape[0] == 0 or len(angles) == 0:
        return np.zeros(len(angles), dtype=np.float32)
    classes = activity.shape[1]
    centres = (np.arange(classes) + 0.5) * 180.0 / classes
    offset = np.abs(centres[None, :] - angles[:, None])  # [K, C]
    near = (offset <= reach_deg) | (offset == offset.min(axis=1, keepdims=True))
    peak = activity.max(axis=0)  # [C]: each class's highest step
    return np.where(near, peak[None, :], 0.0).max(axis=1).astype(np.float32)


def track_peaks(activity: np.ndarray, bin_deg: float, threshold: float = ACTIVE, max_peaks: int = 3,
                delay_of: Callable[[np.ndarray], np.ndarray] | None = None, resolve_samples: float = 0.0
                ) -> list[list[float]]:
    """activity [steps, C] in [0, 1] -> per step the angles (ascending) of its local maxima above `threshold`, the
    strongest `max_peaks`; each angle the activity-weighted mean of the peak's class and its two neighbours. With
    `delay_of` (angles -> delays in samples), a peak within `resolve_samples` of a stronger one's delay is dropped."""
    steps, classes = activity.shape
    centres = (np.arange(classes) + 0.5) * bin_deg
    padded = np.pad(activity, ((0, 0), (1, 1)), constant_values=-1.0)
    is_peak = (activity > threshold) & (activity >= padded[:, :-2]) & (activity > padded[:, 2:])
    out = []
    for step in range(steps):
        peaks = np.flatnonzero(is_peak[step])
        peaks = peaks[np.argsort(-activity[step, peaks], kind="stable")][:max_peaks]
        angles = []
        for c in peaks:
            near = np.arange(max(c - 1, 0), min(c + 2, classes))
            weight = activity[step, near]
            angles.append(float((weight * centres[near]).sum() / weight.sum()))
        if delay_of is not None and len(angles) > 1:  # strongest first, as `distinct` wants them ranked
            angles = [angles[k] for k in distinct(delay_of(np.asarray(angles)), -np.arange(len(angles)), resolve_samples)]
        out.append(sorted(angles))
    return out


@dataclass
class TrackGrid:
    """Steps of `step_s` seconds from overlapping windows on one grid: add(start_s, activity [steps, C]) places the
    window's step k at grid cell round(start_s / step_s) + k; average() -> activity [cells, C] (cells no window
    reached are 0). The placement error is at most half a step."""
    step_s: float
    num_classes: int
    sums: list[np.ndarray] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)

    def add(self, start_s: float, activity: np.ndarray) -> None:
        if activity.shape[0] == 0:
            return
        first = int(round(start_s / self.step_s))
        need = first + activity.shape[0]
        while len(self.sums) < need:
            self.sums.append(np.zeros(self.num_classes))
            self.counts.append(0)
        for k, row in enumerate(activity):
            self.sums[first + k] += row
            self.counts[first + k] += 1

    def average(self) -> np.ndarray:
        if not self.sums:
            return np.zeros((0, self.num_classes))
        return np.stack(self.sums) / np.maximum(np.asarray(self.counts, dtype=np.float64), 1)[:, None]
