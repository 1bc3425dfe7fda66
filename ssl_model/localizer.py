"""A trained localizer as a Python object: weights in, waves, files or live chunks in, talkers out.

    from ssl_model import Localizer

    localizer = Localizer.from_pretrained()            # a shipped name, a weights file or a folder holding one
    result = localizer(wave, sample_rate)              # wave [2, samples]: mic 0, mic 1 (numpy or torch)
    result = localizer("rec.wav")                      # a file (str or Path): localize_file
    results = localizer(batch, sample_rate)            # batch [B, 2, samples]: a list of B results
    result = localizer(wave, sample_rate, mic_spacing=0.09, num_talkers=2)   # the pair's spacing; a known count
    result.count, result.angles_deg, result.probabilities, result.windows, result.frames, result.to_dict()
    for window in localizer.stream("meeting.flac"): ...            # WindowResults as they are computed
    for window in localizer.stream(chunks, 16000): ...             # live: any iterable of [2, n] chunks, any n
    for path, result in localizer.localize_files(["a.wav", "b.flac"]): ...

Every input goes through one stream (ssl_model/window_stream.py): chunks at its own rate are checked
(ssl_model/inputs.py), resampled to the model's rate and cut into windows of the training clip length
(half-overlapping, the last one aligned to the end; a recording shorter than one window is zero-padded, as training
clips are; ssl_model/stream_audio.py); each window is decoded as soon as it is complete (ssl_model/decoder.py:
how windows become talkers) and the recording's result is built from its windows. Weights are read from
safetensors: no code is executed on load (ssl_model/loading.py). Every refusal is a LocalizeError whose message is
one line naming the input or the argument; what about an input that is read may still mislead (clipping, delays
the spacing cannot produce, splices, a phase-rewriting codec) is in the result's `warnings`.

No silent wrong answer: a recording either mic of which holds no usable signal over its whole length is refused; a
window in which either mic is below the floor is not given to the model and names no talkers (`silent`;
ssl_model/levels.py); a model whose outputs are not finite (broken weights) is an error, never a result; a file
that changes on disk while it is read is an error (stream_audio.FileState).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from ssl_model.decoder import WindowDecoder
from ssl_model.input_checks import format_warning
from ssl_model.inputs import (LocalizeError, StreamTally, check_num_talkers, check_sample_rate, check_stereo,
                              open_stereo, real_number, torch_device)
from ssl_model.loading import (PRETRAINED_DIR, PRETRAINED_NAMES, CheckpointError, LocalizerSpec, load_localizer,
                               model_weights)
from ssl_model.loading import run_weights as weights_of_run
from ssl_model.results import FrameResult, LocalizationResult, WindowResult
from ssl_model.stream_audio import FileState, array_chunks, file_chunks, resampled_length, window_starts
from ssl_model.talkers import Decoding
from ssl_model.targets import decode_posteriors
from ssl_model.window_stream import WINDOWS_PER_CALL, band_limit, stream_windows

READ_SECONDS = 20.0  # audio read from a file (or cut from a wave) at a time

__all__ = ["Localizer", "LocalizationResult", "WindowResult", "FrameResult", "LocalizeError", "torch_device",
           "run_weights", "band_limit", "WINDOWS_PER_CALL", "READ_SECONDS"]


def run_weights(run_dir: str | os.PathLike) -> Path:
    """A training run folder -> its model.safetensors; LocalizeError when the folder or the file is missing."""
    try:
        return weights_of_run(run_dir)
    except CheckpointError as err:
        raise LocalizeError(str(err)) from None


class Localizer:
    """A trained model and the spec of its input (ssl_model.loading.LocalizerSpec): waves, files or chunks -> talkers.

    Build it with from_pretrained(name_or_path), from_file(path) or from_run(dir), move it with .to(device); call
    it on a wave [2, samples] at any sample rate, a batch of them [B, 2, samples] or a file's path, stream() a
    file or live chunks window by window, or give localize_files() many files.
    """

    def __init__(self, model: torch.nn.Module, spec: LocalizerSpec, device: str | torch.device = "cpu",
                 source: Path | None = None, decoding: Decoding | None = None):
        self.device = torch_device(device)
        self.model = model.to(self.device).eval()
        self.spec = spec
        self.source = source  # the weights file, when loaded from one
        # a counting model's thresholds (windows' slots -> a recording's talkers): its file's unless given
        self.decoding = spec.decoding if decoding is None else decoding
        self.decoder = WindowDecoder(self.model, spec, self.device, self.decoding, str(source or "in memory"))
        self.network = self.decoder.network  # what ssl_model.export writes as a graph

    def with_decoding(self, decoding: Decoding) -> "Localizer":
        """The same model (shared, not copied) with other decoding thresholds."""
        return Localizer(self.model, self.spec, self.device, self.source, decoding)

    def to(self, device: str | torch.device) -> "Localizer":
        """This localizer on another device (as torch's Module.to: moved in place, and returned)."""
        self.__init__(self.model, self.spec, device, self.source, self.decoding)
        return self

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "Localizer":
        """A weights file written by training (model.safetensors) or ssl_model.loading.save_localizer, or a folder
        holding model.safetensors (a run folder, a shipped model's folder)."""
        if not isinstance(path, (str, os.PathLike)):
            raise LocalizeError(f"path {path!r}: expected a weights file's path, not {type(path).__name__}")
        if not Path(path).exists():
            raise LocalizeError(f"{path}: no such weights file or folder")
        return cls.from_pretrained(path, device)

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> "Localizer":
        """A training run folder (its model.safetensors)."""
        return cls.from_pretrained(run_weights(run_dir), device)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike | None = None,
                        device: str | torch.device = "cpu") -> "Localizer":
        """A model shipped in ssl_model/pretrained/NAME/ (its README.md is the model card): "wide" (the default:
        0-3 talkers, noise, any spacing from 4 to 20 cm), "real" (the same for 6-16 cm, the earlier default) or
        "two-talker" (the seed's clean two-talker model); or a weights file; or a folder holding model.safetensors."""
        if name_or_path is not None and not isinstance(name_or_path, (str, os.PathLike)):
            raise LocalizeError(f"name_or_path {name_or_path!r}: expected a shipped model's name "
                                f"({', '.join(PRETRAINED_NAMES)}) or a path, not {type(name_or_path).__name__}")
        device = torch_device(device)
        try:
            path = model_weights(name_or_path)
            model, spec = load_localizer(path, device)
        except CheckpointError as err:
            raise LocalizeError(str(err)) from None
        return cls(model, spec, device, source=path)

    @property
    def name(self) -> str:
        """The shipped model's name, or the weights file's path, or "in memory"."""
        if self.source is None:
            return "in memory"
        shipped = Path(self.source).resolve().parent
        return shipped.name if shipped.parent == PRETRAINED_DIR and shipped.name in PRETRAINED_NAMES else str(self.source)

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
        return self.decoder.counts

    @property
    def tracks(self) -> bool:
        """Whether the model has a frame head (a per-step track: `frames`)."""
        return self.decoder.tracks

    @property
    def step_s(self) -> float:
        """Seconds per track step (models with a frame head)."""
        return self.decoder.step_s

    @property
    def spacing_range(self) -> tuple[float, float]:
        """Mic spacings (metres) the model serves: its training range, or its one spacing."""
        config = self.spec.model
        if config.spacing_input:
            return float(config.mic_spacing_range[0]), float(config.mic_spacing_range[1])
        return float(config.mic_spacing), float(config.mic_spacing)

    def __repr__(self) -> str:
        low, high = self.spacing_range
        spacing = f"{low * 100:g} cm" if low == high else f"{low * 100:g}-{high * 100:g} cm"
        talkers = f"0-{self.spec.model.num_slots}" if self.counts else f"{self.spec.model.num_slots}"
        return (f"Localizer({self.name}: {talkers} talkers, {self.target} angles, {self.sample_rate} Hz, "
                f"{self.window_s:g} s windows, mics {spacing} apart, on {self.device})")

    def check_spacing(self, mic_spacing: Any) -> float:
        """mic spacing in metres (None: the model's own) -> the spacing to steer with; LocalizeError outside what
        the model serves (spacing_range) or for what is not a number."""
        if mic_spacing is None:
            return float(self.spec.model.mic_spacing)
        spacing = real_number(mic_spacing, "mic_spacing")
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

    def check_num_talkers(self, num_talkers: Any) -> int | None:
        """num_talkers (None: the model decides) -> the count to report; LocalizeError beyond the model's slots."""
        return check_num_talkers(num_talkers, self.spec.model.num_slots)

    # -- entry points -----------------------------------------------------------------------------------------

    def __call__(self, audio: np.ndarray | torch.Tensor | str | os.PathLike, sample_rate: int | None = None,
                 mic_spacing: float | None = None, num_talkers: int | None = None
                 ) -> LocalizationResult | list[LocalizationResult]:
        """wave [2, samples] (mic 0, mic 1) at `sample_rate` -> LocalizationResult; a batch [B, 2, samples] at
        `sample_rate` -> a list of B LocalizationResults (every row checked before any is run); a file's path (str
        or Path, no sample_rate: the file has its own) -> localize_file(path). `mic_spacing`: the mics' spacing in
        metres; `num_talkers`: report exactly this many talkers. LocalizeError for bad input."""
        if isinstance(audio, (str, os.PathLike)):
            if sample_rate is not None:
                raise LocalizeError(f"{audio}: a file carries its own sample rate; call localizer(path) without "
                                    f"sample_rate={sample_rate}")
            return self.localize_file(audio, mic_spacing, num_talkers=num_talkers)
        if sample_rate is None:
            raise LocalizeError("wave: sample_rate is required with a wave or a batch: localizer(wave, sample_rate) "
                                "(a file's path needs none)")
        rate, spacing = check_sample_rate(sample_rate), self.check_spacing(mic_spacing)
        count = self.check_num_talkers(num_talkers)
        if (audio.ndim if hasattr(audio, "ndim") else np.ndim(audio)) == 3:
            waves = [check_stereo(row, rate, f"batch[{i}]") for i, row in enumerate(audio)]
            return [self._localize(self._wave_chunks(x), rate, spacing, f"batch[{i}]", count)
                    for i, x in enumerate(waves)]
        return self._localize(self._wave_chunks(check_stereo(audio, rate, "wave")), rate, spacing, "wave", count)

    def localize_file(self, path: str | os.PathLike, mic_spacing: float | None = None,
                      on_window: Callable[[WindowResult], None] | None = None,
                      num_talkers: int | None = None) -> LocalizationResult:
        """A stereo wav, flac or ogg file (channel 0 = mic 0) -> LocalizationResult; LocalizeError naming it.
        Read in chunks: memory does not grow with the file's length beyond its (small) per-window results.
        `on_window` is called with each WindowResult as soon as it is computed (what `--stream` prints)."""
        spacing, count = self.check_spacing(mic_spacing), self.check_num_talkers(num_talkers)
        chunks, rate, frames = self._file_chunks(path, READ_SECONDS)
        notes = [note] if (note := format_warning(path)) else []
        return self._localize(chunks, rate, spacing, str(path), count, on_window, frames, notes)

    def localize_chunks(self, chunks: Iterable[np.ndarray | torch.Tensor], sample_rate: int,
                        mic_spacing: float | None = None, on_window: Callable[[WindowResult], None] | None = None,
                        num_talkers: int | None = None, name: str = "stream") -> LocalizationResult:
        """chunks [2, n] (any n, numpy or torch) of one recording at `sample_rate`, e.g. a live stream -> its
        LocalizationResult once they end; `on_window` is called with each WindowResult as soon as its window is
        complete. LocalizeError naming `name` (and the chunk) for bad input."""
        rate, spacing = check_sample_rate(sample_rate), self.check_spacing(mic_spacing)
        return self._localize(chunks, rate, spacing, name, self.check_num_talkers(num_talkers), on_window)

    def stream(self, audio: str | os.PathLike | Iterable[np.ndarray | torch.Tensor], sample_rate: int | None = None,
               mic_spacing: float | None = None, read_seconds: float = READ_SECONDS,
               name: str = "stream") -> Iterator[WindowResult]:
        """A stereo file (no sample_rate), or any iterable of chunks [2, n] (numpy or torch, any sizes, e.g. from a
        microphone) at `sample_rate` -> the recording's WindowResults, each as soon as its window is complete (a
        file is read `read_seconds` at a time). Memory stays that of a chunk, a window and a batch however long the
        stream; a window without usable signal comes back `silent` (no talkers), not run through the model.
        localize_file's and localize_chunks' results aggregate exactly these windows (aggregate())."""
        spacing = self.check_spacing(mic_spacing)
        if isinstance(audio, (str, os.PathLike)):
            if sample_rate is not None:
                raise LocalizeError(f"{audio}: a file carries its own sample rate; stream(path) takes no sample_rate")
            chunks, rate, frames = self._file_chunks(audio, read_seconds)
            return self._windows(chunks, rate, spacing, str(audio), frames)[0]
        if sample_rate is None:
            raise LocalizeError(f"{name}: sample_rate is required with chunks: stream(chunks, sample_rate)")
        if isinstance(audio, (np.ndarray, torch.Tensor)) or not isinstance(audio, Iterable):
            raise LocalizeError(f"{name}: expected an iterable of chunks [2, n] (a list, a generator), not "
                                f"{type(audio).__name__}; a whole wave goes to localizer(wave, sample_rate)")
        return self._windows(audio, check_sample_rate(sample_rate), spacing, name, None)[0]

    def window_count(self, path: str | Path) -> int:
        """How many windows a file's stream gives (from its header); LocalizeError as localize_file's."""
        frames, sr = open_stereo(path)
        return len(window_starts(resampled_length(frames, sr, self.spec.sr), self.spec.clip_samples))

    def localize_files(self, paths: Iterable[str | Path], mic_spacing: float | None = None,
                       return_errors: bool = False, num_talkers: int | None = None
                       ) -> Iterator[tuple[Path, LocalizationResult | LocalizeError]]:
        """files -> (path, result) in order, lazily, one file at a time.

        A file that cannot be read raises its LocalizeError, or with `return_errors` is yielded as
        (path, LocalizeError) and the others go on (as asyncio.gather's return_exceptions).
        """
        for path in (Path(p) for p in paths):
            try:
                yield path, self.localize_file(path, mic_spacing, num_talkers=num_talkers)
            except LocalizeError as err:
                if not return_errors:
                    raise
                yield path, err

    def aggregate(self, windows: list[WindowResult], duration_s: float, sample_rate_in: int,
                  mic_spacing: float | None = None, num_talkers: int | None = None) -> LocalizationResult:
        """A recording's WindowResults (e.g. collected from stream()) -> its LocalizationResult."""
        spacing, count = self.check_spacing(mic_spacing), self.check_num_talkers(num_talkers)
        rate = check_sample_rate(sample_rate_in, "sample_rate_in")
        return self.decoder.result(windows, round(duration_s * rate), rate, spacing, count)

    @torch.no_grad()
    def clip_angles(self, clips: torch.Tensor, mic_spacing: float | None = None) -> torch.Tensor:
        """clips [B, 2, clip_samples] at the model's rate (one training-length clip each) -> angles_deg [B, slots],
        every slot sorted (existence aside): one window per clip, as training's held-out evaluation scores them."""
        spacing = torch.tensor(self.check_spacing(mic_spacing), device=self.device)
        outputs = self.network(clips.to(self.device), spacing)
        self.decoder.check_outputs(outputs, "clips")
        return decode_posteriors(outputs[0])[1].cpu()

    # -- the one path every input takes ---------------------------------------------------------------------

    def _wave_chunks(self, wave: torch.Tensor) -> Iterator[torch.Tensor]:
        return array_chunks(wave, max(1, wave.shape[-1]))  # already in memory: one chunk

    def _file_chunks(self, path: str | os.PathLike, read_seconds: float
                     ) -> tuple[Iterator[torch.Tensor], int, int]:
        """A file -> (its chunks, read as needed, its sample rate, its frames per the header)."""
        try:
            state = FileState.of(path)  # before the header: what every read must find
        except OSError:
            state = None  # open_stereo names what is wrong with the path
        frames, rate = open_stereo(path)
        return file_chunks(path, max(1, round(read_seconds * rate)), state), rate, frames

    def _windows(self, chunks: Iterable[Any], rate: int, spacing: float, name: str, frames: int | None
                 ) -> tuple[Iterator[WindowResult], StreamTally]:
        """chunks at `rate` -> (their WindowResults as a generator whose end runs the tally's final checks, the
        tally: samples read, warnings)."""
        tally = StreamTally(rate, spacing, name, frames, self.spec.model.sound_speed)

        def windows() -> Iterator[WindowResult]:
            yield from stream_windows(self.decoder, tally.chunks(chunks), rate, spacing, name)
            tally.finish()
        return windows(), tally

    def _localize(self, chunks: Iterable[Any], rate: int, spacing: float, name: str, num_talkers: int | None,
                  on_window: Callable[[WindowResult], None] | None = None, frames: int | None = None,
                  notes: list[str] | None = None) -> LocalizationResult:
        """chunks of one recording -> its LocalizationResult, each window passed to `on_window` as it comes."""
        stream, tally = self._windows(chunks, rate, spacing, name, frames)
        tally.notes += notes or []
        windows = []
        for window in stream:
            if on_window is not None:
                on_window(window)
            windows.append(window)
        return self.decoder.result(windows, tally.samples, rate, spacing, num_talkers, tally.warnings())
