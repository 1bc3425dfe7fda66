"""What the localizer returns: a recording's talkers (LocalizationResult), each window's (WindowResult) and each
track step's (FrameResult); plain frozen dataclasses of numpy arrays, a short repr, and to_dict() for JSON.

Every field is described in docs/api.md. `probabilities` mean the same for every model: in a window, the model's
probability that the talker is there, at about that angle (a counting model's existence probability; a model that
always names its slots: the slot posterior's mass within one class of the decoded class); for a recording, the
share of the windows with signal that heard the talker, each window's vote weighted by that probability (with
`decoding.track_support`, by the geometric mean of it and the frame head's support: ssl_model/talkers.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np


def rounded(values: Iterable[float], digits: int = 2) -> list[float]:
    """values [N] -> a list of N Python floats rounded to `digits` (for JSON and reprs)."""
    return [round(float(v), digits) for v in values]


@dataclass(frozen=True, repr=False)
class FrameResult:
    """One step of a track: its centre (seconds) and the angles active in it (ascending)."""
    time_s: float
    angles_deg: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"time_s": round(self.time_s, 3), "angles_deg": rounded(self.angles_deg)}

    def __repr__(self) -> str:
        return f"FrameResult({self.time_s:.2f} s: angles_deg={rounded(self.angles_deg, 1)})"


@dataclass(frozen=True, repr=False)
class WindowResult:
    """One window of the recording (seconds at the model's rate) and the talkers it names."""
    start_s: float
    end_s: float
    count: int
    angles_deg: np.ndarray  # float64 [count], ascending
    classes: np.ndarray  # int64 [count]
    probabilities: np.ndarray  # float32 [count]: the model's probability that the talker is there (module docstring)
    posteriors: np.ndarray  # float32 [slots, classes]: held slots first (ascending), then the others
    existence: np.ndarray  # float32 [slots], in that order
    slot_angles_deg: np.ndarray  # float64 [slots]: every slot's decoded angle, held or not, in that order
    frames: tuple[FrameResult, ...]  # the window's track steps (models with a frame head)
    activity: np.ndarray  # float32 [steps, classes]: the track's activity probabilities (steps = 0 without one)
    silent: bool = False  # below the signal floor on a mic: not given to the model; no talkers, no slots (0 rows)
    tracked: bool = True  # whether the model has a frame head (to_dict omits `frames` without one)

    @property
    def ranked_deg(self) -> np.ndarray:
        """Every slot's angle, the most probable talker first (the held slots, then the others)."""
        return self.slot_angles_deg[np.argsort(-self.existence, kind="stable")]

    def to_dict(self) -> dict[str, Any]:
        out = {"start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3), "count": self.count,
               "angles_deg": rounded(self.angles_deg), "probabilities": rounded(self.probabilities, 4),
               "classes": [int(c) for c in self.classes], "silent": self.silent}
        if self.tracked:
            out["frames"] = [f.to_dict() for f in self.frames]
        return out

    def __repr__(self) -> str:
        what = "silent" if self.silent else (f"count={self.count}, angles_deg={rounded(self.angles_deg, 1)}, "
                                             f"probabilities={rounded(self.probabilities, 3)}")
        return f"WindowResult({self.start_s:.2f}-{self.end_s:.2f} s: {what})"


@dataclass(frozen=True, repr=False)
class LocalizationResult:
    """The talkers of one recording: count, angles in degrees (ascending), their probabilities and classes,
    per-window results and the recording's track; docs/api.md describes every field."""
    count: int
    angles_deg: np.ndarray  # float64 [count], ascending
    classes: np.ndarray  # int64 [count], the bin of each angle
    probabilities: np.ndarray  # float32 [count]: share of the windows with signal that heard the talker (weighted)
    candidates_deg: np.ndarray  # float64 [M]: every direction the windows named, strongest first
    posteriors: np.ndarray  # float32 [slots, classes], the windows' averaged slot posteriors
    spectrum: np.ndarray  # float32 [classes]: per window the sum over its talkers' posteriors, averaged over windows
    windows: tuple[WindowResult, ...]
    frames: tuple[FrameResult, ...]  # the track on one grid of step_s (models with a frame head)
    target: str  # lateral (angle from the mic-0-to-mic-1 axis) or azimuth
    mic_spacing: float  # metres, as given (or the model's own)
    sample_rate_in: int
    sample_rate_model: int
    duration_s: float  # of the input
    window_s: float  # the model's clip length
    tracked: bool = True  # whether the model has a frame head (to_dict omits `frames` without one)
    count_given: bool = False  # the count was given (num_talkers=K), not decided by the model
    warnings: tuple[str, ...] = ()  # one line each: what about the input may make the answer wrong

    @property
    def bin_deg(self) -> float:
        return 180.0 / self.posteriors.shape[-1]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object `ssl-localize` prints for a file (without its `file`, `kind` and `plot`); `frames`
        only for a model with a frame head."""
        out = {
            "count": self.count,
            "count_given": self.count_given,
            "angles_deg": rounded(self.angles_deg),
            "probabilities": rounded(self.probabilities, 4),
            "classes": [int(c) for c in self.classes],
            "candidates_deg": rounded(self.candidates_deg),
            "target": self.target,
            "mic_spacing": self.mic_spacing,
            "bin_deg": self.bin_deg,
            "posteriors": [rounded(slot, 5) for slot in self.posteriors],
            "spectrum": rounded(self.spectrum, 4),
            "windows": [w.to_dict() for w in self.windows],
            "frames": [f.to_dict() for f in self.frames],
            "sample_rate_in": self.sample_rate_in,
            "sample_rate_model": self.sample_rate_model,
            "duration_s": round(self.duration_s, 3),
            "window_s": round(self.window_s, 3),
            "warnings": list(self.warnings),
        }
        if not self.tracked:
            del out["frames"]
        return out

    def __repr__(self) -> str:
        given = ", count_given=True" if self.count_given else ""
        notes = f", warnings={len(self.warnings)}" if self.warnings else ""
        return (f"LocalizationResult(count={self.count}{given}, angles_deg={rounded(self.angles_deg, 1)}, "
                f"probabilities={rounded(self.probabilities, 3)}, windows={len(self.windows)}, "
                f"duration_s={self.duration_s:.2f}{notes})")
