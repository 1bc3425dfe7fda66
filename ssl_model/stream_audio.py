"""Recordings as streams: stereo chunks in, model-rate windows out, in memory bounded by the window and the chunk.

Three generator stages, each a pure function of its input stream:

    chunks = file_chunks(path, frames, state)     # or array_chunks(wave, frames): float32 [2, n] at the file's rate
    blocks = resampled_blocks(chunks, sr_in, sr)  # float32 [2, m] at the model's rate, as resample() of the whole
    for start, window in sliding_windows(blocks, total, window): ...

`resampled_blocks` gives the samples `shards.audio.resample` gives for the whole recording (to float rounding): each
chunk is cut at a multiple of the resampler's input period and resampled with enough context on both sides that
torchaudio's windowed-sinc kernel never reaches the chunk's own zero padding. `file_chunks` given the FileState
seen when the file's header was read raises FileChanged once the file on disk is another (replaced, grown,
rewritten or removed) while it is read, so a result never mixes two recordings.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile
import torch

from shards.audio import resample, resample_ratio

LOWPASS_WIDTH = 6  # torchaudio.functional.resample's default lowpass_filter_width
ROLLOFF = 0.99  # ... and its default rolloff


def resampled_length(samples: int, sr_in: int, sr_out: int) -> int:
    """Samples of `samples` at sr_in once resampled to sr_out (what resample() returns)."""
    if sr_in == sr_out:
        return samples
    orig, new = resample_ratio(sr_in, sr_out)
    return math.ceil(new * samples / orig)


def context_samples(orig: int, new: int) -> int:
    """Input samples of context either side of a chunk (a multiple of orig) past the reach of the sinc kernel:
    torchaudio's kernel spans ceil(width * orig / (rolloff * min(orig, new))) input samples each way plus one period."""
    reach = math.ceil(LOWPASS_WIDTH * orig / (ROLLOFF * min(orig, new))) + orig
    return orig * (math.ceil(reach / orig) + 1)


def array_chunks(wave: torch.Tensor, frames: int) -> Iterator[torch.Tensor]:
    """wave [2, T] -> consecutive views [2, <= frames]."""
    for start in range(0, wave.shape[-1], frames):
        yield wave[:, start:start + frames]


class FileChanged(Exception):
    """The file at a path is no longer the one that was opened; the message says how (one line)."""


@dataclass(frozen=True)
class FileState:
    """What identifies a file's contents on disk: the file (device, inode), its size and modification time."""
    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str | Path) -> "FileState":
        st = os.stat(path)
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def check(self, path: str | Path) -> None:
        """FileChanged unless `path` still holds this file, unchanged."""
        try:
            now = FileState.of(path)
        except FileNotFoundError:
            raise FileChanged("removed while being read") from None
        if (now.device, now.inode) != (self.device, self.inode):
            raise FileChanged("replaced by another file while being read")
        if now.size != self.size:
            raise FileChanged(f"changed on disk while being read ({self.size:,} -> {now.size:,} bytes)")
        if now.mtime_ns != self.mtime_ns:
            raise FileChanged("changed on disk while being read (rewritten: its modification time changed)")


def file_chunks(path: str | Path, frames: int, state: FileState | None = None) -> Iterator[torch.Tensor]:
    """A stereo audio file -> consecutive float32 chunks [2, <= frames], read as they are needed; with `state`
    (taken before its header was read), FileChanged as soon as the file differs from it, checked before every
    read and at the end."""
    with soundfile.SoundFile(str(path)) as handle:
        while True:
            if state is not None:
                state.check(path)
            block = handle.read(frames, dtype="float32", always_2d=True)  # [n, 2]
            if block.shape[0] == 0:
                return
            yield torch.from_numpy(np.ascontiguousarray(block.T))


def regroup(chunks: Iterator[torch.Tensor], period: int) -> Iterator[torch.Tensor]:
    """chunks [2, n_i] -> chunks [2, k * period] (k >= 1), the last one holding the rest (shorter than period)."""
    pending: list[torch.Tensor] = []
    held = 0
    for chunk in chunks:
        pending.append(chunk)
        held += chunk.shape[-1]
        if held >= period:
            joined = torch.cat(pending, dim=-1)
            cut = held - held % period
            yield joined[:, :cut]
            pending, held = [joined[:, cut:]], held - cut
    if held:
        yield torch.cat(pending, dim=-1)


def resampled_blocks(chunks: Iterator[torch.Tensor], sr_in: int, sr_out: int) -> Iterator[torch.Tensor]:
    """chunks [2, n_i] at sr_in -> consecutive blocks [2, m_j] at sr_out whose concatenation is resample() of the
    whole recording (module docstring)."""
    if sr_in == sr_out:
        yield from chunks
        return
    orig, new = resample_ratio(sr_in, sr_out)
    context = context_samples(orig, new)
    history = torch.zeros(2, 0)  # the last `context` input samples before the current chunk
    current: torch.Tensor | None = None
    for chunk in regroup(chunks, context):  # every chunk but the last holds at least `context` samples
        if current is not None:  # current is a whole number of periods: its output is exact once `chunk` is known
            yield core_block(history, current, chunk[:, :context], orig, new)
            history = torch.cat((history, current), dim=-1)[:, -context:]
        current = chunk
    if current is not None:
        yield core_block(history, current, current[:, :0], orig, new, last=True)


def core_block(before: torch.Tensor, core: torch.Tensor, after: torch.Tensor, orig: int, new: int,
               last: bool = False) -> torch.Tensor:
    """The resampled samples of `core` [2, n] (n a multiple of orig unless last), given up to `context` samples
    of input before and after it -> [2, n * new / orig] (last: ceil, as resample() ends the recording)."""
    segment = torch.cat((before, core, after), dim=-1)
    out = resample(segment, orig, new)
    first = before.shape[-1] // orig * new
    count = math.ceil(core.shape[-1] * new / orig) if last else core.shape[-1] // orig * new
    return out[:, first:first + count]


def window_starts(num_samples: int, window: int) -> list[int]:
    """Starts of half-overlapping windows covering [0, num_samples); the last one ends at the end."""
    if num_samples <= window:
        return [0]
    hop = max(1, window // 2)
    starts = list(range(0, num_samples - window + 1, hop))
    if starts[-1] != num_samples - window:
        starts.append(num_samples - window)
    return starts


def sliding_windows(blocks: Iterator[torch.Tensor], total: int, window: int) -> Iterator[tuple[int, torch.Tensor]]:
    """blocks [2, m_j] of a recording of `total` samples -> (start, window [2, window]) at window_starts(total,
    window), zero-padded at the end when the recording is shorter than one window. Holds at most one window and
    one block."""
    starts = window_starts(total, window)
    buffer, offset = torch.zeros(2, 0), 0  # buffer holds samples [offset, offset + buffer length)
    blocks = iter(blocks)
    for index, start in enumerate(starts):
        end = min(start + window, total)
        while offset + buffer.shape[-1] < end:
            block = next(blocks, None)
            if block is None:
                raise ValueError(f"the stream ended at sample {offset + buffer.shape[-1]} of {total}")
            buffer = torch.cat((buffer, block), dim=-1)
        piece = buffer[:, start - offset:end - offset]
        if piece.shape[-1] < window:
            piece = torch.nn.functional.pad(piece, (0, window - piece.shape[-1]))
        yield start, piece
        following = starts[index + 1] if index + 1 < len(starts) else end
        buffer, offset = buffer[:, following - offset:], following  # what the next window still needs
