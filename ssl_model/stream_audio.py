"""Recordings as streams: stereo chunks in, model-rate windows out, as soon as each is complete, in memory bounded
by the window and the chunk, whether the recording's length is known (a file) or not (a live stream).

Two push stages, each fed one piece at a time (so a live stream's windows come out as its samples arrive), and
their generator forms for a whole stream:

    resampler, windower = BlockResampler(sr_in, sr), Windower(window)
    for chunk in chunks:                                  # float32 [2, n] at sr_in, any n
        for block in resampler.push(chunk):               # float32 [2, m] at sr, as resample() of the whole gives
            for start, piece, length in windower.push(block): ...   # each window [2, window] once complete
    ... resampler.end(), windower.end()                   # the rest, and the last window aligned to the end

    resampled_blocks(chunks, sr_in, sr), sliding_windows(blocks, window)   # the same, as generators

The resampler gives the samples `shards.audio.resample` gives for the whole recording (to float rounding): the
stream is cut at multiples of the resampler's input period and each piece resampled with enough context on both
sides that torchaudio's windowed-sinc kernel never reaches its own zero padding. The windower gives the windows of
`window_starts(total, window)` without knowing `total` until the stream ends. `file_chunks` given the FileState
seen when the file's header was read raises FileChanged once the file on disk is another (replaced, grown,
rewritten or removed) while it is read, so a result never mixes two recordings.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

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


class BlockResampler:
    """chunks [2, n_i] at sr_in, pushed one at a time -> blocks [2, m_j] at sr_out whose concatenation is resample()
    of the whole recording (module docstring). Holds at most two pieces of `context_samples` input samples."""

    def __init__(self, sr_in: int, sr_out: int):
        self.same = sr_in == sr_out
        self.orig, self.new = resample_ratio(sr_in, sr_out) if not self.same else (1, 1)
        self.context = context_samples(self.orig, self.new) if not self.same else 0
        self.history = torch.zeros(2, 0)  # the last `context` input samples before `current`
        self.current: torch.Tensor | None = None  # whole periods whose output waits for the context after them
        self.pending: list[torch.Tensor] = []  # input not yet a multiple of `context`
        self.held = 0

    def push(self, chunk: torch.Tensor) -> list[torch.Tensor]:
        """The next chunk [2, n] -> the blocks [2, m] it completes (none while too little has arrived)."""
        if self.same:
            return [chunk]
        self.pending.append(chunk)
        self.held += chunk.shape[-1]
        if self.held < self.context:
            return []
        joined = torch.cat(self.pending, dim=-1)
        cut = self.held - self.held % self.context
        self.pending, self.held = [joined[:, cut:]], self.held - cut
        return self._next(joined[:, :cut])

    def end(self) -> list[torch.Tensor]:
        """The stream has ended -> its last blocks (the output of what is held, up to resample()'s last sample)."""
        if self.same:
            return []
        out = self._next(torch.cat(self.pending, dim=-1)) if self.held else []
        self.pending, self.held = [], 0
        if self.current is not None:
            out.append(core_block(self.history, self.current, self.current[:, :0], self.orig, self.new, last=True))
            self.current = None
        return out

    def _next(self, group: torch.Tensor) -> list[torch.Tensor]:
        """group [2, k * context] (or the stream's rest) -> the block of the previous group, now that the context
        after it is known."""
        out = []
        if self.current is not None:
            out.append(core_block(self.history, self.current, group[:, :self.context], self.orig, self.new))
            self.history = torch.cat((self.history, self.current), dim=-1)[:, -self.context:]
        self.current = group
        return out


def resampled_blocks(chunks: Iterable[torch.Tensor], sr_in: int, sr_out: int) -> Iterator[torch.Tensor]:
    """chunks [2, n_i] at sr_in -> consecutive blocks [2, m_j] at sr_out whose concatenation is resample() of the
    whole recording (BlockResampler, as a generator)."""
    resampler = BlockResampler(sr_in, sr_out)
    for chunk in chunks:
        yield from resampler.push(chunk)
    yield from resampler.end()


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


class Windower:
    """blocks [2, m_j] of a recording, pushed one at a time -> (start, window [2, window], length) at
    window_starts(total, window) as soon as each window's samples are in, the recording's length `total` known only
    at end(); `length` is the window's own samples (less than `window` only for a recording shorter than one window,
    zero-padded). Holds at most one window and the blocks since the last window."""

    def __init__(self, window: int):
        self.window, self.hop = window, max(1, window // 2)
        self.buffer, self.offset = torch.zeros(2, 0), 0  # buffer holds samples [offset, offset + its length)
        self.pending: list[torch.Tensor] = []  # blocks not yet joined to the buffer
        self.arrived = 0
        self.next_start = 0
        self.last: int | None = None  # the start of the last window given

    def push(self, block: torch.Tensor) -> list[tuple[int, torch.Tensor, int]]:
        """The next block [2, m] -> the windows it completes."""
        self.pending.append(block)
        self.arrived += block.shape[-1]
        if self.arrived < self.next_start + self.window:
            return []
        self._join()
        out = []
        while self.next_start + self.window <= self.arrived:
            at = self.next_start - self.offset
            out.append((self.next_start, self.buffer[:, at:at + self.window], self.window))
            self.last, self.next_start = self.next_start, self.next_start + self.hop
        keep = min(self.next_start, self.arrived - self.window)  # the next window, or the last one at the end
        self.buffer, self.offset = self.buffer[:, keep - self.offset:], keep
        return out

    def end(self) -> list[tuple[int, torch.Tensor, int]]:
        """The stream has ended -> its last window: aligned to the end, or the whole recording zero-padded when it is
        shorter than one window; none when window_starts has no more (or the stream was empty)."""
        self._join()
        total = self.arrived
        if total == 0 or self.last == total - self.window:
            return []
        if total < self.window:
            piece = torch.nn.functional.pad(self.buffer, (0, self.window - total))
            return [(0, piece, total)]
        at = total - self.window - self.offset
        self.last = total - self.window
        return [(total - self.window, self.buffer[:, at:at + self.window], self.window)]

    def _join(self) -> None:
        if self.pending:
            self.buffer = torch.cat((self.buffer, *self.pending), dim=-1)
            self.pending = []


def sliding_windows(blocks: Iterable[torch.Tensor], window: int) -> Iterator[tuple[int, torch.Tensor, int]]:
    """blocks [2, m_j] of a recording -> (start, window [2, window], length) at window_starts(total, window), each
    as soon as its samples are in (Windower, as a generator)."""
    windower = Windower(window)
    for block in blocks:
        yield from windower.push(block)
    yield from windower.end()
