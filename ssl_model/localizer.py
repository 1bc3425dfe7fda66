"""A trained two-talker localizer as a Python object: weights in, waves or files in, two sorted angles out.

    from ssl_model import Localizer

    localizer = Localizer.from_pretrained()            # or .from_file("model.safetensors"), .from_run("runs/seed")
    result = localizer(wave, sample_rate)              # wave [2, samples]: mic 0, mic 1 (numpy or torch)
    result.angles_deg, result.probabilities, result.posteriors, result.windows, result.to_dict()
    for path, result in localizer.localize_files(["a.wav", "b.flac"]): ...

A recording is resampled to the model's rate and cut into windows of the training clip length (half-overlapping,
the last one aligned to the end; a recording shorter than one window is zero-padded, as training clips are);
each window is normalized as the training mixtures were, the model gives per-slot posteriors for each, and the
windows' posteriors are averaged and decoded into two sorted angles. Weights are read from safetensors: no
code is executed on load. Every refusal is a LocalizeError whose message is one line naming the input.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from shards.audio import SILENT_DBFS, decode_audio, is_near_silent, resample
from ssl_model.export import CheckpointError, LocalizerSpec, Posteriors, load_localizer
from ssl_model.targets import decode_posteriors

MIN_SECONDS = 1.0
PRETRAINED = Path(__file__).resolve().parent / "pretrained" / "model.safetensors"
WEIGHTS = "model.safetensors"
FILES_PER_BATCH = 8  # localize_files runs the windows of this many files through the model together
WINDOWS_PER_CALL = 16  # windows per forward pass (bounds memory for long recordings)


class LocalizeError(Exception):
    """Input the localizer refuses (a file, a wave, a weights file, a device); the message is one line."""


# ---------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class WindowResult:
    """One window of the recording: its span (seconds, at the model's rate) and its own decoded slots."""
    start_s: float
    end_s: float
    angles_deg: np.ndarray  # float64 [slots], ascending
    classes: np.ndarray  # int64 [slots]
    posteriors: np.ndarray  # float32 [slots, classes]

    def to_dict(self) -> dict[str, Any]:
        return {"start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3),
                "angles_deg": [round(float(a), 2) for a in self.angles_deg],
                "classes": [int(c) for c in self.classes]}


@dataclass(frozen=True)
class LocalizationResult:
    """Two talkers of one recording: angles in degrees (sorted), their classes and posteriors, per-window results."""
    angles_deg: np.ndarray  # float64 [slots], ascending
    classes: np.ndarray  # int64 [slots], the bin of each angle
    probabilities: np.ndarray  # float32 [slots], each slot's averaged posterior at its class
    posteriors: np.ndarray  # float32 [slots, classes], averaged over the windows
    windows: tuple[WindowResult, ...]
    target: str  # lateral (angle from the mic-0-to-mic-1 axis) or azimuth
    sample_rate_in: int
    sample_rate_model: int
    duration_s: float  # of the input
    window_s: float  # the model's clip length

    @property
    def bin_deg(self) -> float:
        return 180.0 / self.posteriors.shape[-1]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object `python -m ssl_model.localize` prints for a file (without its `file` and `plot`)."""
        return {
            "angles_deg": [round(float(a), 2) for a in self.angles_deg],
            "target": self.target,
            "classes": [int(c) for c in self.classes],
            "probabilities": [round(float(p), 4) for p in self.probabilities],
            "bin_deg": self.bin_deg,
            "posteriors": [[round(float(p), 5) for p in slot] for slot in self.posteriors],
            "windows": [w.to_dict() for w in self.windows],
            "sample_rate_in": self.sample_rate_in,
            "sample_rate_model": self.sample_rate_model,
            "duration_s": round(self.duration_s, 3),
            "window_s": round(self.window_s, 3),
        }


# ---------------------------------------------------------------------------------------------- inputs


def torch_device(name: str | torch.device, what: str = "device") -> torch.device:
    """device name -> torch.device; LocalizeError `{what} {name}: ...` for a malformed name or an absent CUDA device."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LocalizeError(f"{what} {name}: not a torch device name (cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LocalizeError(f"{what} {name}: torch finds no CUDA device on this machine; use {what} cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise LocalizeError(f"{what} {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def check_stereo(wave: np.ndarray | torch.Tensor, sample_rate: int, name: str) -> torch.Tensor:
    """wave [channels, samples] -> float32 tensor [2, samples]; LocalizeError naming `name` unless it is finite,
    non-silent stereo of at least MIN_SECONDS."""
    x = wave.detach() if isinstance(wave, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(wave))
    x = x.float().cpu()  # any dtype (int16 too: each window is level-normalized), any strides (wave[::-1])
    if x.dim() != 2:
        raise LocalizeError(f"{name}: expected a wave [2, samples] (mic 0, mic 1), got shape {list(x.shape)}")
    channels, samples = x.shape
    if channels != 2:
        kind = "mono" if channels == 1 else f"{channels}-channel"
        hint = "; a soundfile read is [samples, 2]: pass its .T" if samples == 2 else ""
        raise LocalizeError(f"{name}: {kind} audio; expected stereo (2 channels: mic 0 left, mic 1 right){hint}")
    if int(sample_rate) <= 0:
        raise LocalizeError(f"{name}: sample rate {sample_rate}; expected a positive number of samples per second")
    seconds = samples / sample_rate
    if seconds < MIN_SECONDS:
        raise LocalizeError(f"{name}: {seconds:.3f} s of audio is too short; need at least {MIN_SECONDS:g} s")
    if not torch.isfinite(x).all():
        raise LocalizeError(f"{name}: NaN or infinite samples")
    if is_near_silent(x.numpy()):
        raise LocalizeError(f"{name}: silent (zeros, DC or noise below {SILENT_DBFS:g} dBFS): nothing to localize")
    return x


def read_stereo(path: str | Path) -> tuple[np.ndarray, int]:
    """audio file -> (wave float32 [2, T], sample rate); LocalizeError for anything but finite stereo audio."""
    path = Path(path)
    if not path.exists():
        raise LocalizeError(f"{path}: no such file")
    if not path.is_file():
        raise LocalizeError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise LocalizeError(f"{path}: empty file (0 bytes)")
    try:
        data, sr = decode_audio(path, str(path), mono=False)  # [C, T]
    except ValueError as err:
        raise LocalizeError(f"{err} (expected stereo wav, flac or ogg)") from None
    return check_stereo(data, sr, str(path)).numpy(), int(sr)


def window_starts(num_samples: int, window: int) -> list[int]:
    """Starts of half-overlapping windows covering [0, num_samples); the last one ends at the end."""
    if num_samples <= window:
        return [0]
    hop = max(1, window // 2)
    starts = list(range(0, num_samples - window + 1, hop))
    if starts[-1] != num_samples - window:
        starts.append(num_samples - window)
    return starts


def cut_windows(wave: torch.Tensor, window: int) -> tuple[torch.Tensor, list[int]]:
    """wave [2, T] -> (windows [W, 2, window] zero-padded at the end, starts [W])."""
    starts = window_starts(wave.shape[-1], window)
    if wave.shape[-1] < window:
        wave = torch.nn.functional.pad(wave, (0, window - wave.shape[-1]))
    return torch.stack([wave[:, s:s + window] for s in starts]), starts


def run_weights(run_dir: str | Path) -> Path:
    """A training run folder -> its model.safetensors; LocalizeError when the folder or the file is missing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise LocalizeError(f"{run_dir}: run folder not found")
    path = run_dir / WEIGHTS
    if not path.is_file():
        raise LocalizeError(f"{run_dir}: not a finished run ({path} not found)")
    return path


# ---------------------------------------------------------------------------------------------- the localizer


@dataclass(frozen=True)
class _Recording:
    """One input on its way through the model: windows [W, 2, window] at the model's rate and where they start."""
    windows: torch.Tensor
    starts: list[int]
    samples_model: int  # length after resampling
    samples_in: int
    sample_rate_in: int


class Localizer:
    """A trained model and the spec of its input (ssl_model.export.LocalizerSpec): waves or files -> two angles.

    Build it with from_pretrained(), from_file(path) or from_run(dir); call it on a wave [2, samples] at any
    sample rate, or give localize_files() many files (their windows go through the model together).
    """

    def __init__(self, model: torch.nn.Module, spec: LocalizerSpec, device: str | torch.device = "cpu",
                 source: Path | None = None):
        self.device = torch_device(device)
        self.model = model.to(self.device).eval()
        self.spec = spec
        self.network = Posteriors(self.model, spec.normalize)  # what ssl_model.export writes as a graph
        self.source = source  # the weights file, when loaded from one

    @classmethod
    def from_file(cls, path: str | Path, device: str | torch.device = "cpu") -> "Localizer":
        """A weights file written by training (model.safetensors) or ssl_model.export.save_localizer."""
        path = Path(path)
        if not path.is_file():
            raise LocalizeError(f"{path}: no such weights file")
        device = torch_device(device)
        try:
            model, spec = load_localizer(path, device)
        except CheckpointError as err:
            raise LocalizeError(str(err)) from None
        return cls(model, spec, device, source=path)

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str | torch.device = "cpu") -> "Localizer":
        """A training run folder (its model.safetensors)."""
        return cls.from_file(run_weights(run_dir), device)

    @classmethod
    def from_pretrained(cls, device: str | torch.device = "cpu") -> "Localizer":
        """The model shipped in ssl_model/pretrained/ (two talkers, mics 10 cm apart, lateral angles)."""
        return cls.from_file(PRETRAINED, device)

    @property
    def sample_rate(self) -> int:
        return self.spec.sr

    @property
    def target(self) -> str:
        return self.spec.target

    @property
    def window_s(self) -> float:
        return self.spec.clip_samples / self.spec.sr

    def __repr__(self) -> str:
        where = f"{self.source}" if self.source else "in memory"
        return (f"Localizer({where}: {self.target} angles, {self.sample_rate} Hz, {self.window_s:g} s windows, "
                f"mics {self.spec.mic_spacing * 100:g} cm apart, on {self.device})")

    def __call__(self, wave: np.ndarray | torch.Tensor, sample_rate: int) -> LocalizationResult:
        """wave [2, samples] (mic 0, mic 1) at `sample_rate` -> LocalizationResult; LocalizeError for bad input."""
        return self._localize([self._prepare(check_stereo(wave, sample_rate, "wave"), int(sample_rate))])[0]

    def localize_file(self, path: str | Path) -> LocalizationResult:
        """A stereo wav, flac or ogg file (channel 0 = mic 0) -> LocalizationResult; LocalizeError naming it."""
        wave, sr = read_stereo(path)
        return self._localize([self._prepare(torch.from_numpy(wave), sr)])[0]

    def localize_files(self, paths: Iterable[str | Path], return_errors: bool = False
                       ) -> Iterator[tuple[Path, LocalizationResult | LocalizeError]]:
        """files -> (path, result) in order, lazily, FILES_PER_BATCH files' windows per model pass.

        A file that cannot be read raises its LocalizeError, or with `return_errors` is yielded as
        (path, LocalizeError) and the others go on (as asyncio.gather's return_exceptions).
        """
        paths = [Path(p) for p in paths]
        for first in range(0, len(paths), FILES_PER_BATCH):
            group = paths[first:first + FILES_PER_BATCH]
            read: dict[int, _Recording | LocalizeError] = {}
            for i, path in enumerate(group):
                try:
                    wave, sr = read_stereo(path)
                    read[i] = self._prepare(torch.from_numpy(wave), sr)
                except LocalizeError as err:
                    if not return_errors:
                        raise
                    read[i] = err
            good = [i for i, r in read.items() if isinstance(r, _Recording)]
            results = dict(zip(good, self._localize([read[i] for i in good])))
            for i, path in enumerate(group):
                yield path, results.get(i, read[i])

    @torch.no_grad()
    def clip_angles(self, clips: torch.Tensor) -> torch.Tensor:
        """clips [B, 2, clip_samples] at the model's rate (one training-length clip each) -> angles_deg [B, slots],
        sorted: one window per clip, as training's held-out evaluation scores them."""
        return decode_posteriors(self._posteriors(clips.to(self.device)))[1].cpu()

    # -- the two places that know the model's input and output --------------------------------------------

    @torch.no_grad()
    def _posteriors(self, windows: torch.Tensor) -> torch.Tensor:
        """windows [W, 2, clip_samples] at the model's rate -> posteriors [W, slots, classes] (softmax per slot)."""
        return torch.cat([self.network(windows[i:i + WINDOWS_PER_CALL])
                          for i in range(0, windows.shape[0], WINDOWS_PER_CALL)])

    def _decode(self, posteriors: torch.Tensor, recording: _Recording) -> LocalizationResult:
        """posteriors [W, slots, classes] of one recording's windows -> its LocalizationResult."""
        sr, window = self.spec.sr, self.spec.clip_samples
        win_classes, win_angles, win_posteriors = decode_posteriors(posteriors)
        classes, angles, mean = decode_posteriors(posteriors.mean(dim=0, keepdim=True))  # [1, S], [1, S], [1, S, C]
        chosen = mean[0].gather(-1, classes[0][:, None])[:, 0]
        windows = tuple(
            WindowResult(start_s=s / sr, end_s=min(s + window, recording.samples_model) / sr,
                         angles_deg=a.double().cpu().numpy(), classes=c.cpu().numpy(), posteriors=p.cpu().numpy())
            for s, a, c, p in zip(recording.starts, win_angles, win_classes, win_posteriors))
        return LocalizationResult(
            angles_deg=angles[0].double().cpu().numpy(), classes=classes[0].cpu().numpy(),
            probabilities=chosen.cpu().numpy(), posteriors=mean[0].cpu().numpy(), windows=windows,
            target=self.spec.target, sample_rate_in=recording.sample_rate_in, sample_rate_model=sr,
            duration_s=recording.samples_in / recording.sample_rate_in, window_s=window / sr)

    # -- plumbing ----------------------------------------------------------------------------------------------

    def _prepare(self, wave: torch.Tensor, sample_rate: int) -> _Recording:
        """checked wave [2, T] at sample_rate -> its windows at the model's rate, on the model's device."""
        x = resample(wave, sample_rate, self.spec.sr).to(self.device)
        windows, starts = cut_windows(x, self.spec.clip_samples)
        return _Recording(windows, starts, x.shape[-1], wave.shape[-1], sample_rate)

    def _localize(self, recordings: list[_Recording]) -> list[LocalizationResult]:
        """recordings -> one result each; all their windows go through the model in one _posteriors call."""
        if not recordings:
            return []
        posteriors = self._posteriors(torch.cat([r.windows for r in recordings]))
        parts = posteriors.split([r.windows.shape[0] for r in recordings])
        return [self._decode(p, r) for p, r in zip(parts, recordings)]
