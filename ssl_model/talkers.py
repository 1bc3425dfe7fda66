"""From window detections to a recording's talkers, and from per-step activity maps to tracks (numpy in and out).

- `cluster_detections`: every window names 0-3 talkers (angle, existence probability); a recording's talkers are
  the clusters of those detections, greedily, strongest first: a detection joins the nearest cluster within
  `merge_deg` that holds no detection of its own window yet (two talkers a window names stay two), else it starts
  one. A cluster's share is the sum of its detections' probabilities over the number of windows (1 for a talker
  heard in every window); the recording's talkers are the clusters with a share of at least `min_share`, at most
  `max_talkers` of them. One window gives back exactly the window's own talkers.
- `track_peaks`: a step's activity over direction classes -> the angles of its local maxima above a threshold.
- `TrackGrid`: the steps of overlapping windows placed on one time grid and averaged where windows overlap.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from configs import need

MERGE_DEG = 10.0  # detections of one talker in different windows: within two 5-degree bins
MIN_SHARE = 0.2  # a talker heard (weighted by probability) in at least a fifth of the windows
ACTIVE = 0.5  # a direction class of a track step is active above this probability
EXISTENCE = 0.5  # a window's slot holds a talker above this existence probability


@dataclass(frozen=True)
class Decoding:
    """How windows' slots become talkers: a slot holds a talker above `existence`; detections within `merge_deg`
    of a cluster join it, two of one window only when `one_per_window` is off; a recording keeps the clusters with
    a share of at least `min_share` (cluster_detections). benchmarks/calibrate_decoding.py chooses them on a
    development set. Checked when made: ConfigError naming the threshold (`decoding.KEY`) when it cannot work."""
    existence: float = EXISTENCE
    merge_deg: float = MERGE_DEG
    min_share: float = MIN_SHARE
    one_per_window: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for key in ("existence", "merge_deg", "min_share"):
            value = getattr(self, key)
            need(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
                 f"decoding.{key}", f"must be a finite number, got {value!r}")
        # 0 would name every slot and 1 none: a probability threshold strictly between them
        need(0.0 < self.existence < 1.0, "decoding.existence", f"must be in (0, 1), got {self.existence}")
        need(0.0 < self.merge_deg <= 180.0, "decoding.merge_deg", f"must be in (0, 180] degrees, got {self.merge_deg}")
        need(0.0 <= self.min_share <= 1.0, "decoding.min_share", f"must be in [0, 1], got {self.min_share}")
        need(isinstance(self.one_per_window, bool), "decoding.one_per_window",
             f"must be true or false, got {self.one_per_window!r}")


@dataclass(frozen=True)
class Talkers:
    """A recording's talkers: angles_deg [K] ascending with their shares [K]; candidates_deg [M] every cluster,
    strongest first (K <= M)."""
    angles_deg: np.ndarray
    shares: np.ndarray
    candidates_deg: np.ndarray


def cluster_detections(angles: np.ndarray, probs: np.ndarray, windows: np.ndarray, num_windows: int,
                       merge_deg: float = MERGE_DEG, min_share: float = MIN_SHARE, max_talkers: int = 3,
                       one_per_window: bool = True) -> Talkers:
    """angles [N] (degrees), probs [N] and window indices [N] of every detection -> Talkers (module docstring;
    without `one_per_window`, two detections of one window within merge_deg are one talker)."""
    centres: list[float] = []
    weights: list[float] = []
    members: list[set[int]] = []
    for i in np.argsort(-probs, kind="stable"):
        angle, prob, window = float(angles[i]), float(probs[i]), int(windows[i])
        fits = [k for k, c in enumerate(centres)
                if abs(c - angle) <= merge_deg and not (one_per_window and window in members[k])]
        if fits:
            k = min(fits, key=lambda j: abs(centres[j] - angle))
            centres[k] = (centres[k] * weights[k] + angle * prob) / (weights[k] + prob)
            weights[k] += prob
            members[k].add(window)
        else:
            centres.append(angle)
            weights.append(prob)
            members.append({window})
    shares = np.asarray(weights, dtype=np.float64) / max(num_windows, 1)
    order = np.argsort(-shares, kind="stable")
    kept = [k for k in order if shares[k] >= min_share][:max_talkers]
    kept.sort(key=lambda k: centres[k])
    return Talkers(angles_deg=np.asarray([centres[k] for k in kept], dtype=np.float64),
                   shares=np.minimum(shares[kept], 1.0) if kept else np.zeros(0),
                   candidates_deg=np.asarray([centres[k] for k in order], dtype=np.float64))


def track_peaks(activity: np.ndarray, bin_deg: float, threshold: float = ACTIVE, max_peaks: int = 3) -> list[list[float]]:
    """activity [steps, C] in [0, 1] -> per step the angles (ascending) of its local maxima above `threshold`, the
    strongest `max_peaks`; each angle the activity-weighted mean of the peak's class and its two neighbours."""
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
