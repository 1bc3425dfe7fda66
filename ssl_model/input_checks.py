"""Inputs that cannot be trusted, named: a file format that rewrites the phase difference between the mics, clipping,
delays that the given mic spacing cannot produce, and hard splices (clicks).

    note = format_warning("rec.ogg")                    # one line, or None: reads the header only
    checks = InputChecks(16000, mic_spacing=0.10, name="rec.wav")
    for chunk in chunks:                                # chunk [2, n] float, full scale 1.0, any n
        checks.update(chunk)
    for line in checks.warnings(): print(line)          # each one line naming the input

Feed the samples as the file holds them, before any resampling: a resampler smears a clipped plateau and a
single-sample jump. The checks keep counts and fixed-size histograms only, so memory is constant in the length of
the recording, and they frame the stream on absolute sample positions, so the warnings are the same whatever the
chunking. docs/input_formats.md has the measurements behind the thresholds below.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import soundfile

# Codings that rewrite the inter-channel phase (docs/input_formats.md, measured on the sample recording): Vorbis
# at every quality libsndfile writes (its square polar coupling pulls the pair's delay to 0: 19% of the frames at
# 130 kb/s, 80-100% at 75 kb/s and below, against 2% in the original), and Opus below OPUS_MIN_KBPS (intensity
# stereo: 23% of the frames at 25 kb/s, 100% at 15 kb/s; 5% or less from 40 kb/s up). MP3 (LAME's joint stereo,
# 41-139 kb/s) and the sample-wise codings (u-law, A-law, IMA/MS ADPCM) add noise but do not pull delays to 0.
VORBIS_REASON = "Ogg Vorbis couples the two channels (square polar mapping) and rewrites the phase difference"
OPUS_MIN_KBPS = 32.0
OPUS_REASON = "low-bitrate Opus ({kbps:.0f} kb/s, below {least:.0f}) codes the channels in intensity stereo and " \
              "rewrites the phase difference"

CLIP_HAIR = 2.0 ** -10  # a sample within this of full scale (1.0) counts as clipped: 32 LSB of a 16-bit file
PLATEAU_FLOOR = 2.0 ** -7  # a recording's own extreme counts as a clipped plateau only above -42 dBFS
CLIP_SHARE = 0.005  # warn when more than 0.5% of one channel's samples are clipped (docs/input_formats.md)

FRAME_S = 0.064  # GCC-PHAT frames of 64 ms (a power of two in samples), half-overlapping
UPSAMPLE = 4  # the cross-correlation is evaluated on a grid of 1/4 sample before parabolic interpolation
SIGNAL_FLOOR = 1e-8  # a frame holds signal when its mean square over both mics is above -80 dBFS
BIN_FLOOR = 1e-6  # GCC-PHAT uses the bins whose cross-power is above -60 dB of the frame's strongest bin
CLEAR_PEAK = 0.3  # a frame's delay counts when its GCC-PHAT peak (1 = one coherent plane wave) is above this
DELAY_MARGIN_SAMPLES = 0.1  # a delay is impossible beyond limit * (1 + DELAY_MARGIN_SHARE) + DELAY_MARGIN_SAMPLES
DELAY_MARGIN_SHARE = 0.03
IMPOSSIBLE_SHARE = 0.1  # warn when more than 10% of the frames with a clear peak are impossible
MIN_CLEAR_FRAMES = 8  # ... and at least this many frames had a clear peak
DELAY_QUANTILE = 0.9  # the delay the recording reaches: this quantile of the clear frames' |delay|
HIST_STEP = 0.05  # |delay| histogram bins, in samples

CLICK_BLOCK_S = 0.032  # clicks are judged against the level of their 32 ms block
CLICK_ORDER = 12  # linear predictor order for the prediction residual
CLICK_RATIO = 12.0  # a residual sample this many robust deviations (1.4826 x median) out, on both mics at once
CLICK_FLOOR = 0.01  # ... and at least this large (-40 dBFS): no clicks in digital near-silence
CLICK_RATE = 0.2  # warn at more than one click per 5 s
MIN_CLICKS = 3  # ... and at least this many


def format_warning(path: str | Path) -> str | None:
    """A file's path -> one line (a str) when its coding can rewrite the phase difference between its channels, else
    None. Reads the header only (soundfile.info; for Opus also the file's size, for its average bitrate)."""
    info = soundfile.info(str(path))
    if info.subtype == "VORBIS":
        reason = VORBIS_REASON
    elif info.subtype == "OPUS" and info.frames > 0:
        kbps = os.path.getsize(path) * 8 / (info.frames / info.samplerate) / 1000  # the average, container included
        if kbps >= OPUS_MIN_KBPS:
            return None
        reason = OPUS_REASON.format(kbps=kbps, least=OPUS_MIN_KBPS)
    else:
        return None
    return (f"{path}: {reason}; directions found in it cannot be trusted (a phantom talker near 90 degrees is "
            f"typical): use WAV or FLAC (docs/input_formats.md)")


def frame_length(sample_rate: int) -> int:
    """Samples in one GCC-PHAT frame: the power of two nearest FRAME_S seconds (a scalar)."""
    return 2 ** max(4, round(math.log2(FRAME_S * sample_rate)))


def gcc_phat_delays(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """frames [F, 2, N] -> (delay [F] in samples, mic 1 relative to mic 0; peak [F], the PHAT-weighted
    cross-correlation's maximum, 1 for one coherent plane wave, ~0 for independent noise). Frames without a usable
    bin get delay 0 and peak 0."""
    count, _, size = frames.shape
    window = np.hanning(size + 1)[:size]  # periodic Hann
    spectra = np.fft.rfft(frames * window, axis=-1)  # [F, 2, K]
    cross = spectra[:, 1] * np.conj(spectra[:, 0])  # [F, K]
    power = np.abs(cross)
    strongest = power.max(axis=-1, keepdims=True)
    used = (power > BIN_FLOOR * strongest) & (power > 0)
    used[:, 0] = False  # DC carries no delay
    weighted = np.where(used, cross / np.where(used, power, 1.0), 0.0)
    grid = UPSAMPLE * size
    corr = np.fft.irfft(weighted, n=grid, axis=-1)  # [F, grid]: lag m / UPSAMPLE samples, circular
    peak_at = np.argmax(corr, axis=-1)
    rows = np.arange(count)
    left, centre, right = (corr[rows, (peak_at + shift) % grid] for shift in (-1, 0, 1))
    # parabolic interpolation through the peak and its neighbours: offset = (l - r) / (2 (l - 2c + r))
    curvature = left - 2.0 * centre + right
    offset = np.where(curvature < 0, 0.5 * (left - right) / np.where(curvature < 0, curvature, -1.0), 0.0)
    lag = peak_at + offset
    lag = np.where(lag > grid / 2, lag - grid, lag)
    n_used = used.sum(axis=-1)
    peak = np.where(n_used > 0, centre * grid / (2.0 * np.maximum(n_used, 1)), 0.0)
    return np.where(n_used > 0, lag / UPSAMPLE, 0.0), peak


def clipped_count(extreme: float, at_extreme: int, near_full_scale: int) -> int:
    """One sign of one channel: its extreme value, how many samples equal it and how many lie within CLIP_HAIR of
    full scale -> the samples that count as clipped (a scalar): those near full scale, or a plateau at the
    recording's own extreme (a recording clipped, then scaled down)."""
    plateau = at_extreme if extreme >= PLATEAU_FLOOR else 0
    return max(near_full_scale, plateau)


def click_flags(block: np.ndarray, before: np.ndarray) -> np.ndarray:
    """One channel's block [N] and the CLICK_ORDER samples before it [CLICK_ORDER] -> [N] bool: the samples whose
    linear-prediction residual is a click (above CLICK_RATIO robust deviations of the block's residual and
    CLICK_FLOOR)."""
    signal = np.concatenate((before, block))
    # autocorrelation method (Yule-Walker) with a little diagonal loading for conditioning
    auto = np.array([signal[: len(signal) - k] @ signal[k:] for k in range(CLICK_ORDER + 1)])
    if auto[0] <= 0:
        return np.zeros(len(block), dtype=bool)
    toeplitz = auto[np.abs(np.subtract.outer(np.arange(CLICK_ORDER), np.arange(CLICK_ORDER)))]
    toeplitz = toeplitz + np.eye(CLICK_ORDER) * auto[0] * 1e-6
    coeffs = np.linalg.solve(toeplitz, auto[1:])
    predicted = np.convolve(signal, np.concatenate(([0.0], coeffs)))[CLICK_ORDER: CLICK_ORDER + len(block)]
    size = np.abs(block - predicted)
    scale = 1.4826 * float(np.median(size))  # the residual's robust standard deviation: one click cannot raise it
    return (size > CLICK_RATIO * scale) & (size > CLICK_FLOOR)


class InputChecks:
    """Streamed checks of one stereo recording: update(chunk [2, n]) with consecutive chunks, then warnings().

    Memory is constant in the recording's length: per-channel counters, one GCC-PHAT frame of overlap, one click
    block and a fixed |delay| histogram."""

    def __init__(self, sample_rate: int, mic_spacing: float, name: str, sound_speed: float = 340.0) -> None:
        if sample_rate <= 0 or mic_spacing <= 0 or sound_speed <= 0:
            raise ValueError(f"{name}: sample rate, mic spacing and sound speed must be positive "
                             f"({sample_rate}, {mic_spacing}, {sound_speed})")
        self.sample_rate, self.mic_spacing, self.name, self.sound_speed = sample_rate, mic_spacing, name, sound_speed
        self.limit = mic_spacing / sound_speed * sample_rate  # the largest possible |delay|, in samples
        self.frame = frame_length(sample_rate)
        self.hop = self.frame // 2
        self.samples = 0
        # clipping: per channel (rows) and sign (columns: +, -) the extreme, its count and the near-full-scale count
        self.extreme = np.zeros((2, 2))
        self.at_extreme = np.zeros((2, 2), dtype=np.int64)
        self.near_full = np.zeros((2, 2), dtype=np.int64)
        # delays: the samples not yet in a full frame (they start at a multiple of hop) and the clear frames' |delay|
        self.pending = np.zeros((2, 0))
        self.clear_frames = 0
        self.impossible_frames = 0
        self.histogram = np.zeros(int(self.frame / 2 / HIST_STEP) + 2, dtype=np.int64)
        # clicks: the samples not yet in a full block, the CLICK_ORDER samples before them, and the count
        self.block = max(CLICK_ORDER * 4, round(CLICK_BLOCK_S * sample_rate))
        self.click_pending = np.zeros((2, 0))
        self.click_before = np.zeros((2, CLICK_ORDER))
        self.clicks = 0

    def update(self, chunk: np.ndarray) -> None:
        """Add the next chunk [2, n] (float, full scale 1.0) of the recording."""
        chunk = np.asarray(chunk, dtype=np.float64)
        if chunk.ndim != 2 or chunk.shape[0] != 2:
            raise ValueError(f"{self.name}: a chunk must be [2, n], got {list(chunk.shape)}")
        if chunk.shape[1] == 0:
            return
        self.samples += chunk.shape[1]
        self._update_clipping(chunk)
        self._update_delays(chunk)
        self._update_clicks(chunk)

    def _update_clipping(self, chunk: np.ndarray) -> None:
        for sign, signed in enumerate((chunk, -chunk)):
            top = signed.max(axis=1)
            for channel in range(2):
                if top[channel] > self.extreme[channel, sign]:
                    self.extreme[channel, sign] = top[channel]
                    self.at_extreme[channel, sign] = 0
                if top[channel] == self.extreme[channel, sign] and top[channel] > 0:
                    self.at_extreme[channel, sign] += int(np.count_nonzero(signed[channel] == top[channel]))
            self.near_full[:, sign] += np.count_nonzero(signed >= 1.0 - CLIP_HAIR, axis=1)

    def _update_delays(self, chunk: np.ndarray) -> None:
        self.pending = np.concatenate((self.pending, chunk), axis=1)
        count = (self.pending.shape[1] - self.frame) // self.hop + 1
        if count <= 0:
            return
        starts = np.arange(count) * self.hop
        frames = np.stack([self.pending[:, s:s + self.frame] for s in starts])  # [F, 2, N]
        self.pending = self.pending[:, count * self.hop:]
        loud = np.mean(frames ** 2, axis=(1, 2)) > SIGNAL_FLOOR
        if not loud.any():
            return
        delay, peak = gcc_phat_delays(frames[loud])
        size = np.abs(delay[peak > CLEAR_PEAK])
        self.clear_frames += len(size)
        self.impossible_frames += int(np.count_nonzero(size > self.bound()))
        bins = np.minimum((size / HIST_STEP).astype(np.int64), len(self.histogram) - 1)
        np.add.at(self.histogram, bins, 1)

    def _update_clicks(self, chunk: np.ndarray) -> None:
        self.click_pending = np.concatenate((self.click_pending, chunk), axis=1)
        while self.click_pending.shape[1] >= self.block:
            block = self.click_pending[:, :self.block]
            flags = [click_flags(block[c], self.click_before[c]) for c in range(2)]
            # a splice jumps on both mics within a sample of each other
            near = flags[1] | np.roll(flags[1], 1) | np.roll(flags[1], -1)
            hits = flags[0] & near
            # one click is one event: count rising edges
            self.clicks += int(np.count_nonzero(hits & ~np.roll(hits, 1)))
            self.click_before = block[:, -CLICK_ORDER:]
            self.click_pending = self.click_pending[:, self.block:]

    def bound(self) -> float:
        """The largest |delay| in samples that counts as possible: the physical limit plus the margin."""
        return self.limit * (1.0 + DELAY_MARGIN_SHARE) + DELAY_MARGIN_SAMPLES

    def clipped_share(self) -> float:
        """The largest share of one channel's samples that are clipped (a scalar in [0, 1])."""
        if self.samples == 0:
            return 0.0
        per_channel = [sum(clipped_count(self.extreme[c, s], int(self.at_extreme[c, s]), int(self.near_full[c, s]))
                           for s in range(2)) for c in range(2)]
        return max(per_channel) / self.samples

    def delay_reach(self) -> float:
        """The DELAY_QUANTILE quantile of the clear frames' |delay| in samples (the upper edge of its histogram
        bin), 0 without clear frames."""
        if self.clear_frames == 0:
            return 0.0
        index = int(np.searchsorted(np.cumsum(self.histogram), DELAY_QUANTILE * self.clear_frames))
        return (index + 1) * HIST_STEP

    def warnings(self) -> list[str]:
        """The one-line warnings about the recording seen so far (a list of str, empty when none)."""
        lines = []
        share = self.clipped_share()
        if share > CLIP_SHARE:
            lines.append(f"{self.name}: {100 * share:.1f}% of the samples of one mic are clipped (at full scale or "
                         f"at a plateau of the recording's own maximum): clipping can add phantom talkers")
        if self.clear_frames >= MIN_CLEAR_FRAMES and self.impossible_frames > IMPOSSIBLE_SHARE * self.clear_frames:
            reach = self.delay_reach()
            needed = reach / self.sample_rate * self.sound_speed
            lines.append(f"{self.name}: {100 * self.impossible_frames / self.clear_frames:.0f}% of the frames show "
                         f"delays beyond the {self.limit:.2f} samples a {self.mic_spacing:g} m pair allows (they "
                         f"reach {reach:.2f} samples): the mics are at least {needed:.3f} m apart, not "
                         f"{self.mic_spacing:g} m; check --mic-spacing")
        seconds = self.samples / self.sample_rate
        if self.clicks >= MIN_CLICKS and self.clicks > CLICK_RATE * seconds:
            lines.append(f"{self.name}: {self.clicks} hard splices or clicks (a jump on both mics at once) in "
                         f"{seconds:.1f} s: each can add a phantom talker near 90 degrees")
        return lines
