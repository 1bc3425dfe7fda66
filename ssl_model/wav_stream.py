"""A WAV stream read as it arrives (a pipe, standard input): its header parsed here, its samples in chunks.

    fmt = read_wav_header(sys.stdin.buffer)               # WavFormat: rate, channels, sample coding, data length
    for chunk in wav_chunks(sys.stdin.buffer, fmt): ...   # float32 [channels, n], full scale 1.0, n as it arrives

libsndfile wants to seek, and a recorder writing to a pipe (`arecord -t wav`, `sox ... -t wav -`) cannot go back
to fill in the data length, so it writes an unknown or maximal one (0, 0xFFFFFFFF, 0x7FFFF000): the data length is
read as an upper bound and the stream ends at end of file or at that length, whichever comes first. PCM (8-bit
unsigned, 16/24/32-bit signed), IEEE float (32/64-bit), WAVE_FORMAT_EXTENSIBLE of either and RF64 are read; every
other stream is a WavError in one line.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterator

import numpy as np

PCM, IEEE_FLOAT, EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
MAX_HEADER_CHUNK = 1 << 20  # bytes of a chunk before `data` (LIST, fact, ...) skipped at most
READ_BYTES = 1 << 14  # at most this many bytes per read: a chunk is what has arrived, not what was asked for


class WavError(ValueError):
    """A stream that is not a WAV this reader takes; the message is one line."""


@dataclass(frozen=True)
class WavFormat:
    """A WAV stream's coding: samples per second, channels, bytes per sample, integer or float samples, and the
    data length its header states (None: unknown, read to the end)."""
    sample_rate: int
    channels: int
    sample_bytes: int
    floating: bool
    data_bytes: int | None

    @property
    def frame_bytes(self) -> int:
        return self.channels * self.sample_bytes


def read_exactly(stream: BinaryIO, size: int, what: str) -> bytes:
    """stream -> its next `size` bytes; WavError naming `what` when it ends first."""
    data = b""
    while len(data) < size:
        more = stream.read(size - len(data))
        if not more:
            raise WavError(f"the stream ended inside its WAV header ({what})")
        data += more
    return data


def parse_fmt(body: bytes) -> tuple[int, int, int, bool]:
    """a `fmt ` chunk's bytes -> (sample rate, channels, bytes per sample, floating); WavError for a coding this
    reader does not take."""
    if len(body) < 16:
        raise WavError(f"its fmt chunk is {len(body)} bytes (at least 16)")
    tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == EXTENSIBLE:
        if len(body) < 26:
            raise WavError("an extensible fmt chunk without its sub-format")
        tag = struct.unpack("<H", body[24:26])[0]  # the sub-format GUID starts with the format tag
    if tag not in (PCM, IEEE_FLOAT):
        raise WavError(f"WAV format tag 0x{tag:04x}; only PCM (0x0001) and IEEE float (0x0003) are read")
    floating = tag == IEEE_FLOAT
    if (floating and bits not in (32, 64)) or (not floating and bits not in (8, 16, 24, 32)):
        raise WavError(f"{bits}-bit {'float' if floating else 'PCM'} samples are not read")
    if channels < 1 or rate < 1:
        raise WavError(f"{channels} channels at {rate} Hz in its fmt chunk")
    return rate, channels, bits // 8, floating


def read_wav_header(stream: BinaryIO) -> WavFormat:
    """A binary stream at its start -> its WavFormat, the stream left at the first sample; WavError otherwise."""
    riff, _, wave = struct.unpack("<4sI4s", read_exactly(stream, 12, "RIFF header"))
    if riff not in (b"RIFF", b"RF64") or wave != b"WAVE":
        raise WavError(f"not a WAV stream (it starts {riff!r}, not RIFF....WAVE): pipe WAV, e.g. `arecord -t wav` "
                       f"or `sox IN -t wav -`")
    coding = None
    while True:
        name, size = struct.unpack("<4sI", read_exactly(stream, 8, "chunk header"))
        if name == b"data":
            break
        if size > MAX_HEADER_CHUNK:
            raise WavError(f"a {name!r} chunk of {size:,} bytes before the samples")
        body = read_exactly(stream, size + size % 2, f"{name!r} chunk")  # chunks are padded to even lengths
        if name == b"fmt ":
            coding = parse_fmt(body[:size])
    if coding is None:
        raise WavError("no fmt chunk before its samples")
    rate, channels, sample_bytes, floating = coding
    known = riff == b"RIFF" and size not in (0, 0xFFFFFFFF)  # RF64 keeps the length in ds64; a pipe cannot fill it
    return WavFormat(rate, channels, sample_bytes, floating, size if known else None)


def decode_frames(data: bytes, fmt: WavFormat) -> np.ndarray:
    """whole frames of a WAV's data -> float32 [channels, frames], integers scaled to full scale 1.0."""
    if fmt.floating:
        samples = np.frombuffer(data, "<f4" if fmt.sample_bytes == 4 else "<f8").astype(np.float32)
    elif fmt.sample_bytes == 1:
        samples = (np.frombuffer(data, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif fmt.sample_bytes == 3:
        raw = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int32)
        value = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        samples = (np.where(value >= 1 << 23, value - (1 << 24), value) / float(1 << 23)).astype(np.float32)
    else:
        kind = "<i2" if fmt.sample_bytes == 2 else "<i4"
        samples = (np.frombuffer(data, kind) / float(1 << (8 * fmt.sample_bytes - 1))).astype(np.float32)
    return np.ascontiguousarray(samples.reshape(-1, fmt.channels).T)


def wav_chunks(stream: BinaryIO, fmt: WavFormat, max_frames: int = 4096,
               stop_on_interrupt: bool = False) -> Iterator[np.ndarray]:
    """A stream past its header -> float32 chunks [channels, n] (1 <= n <= max_frames) as the bytes arrive (a read
    returns what a pipe holds, not a fixed size), until end of file or the header's data length; a partial frame
    at the end is dropped. `stop_on_interrupt`: Ctrl-C while waiting for samples ends the stream (a live
    recording's end) instead of raising."""
    left = fmt.data_bytes
    pending = b""
    read = getattr(stream, "read1", stream.read)
    while left is None or left > 0:
        want = min(READ_BYTES, max_frames * fmt.frame_bytes)
        try:
            data = read(want if left is None else min(want, left))
        except KeyboardInterrupt:
            if not stop_on_interrupt:
                raise
            return
        if not data:
            return
        if left is not None:
            left -= len(data)
        pending += data
        whole = len(pending) - len(pending) % fmt.frame_bytes
        if whole:
            yield decode_frames(pending[:whole], fmt)
            pending = pending[whole:]
