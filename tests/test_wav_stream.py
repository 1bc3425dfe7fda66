"""The WAV stream reader: what a recorder writes to a pipe (an unknown data length, bytes in odd pieces) decodes to
the samples soundfile reads from the same file; anything else is one WavError line."""
import io
import struct

import numpy as np
import pytest
import soundfile as sf

from ssl_model.wav_stream import WavError, read_wav_header, wav_chunks

SR = 16000


class Trickle(io.RawIOBase):
    """A pipe: each read returns at most `piece` bytes, whatever was asked."""

    def __init__(self, data: bytes, piece: int):
        self.data, self.piece, self.at = data, piece, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.piece, len(self.data) - self.at)
        buffer[:n] = self.data[self.at:self.at + n]
        self.at += n
        return n


def wav_bytes(wave: np.ndarray, subtype: str) -> bytes:
    """wave [samples, 2] -> a WAV file's bytes (soundfile's writer)."""
    out = io.BytesIO()
    sf.write(out, wave, SR, subtype=subtype, format="WAV")
    return out.getvalue()


def as_piped(data: bytes, length: int) -> bytes:
    """A WAV's bytes with the RIFF and data lengths a recorder writing to a pipe leaves (it cannot seek back)."""
    at = data.index(b"data")
    return data[:4] + struct.pack("<I", length) + data[8:at + 4] + struct.pack("<I", length) + data[at + 8:]


def read_all(data: bytes, piece: int = 1 << 20, max_frames: int = 4096) -> tuple[int, list[np.ndarray]]:
    stream = io.BufferedReader(Trickle(data, piece))
    fmt = read_wav_header(stream)
    return fmt.sample_rate, list(wav_chunks(stream, fmt, max_frames))


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
@pytest.mark.parametrize("length", [None, 0xFFFFFFFF, 0x7FFFF000, 0])
def test_every_coding_reads_as_soundfile_reads_it(subtype, length):
    wave = np.random.default_rng(1).uniform(-0.9, 0.9, (3001, 2))
    data = wav_bytes(wave, subtype)
    expected = sf.read(io.BytesIO(data), dtype="float32")[0].T
    rate, chunks = read_all(data if length is None else as_piped(data, length), piece=777, max_frames=500)
    got = np.concatenate(chunks, axis=1)
    assert rate == SR and got.dtype == np.float32 and got.shape == expected.shape
    assert np.allclose(got, expected, atol=1e-7)
    assert all(1 <= c.shape[1] <= 500 for c in chunks)


def test_the_stream_stops_at_a_known_data_length_and_drops_a_partial_frame():
    wave = np.random.default_rng(2).uniform(-0.5, 0.5, (1000, 2))
    data = wav_bytes(wave, "PCM_16") + b"LIST\x04\x00\x00\x00abcd"  # a trailing chunk after the samples
    assert np.concatenate(read_all(data)[1], axis=1).shape == (2, 1000)
    cut = as_piped(wav_bytes(wave, "PCM_16"), 0xFFFFFFFF)[:-3]  # ended mid-frame (recorder killed)
    assert np.concatenate(read_all(cut)[1], axis=1).shape == (2, 999)


def test_chunks_come_out_as_the_bytes_arrive():
    """A chunk is yielded once its bytes are in, not when a fixed size has been read."""
    wave = np.zeros((SR, 2))
    stream = io.BufferedReader(Trickle(as_piped(wav_bytes(wave, "PCM_16"), 0xFFFFFFFF), 400))
    first = next(wav_chunks(stream, read_wav_header(stream)))
    assert first.shape[1] <= 400 // 4 + 1


@pytest.mark.parametrize("data, words", [
    (b"fLaC" + bytes(40), "not a WAV stream"),
    (b"RIFF\x00\x00\x00\x00WAVE", "ended inside its WAV header"),
    (b"RIFF\x00\x00\x00\x00WAVEdata\x00\x00\x00\x00", "no fmt chunk"),
    (b"RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + struct.pack("<HHIIHH", 0x55, 2, SR, 0, 4, 16), "format tag"),
])
def test_other_streams_are_one_line_errors(data, words):
    with pytest.raises(WavError, match=words) as err:
        read_all(data)
    assert "\n" not in str(err.value)
