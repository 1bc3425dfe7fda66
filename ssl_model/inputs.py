"""What the localizer accepts, checked before any work: argument types, sample rates, waves, files and chunk
streams; every refusal is a LocalizeError whose message is one line naming the input or the argument.

    rate = check_sample_rate(sample_rate)          # int; LocalizeError for True, "16000", 0, 100 Hz, 22050.5
    x = check_stereo(wave, rate, "wave")           # float32 [2, samples], finite, >= 1 s, signal on both mics
    frames, rate = open_stereo("rec.wav")          # from the header
    tally = StreamTally(rate, spacing, "rec.wav")  # for chunk in tally.chunks(chunks): ... then tally.finish()

The signal levels (a mic with no usable signal, a silent window) are ssl_model.levels'; the warnings about an input
that is read but may mislead (clipping, impossible delays, splices, a phase-rewriting codec) are
ssl_model.input_checks', fed here with the input's own samples before any resampling.
"""
from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import soundfile
import torch

from ssl_model.input_checks import InputChecks
from ssl_model.levels import ChannelLevels
from ssl_model.stream_audio import FileChanged

MIN_SECONDS = 1.0
# The lowest sample rate taken: 4 kHz carries speech up to 2 kHz, where most of a voice's phase cues between two
# close mics are; 100 Hz or 1 Hz (a rate given by mistake: True, a wrong unit) carries none of it.
MIN_SAMPLE_RATE = 4000


class LocalizeError(Exception):
    """Input the localizer refuses (a file, a wave, a weights file, a device, an argument); one line."""


def torch_device(name: str | torch.device, what: str = "device") -> torch.device:
    """device name -> torch.device; LocalizeError `{what} {name}: ...` for a malformed name or an absent CUDA device."""
    if not isinstance(name, (str, torch.device)):
        raise LocalizeError(f"{what} {name!r}: a torch device name (cpu, cuda, cuda:1, ...), not "
                            f"{type(name).__name__}")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LocalizeError(f"{what} {name}: not a torch device name (cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LocalizeError(f"{what} {name}: torch finds no CUDA device on this machine; use {what} cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise LocalizeError(f"{what} {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def real_number(value: Any, what: str) -> float:
    """An argument that must be a real number (int, float, numpy scalar; not bool, str or complex) -> float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise LocalizeError(f"{what} {value!r}: expected a number, not {type(value).__name__}")
    return float(value)


def check_sample_rate(value: Any, what: str = "sample_rate") -> int:
    """samples per second (a whole number, int or float) -> int; LocalizeError naming `what` for another type, a
    fraction, or a rate under MIN_SAMPLE_RATE (one that cannot carry speech)."""
    rate = real_number(value, what)
    if not math.isfinite(rate) or rate != int(rate):
        raise LocalizeError(f"{what} {value!r}: expected a whole number of samples per second (such as 16000)")
    if rate <= 0:
        raise LocalizeError(f"{what} {value!r}: expected a positive number of samples per second")
    if rate < MIN_SAMPLE_RATE:
        raise LocalizeError(f"{what} {int(rate)} Hz cannot carry speech (its band ends at {rate / 2:g} Hz); need a "
                            f"recording at {MIN_SAMPLE_RATE} Hz or more")
    return int(rate)


def check_num_talkers(value: Any, most: int) -> int | None:
    """num_talkers (None: the model decides) -> the count to report, 0..`most`; LocalizeError otherwise."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or not 0 <= value <= most:
        raise LocalizeError(f"num_talkers {value!r}: expected a whole number from 0 to {most} (this model's slots)")
    return int(value)


def too_short(samples: int, rate: int, name: str) -> LocalizeError | None:
    """(samples, rate) -> the refusal of a recording shorter than MIN_SECONDS (in exact samples), or None."""
    need = math.ceil(MIN_SECONDS * rate)
    if samples >= need:
        return None
    seconds = math.floor(samples / rate * 1e4) / 1e4  # never rounded up to the limit
    return LocalizeError(f"{name}: {samples:,} samples at {rate} Hz ({seconds:.4f} s) is too short; need at least "
                         f"{need:,} samples ({MIN_SECONDS:g} s)")


def as_samples(x: Any, name: str) -> torch.Tensor:
    """audio samples (numpy or torch, any real dtype, any strides) -> a float32 CPU tensor of the same shape,
    integers scaled to full scale 1.0; LocalizeError naming `name` for what is not real samples."""
    try:
        t = x.detach() if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    except (TypeError, ValueError, RuntimeError):  # strings, objects, ragged lists
        raise LocalizeError(f"{name}: not audio samples ({type(x).__name__}); expected a wave [2, samples], a batch "
                            f"[B, 2, samples] or one file's path (many files: localize_files)") from None
    if t.is_complex():
        raise LocalizeError(f"{name}: complex samples ({str(t.dtype).removeprefix('torch.')}); expected real "
                            f"samples (take .real, or the signal before its FFT)")
    if t.dtype == torch.bool:
        raise LocalizeError(f"{name}: bool samples; expected numbers (float, or integer PCM)")
    scale = 1.0 if t.is_floating_point() else 2.0 ** (torch.iinfo(t.dtype).bits - 1)
    return t.float().cpu() / scale


def stereo_shape(x: torch.Tensor, name: str) -> None:
    """LocalizeError naming `name` unless x is [2, samples]."""
    if x.dim() != 2:
        raise LocalizeError(f"{name}: expected a wave [2, samples] (mic 0, mic 1) or a batch [B, 2, samples], got "
                            f"shape {list(x.shape)}")
    channels, samples = x.shape
    if channels != 2:
        kind = "mono" if channels == 1 else f"{channels}-channel"
        hint = "; a soundfile read is [samples, 2]: pass its .T" if samples == 2 else ""
        raise LocalizeError(f"{name}: {kind} audio; expected stereo (2 channels: mic 0 left, mic 1 right){hint}")


def check_stereo(wave: Any, sample_rate: int, name: str) -> torch.Tensor:
    """wave [channels, samples] -> float32 tensor [2, samples]; LocalizeError naming `name` unless it is finite
    stereo of at least MIN_SECONDS with a usable signal on both mics (ChannelLevels.check)."""
    x = as_samples(wave, name)
    stereo_shape(x, name)
    short = too_short(x.shape[-1], sample_rate, name)
    if short is not None:
        raise short
    if not torch.isfinite(x).all():
        raise LocalizeError(f"{name}: NaN or infinite samples")
    levels = ChannelLevels()
    levels.add(x)
    if levels.problem(name):
        raise LocalizeError(levels.problem(name))
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
    rate = check_sample_rate(info.samplerate, f"{path}: recorded at")
    short = too_short(int(info.frames), rate, str(path))
    if short is not None:
        raise short
    return int(info.frames), rate


class StreamTally:
    """One recording's chunks on their way in: each checked (stereo, finite), counted and fed to the level check
    and the input warnings (InputChecks) at the input's own rate; finish() refuses, once the stream has ended, a
    recording shorter than MIN_SECONDS, one of other than `frames` samples (a file's header), or one a mic of which
    holds no usable signal. Memory does not grow with the stream's length."""

    def __init__(self, sample_rate: int, mic_spacing: float, name: str, frames: int | None = None,
                 sound_speed: float = 340.0):
        self.sample_rate, self.name, self.frames = sample_rate, name, frames
        self.levels = ChannelLevels()
        self.checks = InputChecks(sample_rate, mic_spacing, name, sound_speed)
        self.notes: list[str] = []  # warnings known before the samples (a file's coding)

    @property
    def samples(self) -> int:
        return self.levels.samples

    def chunks(self, chunks: Iterable[Any]) -> Iterator[torch.Tensor]:
        """chunks [2, n] (numpy or torch, any real dtype) -> float32 tensors [2, n], checked as they pass; a file
        that is damaged after its header or changes while it is read is a LocalizeError naming it."""
        try:
            for index, chunk in enumerate(chunks):
                x = as_samples(chunk, f"{self.name}: chunk {index}")
                stereo_shape(x, f"{self.name}: chunk {index}")
                if not torch.isfinite(x).all():
                    raise LocalizeError(f"{self.name}: NaN or infinite samples (chunk {index})")
                self.levels.add(x)
                self.checks.update(x.numpy())
                yield x
        except FileChanged as err:
            raise LocalizeError(f"{self.name}: {err}") from None
        except (RuntimeError, soundfile.LibsndfileError) as err:  # a file damaged after its header
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise LocalizeError(f"{self.name}: unreadable audio ({reason})") from None

    def finish(self) -> None:
        """Once the stream has ended: LocalizeError naming the input when it cannot be trusted (class docstring)."""
        if self.frames is not None and self.samples != self.frames:
            raise LocalizeError(f"{self.name}: {self.samples:,} frames read where its header said {self.frames:,} "
                                f"(changed while being read?)")
        short = too_short(self.samples, self.sample_rate, self.name)
        if short is not None:
            raise short
        if self.levels.problem(self.name):
            raise LocalizeError(self.levels.problem(self.name))

    def warnings(self) -> tuple[str, ...]:
        """The one-line warnings about the input so far (its coding, then what its samples showed)."""
        return tuple(self.notes) + tuple(self.checks.warnings())
