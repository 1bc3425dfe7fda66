"""The one stream every input goes through: chunks at the input's rate in, WindowResults out as soon as each window
is complete, in memory bounded by a chunk, a window and a batch.

    for window in stream_windows(decoder, tally.chunks(chunks), sample_rate, spacing, name): ...

A file (read in chunks), a wave in memory (cut into chunks) and a live stream (chunks as they arrive) are the same
to it. Each chunk is resampled to the model's rate as it comes (stream_audio.BlockResampler), the windows it
completes are cut (stream_audio.Windower), low-passed when the input's band ends below the model's, and decoded in
batches of at most WINDOWS_PER_CALL, without waiting for more input: a live window's line is out once its last
sample and the resampler's few milliseconds of look-ahead have arrived.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import torch

from ssl_model.decoder import WindowDecoder
from ssl_model.features import lowpass
from ssl_model.results import WindowResult
from ssl_model.stream_audio import BlockResampler, Windower

WINDOWS_PER_CALL = 16  # windows per forward pass at most (bounds memory for long recordings)
RESAMPLER_ROLLOFF = 0.99  # torchaudio.functional.resample's default: its passband ends at 0.99 of the lower Nyquist


def band_limit(sr_in: int, sr: int) -> torch.Tensor | None:
    """-> the cutoff [1] (Hz) that a recording made at sr_in is low-passed at once resampled to the model's sr: the
    resampler's passband edge (RESAMPLER_ROLLOFF of the input's Nyquist), or None when sr_in >= sr. Above it the
    upsampler leaves attenuated mirror images whose phase differences are mirrored too: a model reads them as
    talkers at other angles (an 8 kHz file of talkers at 50 and 125 degrees read 27 and 118 before)."""
    return torch.tensor([RESAMPLER_ROLLOFF * sr_in / 2]) if sr_in < sr else None


def stream_windows(decoder: WindowDecoder, chunks: Iterable[torch.Tensor], sample_rate: int, spacing: float,
                   name: str) -> Iterator[WindowResult]:
    """chunks float32 [2, n_i] at sample_rate (checked: inputs.StreamTally) -> the recording's WindowResults, each
    batch of windows decoded as soon as the chunk that completes it has arrived."""
    sr = decoder.spec.sr
    resampler, windower = BlockResampler(sample_rate, sr), Windower(decoder.spec.clip_samples)
    band = band_limit(sample_rate, sr)

    def decoded(ready: list[tuple[int, torch.Tensor, int]]) -> Iterator[WindowResult]:
        if band is not None:
            ready = [(start, lowpass(piece[None], band, sr)[0], length) for start, piece, length in ready]
        for first in range(0, len(ready), WINDOWS_PER_CALL):
            yield from decoder.window_results(ready[first:first + WINDOWS_PER_CALL], spacing, name)

    for chunk in chunks:
        yield from decoded([window for block in resampler.push(chunk) for window in windower.push(block)])
    yield from decoded([window for block in resampler.end() for window in windower.push(block)] + windower.end())
