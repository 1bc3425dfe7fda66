"""A trained localizer as a Python object: weights in, waves or files in, talkers out (angles, count, tracks).

    from ssl_model import Localizer

    localizer = Localizer.from_pretrained()            # or .from_file("model.safetensors"), .from_run("runs/seed")
    result = localizer(wave, sample_rate)              # wave [2, samples]: mic 0, mic 1 (numpy or torch)
    result = localizer("rec.wav")                      # a file (str or Path): localize_file
    results = localizer(batch, sample_rate)            # batch [B, 2, samples]: a list of B results
    result = localizer(wave, sample_rate, mic_spacing=0.09)   # a model trained for a range of spacings
    result.angles_deg, result.count, result.probabilities, result.windows, result.frames, result.to_dict()
    for window in localizer.stream("meeting.flac"): ...     # WindowResults as they are computed, bounded memory
    for path, result in localizer.localize_files(["a.wav", "b.flac"]): ...

A recording is read in chunks, resampled to the model's rate and cut into windows of the training clip length
(half-overlapping, the last one aligned to the end; a recording shorter than one window is zero-padded, as
training clips are); see ssl_model/stream_audio.py. Each window is normalized as the training mixtures were and
the model gives, per slot, a direction posterior and an existence probability, and per 0.2 s step an activity map
over directions (models with those heads). A window names the talkers of its held slots (talkers that count: the
leading slots with existence > 0.5; a two-talker model always names two). The recording's talkers: for a model
that counts, the clusters of the windows' talkers heard in enough of the windows (ssl_model/talkers.py); for a
two-talker model, the two angles of the windows' averaged posteriors. Weights are read from safetensors: no code
is executed on load. Every refusal is a LocalizeError whose message is one line naming the input.

No silent wrong answer: a recording either mic of which holds no usable signal over its whole length (RMS, its mean
removed, below SIGNAL_FLOOR_DBFS: zeros, a constant, a few LSB of a 16-bit file) is refused; a window in which
either mic is below that floor is not given to the model and names no talkers (`silent`); a model whose outputs
are not finite (broken weights) is an error, never a result; a file that changes on disk while it is read is an
error (stream_audio.FileState).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import soundfile
import torch

from ssl_model.export import (PRETRAINED, PRETRAINED_NAMES, WEIGHTS, CheckpointError, LocalizerSpec, Posteriors,
                              load_localizer, model_weights)
from ssl_model.features import lowpass
from ssl_model.stream_audio import (FileChanged, FileState, array_chunks, file_chunks, resampled_blocks,
                                    resampled_length, sliding_windows, window_starts)
from ssl_model.talkers import Decoding, TrackGrid, cluster_detections, delay_samples, distinct, track_peaks
from ssl_model.targets import decode, decode_posteriors, decode_slot_posteriors

MIN_SECONDS = 1.0
WINDOWS_PER_CALL = 16  # windows per forward pass (bounds memory for long recordings)
READ_SECONDS = 20.0  # audio read from a file at a time
RESAMPLER_ROLLOFF = 0.99  # torchaudio.functional.resample's default: its passband ends at 0.99 of the lower Nyquist
# The level (RMS re full scale 1.0, each channel's mean removed) under which a mic holds no usable signal: 1e-4 of
# full scale, 3.3 LSB of a 16-bit file. Speech recordings sit at -50 to -20 dBFS and a quiet room's noise floor
# near -70 dBFS, so -80 dBFS keeps quiet recordings; under it is dither, quantization noise or a dead input, whose
# inter-mic phase is not the room's, yet the model (each window is level-normalized) would name talkers in it.
SIGNAL_FLOOR_DBFS = -80.0
FLOOR_POWER = 10 ** (SIGNAL_FLOOR_DBFS / 10)


class LocalizeError(Exception):
    """Input the localizer refuses (a file, a wave, a weights file, a device); the message is one line."""


# ---------------------------------------------------------------------------------------------- results


def rounded(values: Iterable[float], digits: int = 2) -> list[float]:
    return [round(float(v), digits) for v in values]


@dataclass(frozen=True)
class FrameResult:
    """One step of a track: its centre (seconds) and the angles active in it (ascending)."""
    time_s: float
    angles_deg: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"time_s": round(self.time_s, 3), "angles_deg": rounded(self.angles_deg)}


@dataclass(frozen=True)
class WindowResult:
    """One window of the recording (seconds at the model's rate) and the talkers it names."""
    start_s: float
    end_s: float
    count: int
    angles_deg: np.ndarray  # float64 [count], ascending
    classes: np.ndarray  # int64 [count]
    probabilities: np.ndarray  # float32 [count]: existence probability (a model that counts) or posterior at the class
    posteriors: np.ndarray  # float32 [slots, classes]: held slots first (ascending), then the others
    existence: np.ndarray  # float32 [slots], in that order
    slot_angles_deg: np.ndarray  # float64 [slots]: every slot's decoded angle, held or not, in that order
    frames: tuple[FrameResult, ...]  # the window's track steps (models with a frame head)
    activity: np.ndarray  # float32 [steps, classes]: the track's activity probabilities (steps = 0 without one)
    silent: bool = False  # below SIGNAL_FLOOR_DBFS on a mic: not given to the model; no talkers, no slots (0 rows)
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


@dataclass(frozen=True)
class LocalizationResult:
    """The talkers of one recording: count, angles in degrees (ascending), their probabilities and classes,
    per-window results and the recording's track."""
    count: int
    angles_deg: np.ndarray  # float64 [count], ascending
    classes: np.ndarray  # int64 [count], the bin of each angle
    probabilities: np.ndarray  # float32 [count]: share of the windows that heard the talker (counting model), or
    #                            each slot's averaged posterior at its class (two-talker model)
    candidates_deg: np.ndarray  # float64 [M]: every direction the windows named, strongest first (M >= count)
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

    @property
    def bin_deg(self) -> float:
        return 180.0 / self.posteriors.shape[-1]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object `python -m ssl_model.localize` prints for a file (without its `file`, `kind` and
        `plot`); `frames` only for a model with a frame head."""
        out = {
            "count": self.count,
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
        }
        if not self.tracked:
            del out["frames"]
        return out


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


class ChannelLevels:
    """Running level of each channel of a stereo stream (samples, sums, squares, lowest and highest sample):
    whether each mic holds a usable signal, in memory independent of the stream's length."""

    def __init__(self) -> None:
        self.samples = 0
        self.sums, self.squares = np.zeros(2), np.zeros(2)
        self.lows, self.highs = np.full(2, np.inf), np.full(2, -np.inf)

    def add(self, chunk: torch.Tensor) -> None:
        """chunk [2, n], finite."""
        x = chunk.double().numpy()
        self.samples += x.shape[-1]
        self.sums += x.sum(axis=-1)
        self.squares += np.square(x).sum(axis=-1)
        if x.shape[-1]:
            self.lows = np.minimum(self.lows, x.min(axis=-1))
            self.highs = np.maximum(self.highs, x.max(axis=-1))

    def dbfs(self) -> np.ndarray:
        """[2]: each channel's RMS with its mean (DC) removed, in dB re full scale; -inf for none."""
        n = max(self.samples, 1)
        power = np.maximum(self.squares / n - np.square(self.sums / n), 0.0)
        with np.errstate(divide="ignore"):
            return 10 * np.log10(power)

    def describe(self, channel: int) -> str:
        if self.lows[channel] == self.highs[channel] == 0:
            return "all zeros"
        if self.lows[channel] == self.highs[channel]:
            return f"constant {self.lows[channel]:g}: a DC offset only"
        return f"RMS {self.dbfs()[channel]:.1f} dBFS"

    def check(self, name: str) -> None:
        """LocalizeError naming `name` when a channel's level is below SIGNAL_FLOOR_DBFS: `silent` for both,
        a dead mic for one."""
        level = self.dbfs()
        dead = level < SIGNAL_FLOOR_DBFS
        floor = f"the {SIGNAL_FLOOR_DBFS:g} dBFS floor"
        if dead.all():
            raise LocalizeError(f"{name}: silent (mic 0: {self.describe(0)}; mic 1: {self.describe(1)}; below {floor}): "
                                f"nothing to localize")
        if dead.any():
            mic = int(np.argmax(dead))
            raise LocalizeError(f"{name}: mic {mic} (channel {mic}) is dead ({self.describe(mic)}, below {floor}, while "
                                f"mic {1 - mic} is at {level[1 - mic]:.1f} dBFS): localizing needs both microphones")


def window_is_silent(piece: torch.Tensor) -> bool:
    """piece [2, n] (a window without its zero padding) -> whether either channel, its mean removed, is below
    SIGNAL_FLOOR_DBFS (a pause, or one mic dropping out): such a window is not given to the model."""
    x = piece.double()
    power = (x - x.mean(dim=-1, keepdim=True)).square().mean(dim=-1)
    return bool((power < FLOOR_POWER).any())


def check_stereo(wave: np.ndarray | torch.Tensor, sample_rate: int, name: str) -> torch.Tensor:
    """wave [channels, samples] -> float32 tensor [2, samples]; LocalizeError naming `name` unless it is finite
    stereo of at least MIN_SECONDS with a usable signal on both mics (ChannelLevels.check)."""
    try:
        x = wave.detach() if isinstance(wave, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(wave))
    except (TypeError, ValueError):  # strings, objects, ragged lists
        raise LocalizeError(f"{name}: not audio samples ({type(wave).__name__}); expected a wave [2, samples], a batch "
                            f"[B, 2, samples] or one file's path (many files: localize_files)") from None
    # any dtype, any strides (wave[::-1]); integer samples to full scale 1.0, so their level reads in dBFS (the
    # model would not mind: each window is level-normalized)
    scale = 2.0 ** (torch.iinfo(x.dtype).bits - 1) if not (x.is_floating_point() or x.dtype == torch.bool) else 1.0
    x = x.float().cpu() / scale
    if x.dim() != 2:
        raise LocalizeError(f"{name}: expected a wave [2, samples] (mic 0, mic 1) or a batch [B, 2, samples], got "
                            f"shape {list(x.shape)}")
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
    levels = ChannelLevels()
    levels.add(x)
    levels.check(name)
    return x


def open_stereo(path: str | Path) -> tuple[int, int]:
    """A stereo audio file -> (frames, sample rate) from its header; LocalizeError for anything else."""
    path = Path(path)
    if not path.exists():
        raise LocalizeError(f"{path}: no such file")
    if not path.is_file():
        raise LocalizeError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise LocalizeError(f"{path}: empty file (0 bytes)")
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise LocalizeError(f"{path}: not a readable audio file ({reason}) (expected stereo wav, flac or ogg)") from None
    if info.channels != 2:
        kind = "mono" if info.channels == 1 else f"{info.channels}-channel"
        raise LocalizeError(f"{path}: {kind} audio; expected stereo (2 channels: mic 0 left, mic 1 right)")
    if info.frames <= 0:
        raise LocalizeError(f"{path}: empty audio")
    if info.frames / info.samplerate < MIN_SECONDS:
        raise LocalizeError(f"{path}: {info.frames / info.samplerate:.3f} s of audio is too short; "
                            f"need at least {MIN_SECONDS:g} s")
    return int(info.frames), int(info.samplerate)


def checked_chunks(chunks: Iterator[torch.Tensor], name: str, frames: int | None = None) -> Iterator[torch.Tensor]:
    """chunks [2, n] -> the same chunks; LocalizeError naming `name` at a non-finite sample, a file unreadable after
    its header or changed while it is read (stream_audio.FileChanged), or once the stream ends: other than `frames`
    samples in all, or a mic without usable signal over the whole recording (ChannelLevels.check)."""
    levels = ChannelLevels()
    try:
        for chunk in chunks:
            if not torch.isfinite(chunk).all():
                raise LocalizeError(f"{name}: NaN or infinite samples")
            levels.add(chunk)
            yield chunk
    except FileChanged as err:
        raise LocalizeError(f"{name}: {err}") from None
    except (RuntimeError, soundfile.LibsndfileError) as err:  # a file damaged after its header
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise LocalizeError(f"{name}: unreadable audio ({reason})") from None
    if frames is not None and levels.samples != frames:
        raise LocalizeError(f"{name}: {levels.samples:,} frames read where its header said {frames:,} "
                            f"(changed while being read?)")
    levels.check(name)


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


@dataclass
class _Recording:
    """One input on its way through the model: its chunks at its own rate, read as they are needed."""
    chunks: Iterator[torch.Tensor]
    samples_in: int
    sample_rate_in: int
    name: str = "wave"  # how refusals name it


def band_limit(sr_in: int, sr: int) -> torch.Tensor | None:
    """-> the cutoff [1] (Hz) that a recording made at sr_in is low-passed at once resampled to the model's sr: the
    resampler's passband edge (RESAMPLER_ROLLOFF of the input's Nyquist), or None when sr_in >= sr. Above it the
    upsampler leaves attenuated mirror images whose phase differences are mirrored too: a model reads them as
    talkers at other angles (an 8 kHz file of talkers at 50 and 125 degrees read 27 and 118 before)."""
    return torch.tensor([RESAMPLER_ROLLOFF * sr_in / 2]) if sr_in < sr else None


class Localizer:
    """A trained model and the spec of its input (ssl_model.export.LocalizerSpec): waves or files -> talkers.

    Build it with from_pretrained(), from_file(path) or from_run(dir); call it on a wave [2, samples] at any
    sample rate, a batch of them [B, 2, samples] or a file's path, stream() a long file window by window, or give
    localize_files() many files.
    """

    def __init__(self, model: torch.nn.Module, spec: LocalizerSpec, device: str | torch.device = "cpu",
                 source: Path | None = None, decoding: Decoding | None = None):
        self.device = torch_device(device)
        self.model = model.to(self.device).eval()
        self.spec = spec
        self.network = Posteriors(self.model, spec.normalize)  # what ssl_model.export writes as a graph
        self.source = source  # the weights file, when loaded from one
        # a counting model's thresholds (windows' slots -> a recording's talkers): its file's unless given
        self.decoding = spec.decoding if decoding is None else decoding

    def with_decoding(self, decoding: Decoding) -> "Localizer":
        """The same model (shared, not copied) with other decoding thresholds."""
        return Localizer(self.model, self.spec, self.device, self.source, decoding)

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
    def from_pretrained(cls, name: str = PRETRAINED_NAMES[0], device: str | torch.device = "cpu") -> "Localizer":
        """A model shipped in ssl_model/pretrained/NAME/ (its README.md is the model card): "real" (the default:
        0-3 talkers, noise, any spacing from 6 to 16 cm) or "two-talker" (the seed's clean two-talker model)."""
        if name not in PRETRAINED_NAMES:
            raise LocalizeError(f"{name!r}: no shipped model of that name; the shipped ones: {', '.join(PRETRAINED_NAMES)}")
        try:
            return cls.from_file(model_weights(name), device)
        except CheckpointError as err:
            raise LocalizeError(str(err)) from None

    @property
    def sample_rate(self) -> int:
        return self.spec.sr

    @property
    def target(self) -> str:
        return self.spec.target

    @property
    def window_s(self) -> float:
        return self.spec.clip_samples / self.spec.sr

    @property
    def counts(self) -> bool:
        """Whether the model says how many talk (a count head), rather than always naming every slot."""
        return bool(self.spec.model.count_head)

    @property
    def spacing_range(self) -> tuple[float, float]:
        """Mic spacings (metres) the model serves: its training range, or its one spacing."""
        config = self.spec.model
        if config.spacing_input:
            return float(config.mic_spacing_range[0]), float(config.mic_spacing_range[1])
        return float(config.mic_spacing), float(config.mic_spacing)

    @property
    def tracks(self) -> bool:
        """Whether the model has a frame head (a per-step track: `frames`)."""
        return bool(self.spec.model.frame_head)

    @property
    def step_s(self) -> float:
        """Seconds per track step (models with a frame head)."""
        config = self.spec.model
        return config.frames_per_patch * config.frame_step_tokens * config.hop / self.spec.sr

    def __repr__(self) -> str:
        where = f"{self.source}" if self.source else "in memory"
        low, high = self.spacing_range
        spacing = f"{low * 100:g} cm" if low == high else f"{low * 100:g}-{high * 100:g} cm"
        talkers = f"0-{self.spec.model.num_slots}" if self.counts else f"{self.spec.model.num_slots}"
        return (f"Localizer({where}: {talkers} talkers, {self.target} angles, {self.sample_rate} Hz, "
                f"{self.window_s:g} s windows, mics {spacing} apart, on {self.device})")

    def check_spacing(self, mic_spacing: float | None) -> float:
        """mic spacing in metres (None: the model's own) -> the spacing to steer with; LocalizeError outside what
        the model serves (spacing_range)."""
        if mic_spacing is None:
            return float(self.spec.model.mic_spacing)
        spacing = float(mic_spacing)
        low, high = self.spacing_range
        if not math.isfinite(spacing) or spacing <= 0:
            raise LocalizeError(f"mic spacing {mic_spacing}: expected a positive distance in metres (0.10 = 10 cm)")
        if low == high and abs(spacing - low) > 1e-6:
            raise LocalizeError(f"mic spacing {spacing * 100:g} cm: this model serves one spacing, {low * 100:g} cm "
                                f"(it has no spacing input); use a model trained for a range of spacings")
        if not low - 1e-9 <= spacing <= high + 1e-9:
            raise LocalizeError(f"mic spacing {spacing * 100:g} cm: outside the {low * 100:g}-{high * 100:g} cm "
                                f"this model was trained for")
        return spacing

    # -- entry points -----------------------------------------------------------------------------------------

    def __call__(self, audio: np.ndarray | torch.Tensor | str | os.PathLike, sample_rate: int | None = None,
                 mic_spacing: float | None = None) -> LocalizationResult | list[LocalizationResult]:
        """wave [2, samples] (mic 0, mic 1) at `sample_rate` -> LocalizationResult; a batch [B, 2, samples] at
        `sample_rate` -> a list of B LocalizationResults (every row checked before any is run); a file's path (str
        or Path, no sample_rate: the file has its own) -> localize_file(path). `mic_spacing`: the mics' spacing in
        metres. LocalizeError for bad input."""
        if isinstance(audio, (str, os.PathLike)):
            if sample_rate is not None:
                raise LocalizeError(f"{audio}: a file carries its own sample rate; call localizer(path) without "
                                    f"sample_rate={sample_rate}")
            return self.localize_file(audio, mic_spacing)
        if sample_rate is None:
            raise LocalizeError("wave: sample_rate is required with a wave or a batch: localizer(wave, sample_rate) "
                                "(a file's path needs none)")
        spacing = self.check_spacing(mic_spacing)
        if (audio.ndim if hasattr(audio, "ndim") else np.ndim(audio)) == 3:
            recordings = [self._wave_recording(row, sample_rate, f"batch[{i}]") for i, row in enumerate(audio)]
            return [self._result(list(self._stream(r, spacing)), r, spacing) for r in recordings]
        recording = self._wave_recording(audio, sample_rate)
        return self._result(list(self._stream(recording, spacing)), recording, spacing)

    def localize_file(self, path: str | Path, mic_spacing: float | None = None,
                      on_window: Callable[[WindowResult], None] | None = None) -> LocalizationResult:
        """A stereo wav, flac or ogg file (channel 0 = mic 0) -> LocalizationResult; LocalizeError naming it.
        Read in chunks: memory does not grow with the file's length beyond its (small) per-window results.
        `on_window` is called with each WindowResult as soon as it is computed (what `--stream` prints)."""
        spacing = self.check_spacing(mic_spacing)
        recording = self._file_recording(path)
        windows = []
        for window in self._stream(recording, spacing):
            if on_window is not None:
                on_window(window)
            windows.append(window)
        return self._result(windows, recording, spacing)

    def stream(self, path: str | Path, mic_spacing: float | None = None,
               read_seconds: float = READ_SECONDS) -> Iterator[WindowResult]:
        """A stereo file -> its WindowResults as they are computed (WINDOWS_PER_CALL windows at a time), reading
        `read_seconds` of audio at a time; a window without usable signal comes back `silent` (no talkers), not
        run through the model. localize_file's result aggregates exactly these windows."""
        spacing = self.check_spacing(mic_spacing)
        return self._stream(self._file_recording(path, read_seconds), spacing)

    def window_count(self, path: str | Path) -> int:
        """How many windows a file's stream gives (from its header); LocalizeError as localize_file's."""
        frames, sr = open_stereo(path)
        return len(window_starts(resampled_length(frames, sr, self.spec.sr), self.spec.clip_samples))

    def localize_files(self, paths: Iterable[str | Path], mic_spacing: float | None = None,
                       return_errors: bool = False) -> Iterator[tuple[Path, LocalizationResult | LocalizeError]]:
        """files -> (path, result) in order, lazily, one file at a time.

        A file that cannot be read raises its LocalizeError, or with `return_errors` is yielded as
        (path, LocalizeError) and the others go on (as asyncio.gather's return_exceptions).
        """
        for path in (Path(p) for p in paths):
            try:
                yield path, self.localize_file(path, mic_spacing)
            except LocalizeError as err:
                if not return_errors:
                    raise
                yield path, err

    def aggregate(self, windows: list[WindowResult], duration_s: float, sample_rate_in: int,
                  mic_spacing: float | None = None) -> LocalizationResult:
        """A recording's WindowResults (e.g. collected from stream()) -> its LocalizationResult."""
        spacing = self.check_spacing(mic_spacing)
        return self._result(windows, _Recording(iter(()), round(duration_s * sample_rate_in), sample_rate_in), spacing)

    @torch.no_grad()
    def clip_angles(self, clips: torch.Tensor, mic_spacing: float | None = None) -> torch.Tensor:
        """clips [B, 2, clip_samples] at the model's rate (one training-length clip each) -> angles_deg [B, slots],
        every slot sorted (existence aside): one window per clip, as training's held-out evaluation scores them."""
        spacing = torch.tensor(self.check_spacing(mic_spacing), device=self.device)
        outputs = self.network(clips.to(self.device), spacing)
        self._check_outputs(outputs, "clips")
        return decode_posteriors(outputs[0])[1].cpu()

    # -- inputs -------------------------------------------------------------------------------------------------

    def _wave_recording(self, wave: np.ndarray | torch.Tensor, sample_rate: int, name: str = "wave") -> _Recording:
        x = check_stereo(wave, sample_rate, name)
        return _Recording(array_chunks(x, max(1, round(READ_SECONDS * sample_rate))), x.shape[-1], int(sample_rate),
                          name)

    def _file_recording(self, path: str | Path, read_seconds: float = READ_SECONDS) -> _Recording:
        try:
            state = FileState.of(path)  # before the header: what every read must find
        except OSError:
            state = None  # open_stereo names what is wrong with the path
        frames, sr = open_stereo(path)
        chunks = checked_chunks(file_chunks(path, max(1, round(read_seconds * sr)), state), str(path), frames)
        return _Recording(chunks, frames, sr, str(path))

    def _check_outputs(self, outputs: tuple[torch.Tensor, ...], name: str) -> None:
        """The network's (posteriors, existence, track) -> LocalizeError naming `name` unless all are finite."""
        if not all(bool(torch.isfinite(t).all()) for t in outputs):
            where = self.source or "in memory"
            raise LocalizeError(f"{name}: the model ({where}) gave NaN or infinite outputs (broken weights?): "
                                f"no result")

    # -- the two places that know the model's input and output --------------------------------------------

    @torch.no_grad()
    def _stream(self, recording: _Recording, spacing: float) -> Iterator[WindowResult]:
        """recording -> its WindowResults, WINDOWS_PER_CALL windows per model pass."""
        sr, window = self.spec.sr, self.spec.clip_samples
        total = resampled_length(recording.samples_in, recording.sample_rate_in, sr)
        blocks = resampled_blocks(recording.chunks, recording.sample_rate_in, sr)
        band = band_limit(recording.sample_rate_in, sr)
        batch: list[tuple[int, torch.Tensor]] = []
        for start, piece in sliding_windows(blocks, total, window):
            batch.append((start, piece if band is None else lowpass(piece[None], band, sr)[0]))
            if len(batch) == WINDOWS_PER_CALL:
                yield from self._window_results(batch, total, spacing, recording.name)
                batch = []
        if batch:
            yield from self._window_results(batch, total, spacing, recording.name)
        for _ in blocks:  # the rest of the stream: its checks (checked_chunks) run when it ends
            pass

    def _window_results(self, batch: list[tuple[int, torch.Tensor]], total: int, spacing: float, name: str
                        ) -> list[WindowResult]:
        """[(start, window [2, clip_samples])] -> their WindowResults: the silent ones (window_is_silent, on the
        window's own samples) without the model, the others in one model pass."""
        window = self.spec.clip_samples
        silent = [window_is_silent(piece[:, :min(window, total - start)]) for start, piece in batch]
        heard = [item for item, quiet in zip(batch, silent) if not quiet]
        decoded = iter(self._decode_windows(heard, total, spacing, name) if heard else [])
        return [self._silent_window(start, total) if quiet else next(decoded)
                for (start, _), quiet in zip(batch, silent)]

    def _silent_window(self, start: int, total: int) -> WindowResult:
        """A window with no usable signal: no talkers, no slots, no track steps."""
        sr, classes = self.spec.sr, self.spec.model.num_classes
        return WindowResult(
            start_s=start / sr, end_s=min(start + self.spec.clip_samples, total) / sr, count=0,
            angles_deg=np.zeros(0), classes=np.zeros(0, np.int64), probabilities=np.zeros(0, np.float32),
            posteriors=np.zeros((0, classes), np.float32), existence=np.zeros(0, np.float32),
            slot_angles_deg=np.zeros(0), frames=(), activity=np.zeros((0, classes), np.float32), silent=True,
            tracked=self.tracks)

    def _decode_windows(self, batch: list[tuple[int, torch.Tensor]], total: int, spacing: float, name: str
                        ) -> list[WindowResult]:
        """[(start, window [2, clip_samples])] -> their WindowResults (one model pass); LocalizeError naming
        `name` for non-finite model outputs."""
        sr, window = self.spec.sr, self.spec.clip_samples
        windows = torch.stack([piece for _, piece in batch]).to(self.device)
        outputs = self.network(windows, torch.tensor(spacing, device=self.device))  # one steering
        self._check_outputs(outputs, name)
        posteriors, exist, track = outputs
        count, angles, posteriors, exist = decode_slot_posteriors(posteriors, exist, self.decoding.existence)
        if self.counts:
            count, angles, posteriors, exist = self._drop_copies(count, angles, posteriors, exist, spacing)
        classes, slot_angles = decode(posteriors.clamp_min(1e-12).log())
        peaks = posteriors.gather(-1, classes[..., None])[..., 0]
        sure = exist if self.counts else peaks
        bin_deg = 180.0 / posteriors.shape[-1]
        out = []
        for i, (start, _) in enumerate(batch):
            k = int(count[i])
            activity = track[i].cpu().numpy()
            steps = track_peaks(activity, bin_deg, max_peaks=exist.shape[1], delay_of=self._delay_of(spacing),
                                resolve_samples=self.decoding.resolve_samples)
            frames = tuple(FrameResult(start / sr + (step + 0.5) * self.step_s, tuple(a)) for step, a in enumerate(steps))
            out.append(WindowResult(
                start_s=start / sr, end_s=min(start + window, total) / sr, count=k,
                angles_deg=angles[i, :k].double().cpu().numpy(), classes=classes[i, :k].cpu().numpy(),
                probabilities=sure[i, :k].cpu().numpy(), posteriors=posteriors[i].cpu().numpy(),
                existence=exist[i].cpu().numpy(), slot_angles_deg=slot_angles[i].double().cpu().numpy(), frames=frames,
                activity=activity, tracked=self.tracks))
        return out

    def _delay_of(self, spacing: float) -> Callable[[np.ndarray], np.ndarray]:
        """-> angles [...] (degrees) -> the delays [...] in samples at the model's rate that the pair hears."""
        return lambda angles: delay_samples(angles, spacing, self.spec.sr, self.spec.model.sound_speed)

    def _drop_copies(self, count: torch.Tensor, angles: torch.Tensor, posteriors: torch.Tensor, exist: torch.Tensor,
                     spacing: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """decode_slot_posteriors' (count [B], angles [B, S], posteriors [B, S, C], exist [B, S]) -> the same with the
        held slots that copy a stronger one (talkers.distinct: within resolve_samples of delay) moved behind the held
        ones and no longer counted."""
        count, angles, posteriors, exist = count.clone(), angles.clone(), posteriors.clone(), exist.clone()
        delay_of = self._delay_of(spacing)
        for i in range(count.shape[0]):
            k = int(count[i])
            if k < 2:
                continue
            kept = distinct(delay_of(angles[i, :k].double().cpu().numpy()), exist[i, :k].cpu().numpy(),
                            self.decoding.resolve_samples)
            if len(kept) == k:
                continue
            rest = [j for j in range(angles.shape[1]) if j not in set(kept.tolist())]
            order = torch.as_tensor(kept.tolist() + rest, device=angles.device)
            angles[i], posteriors[i], exist[i] = angles[i, order], posteriors[i, order], exist[i, order]
            angles[i, len(kept):] = float("nan")
            count[i] = len(kept)
        return count, angles, posteriors, exist

    def _talkers(self, heard: list[WindowResult], posteriors: np.ndarray, spacing: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The windows with signal and their averaged posteriors [S, C] -> the recording's (angles_deg, classes,
        probabilities, candidates_deg): module docstring; nobody when no window had signal."""
        num_classes = posteriors.shape[-1]
        if not heard:
            return np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0)
        if not self.counts:
            cls, ang, mean = decode_posteriors(torch.from_numpy(posteriors)[None])
            angles = ang[0].double().numpy()
            return angles, cls[0].numpy(), mean[0].gather(-1, cls[0][:, None])[:, 0].numpy(), angles
        talkers = cluster_detections(  # shares of the windows with signal: a pause does not dilute a talker
            np.concatenate([w.angles_deg for w in heard]), np.concatenate([w.probabilities for w in heard]),
            np.concatenate([np.full(w.count, i) for i, w in enumerate(heard)]), len(heard),
            merge_deg=self.decoding.merge_deg, min_share=self.decoding.min_share, max_talkers=posteriors.shape[0],
            one_per_window=self.decoding.one_per_window,
            delays=self._delay_of(spacing)(np.concatenate([w.angles_deg for w in heard])),
            resolve_samples=self.decoding.resolve_samples)
        classes = np.clip(np.floor(talkers.angles_deg / (180.0 / num_classes)), 0, num_classes - 1).astype(np.int64)
        return talkers.angles_deg, classes, talkers.shares.astype(np.float32), talkers.candidates_deg

    def _result(self, windows: list[WindowResult], recording: _Recording, spacing: float) -> LocalizationResult:
        """A recording's WindowResults -> its LocalizationResult (module docstring: how windows become talkers);
        silent windows count in the spectrum (as windows without talkers), not in the posteriors or the talkers."""
        heard = [w for w in windows if not w.silent]
        config = self.spec.model
        posteriors = (np.mean([w.posteriors for w in heard], axis=0) if heard
                      else np.zeros((config.num_slots, config.num_classes), np.float32))  # [S, C]
        num_classes = posteriors.shape[-1]
        bin_deg = 180.0 / num_classes
        spectrum = np.mean([w.posteriors[:w.count].sum(axis=0) for w in windows], axis=0)
        angles, classes, probabilities, candidates = self._talkers(heard, posteriors, spacing)
        grid = TrackGrid(self.step_s, num_classes)
        for w in windows:
            grid.add(w.start_s, w.activity)
        frames = tuple(FrameResult((g + 0.5) * self.step_s, tuple(a))
                       for g, a in enumerate(track_peaks(grid.average(), bin_deg, max_peaks=posteriors.shape[0],
                                                         delay_of=self._delay_of(spacing),
                                                         resolve_samples=self.decoding.resolve_samples)))
        return LocalizationResult(
            count=len(angles), angles_deg=angles, classes=classes, probabilities=probabilities,
            candidates_deg=candidates, posteriors=posteriors.astype(np.float32), spectrum=spectrum.astype(np.float32),
            windows=tuple(windows), frames=frames, target=self.spec.target, mic_spacing=spacing,
            sample_rate_in=recording.sample_rate_in, sample_rate_model=self.spec.sr,
            duration_s=recording.samples_in / recording.sample_rate_in, window_s=self.window_s, tracked=self.tracks)
