"""ssl_model.input_checks: each warning fires on its damaged input and stays silent on the clean sample, whatever
the chunking; format_warning names Vorbis and low-bitrate Opus, never WAV or FLAC."""
from pathlib import Path

import numpy as np
import pytest
import soundfile

from ssl_model.input_checks import InputChecks, format_warning

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sample" / "two_talkers.wav"
SR = 16000


@pytest.fixture(scope="module")
def sample() -> np.ndarray:
    wave, rate = soundfile.read(str(SAMPLE), dtype="float32", always_2d=True)
    assert rate == SR
    return np.ascontiguousarray(wave.T)  # [2, n]


def checked(wave: np.ndarray, spacing: float = 0.10, chunk: int | None = None, name: str = "rec.wav") -> list[str]:
    """wave [2, n] fed whole or in chunks of `chunk` samples -> the warnings."""
    checks = InputChecks(SR, spacing, name)
    step = chunk or wave.shape[1]
    for start in range(0, wave.shape[1], step):
        checks.update(wave[:, start:start + step])
    return checks.warnings()


def delayed_noise(delay: float, seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """White noise from one direction: mic 1 hears mic 0's noise `delay` samples later (fractional, circular)."""
    noise = np.random.default_rng(seed).standard_normal(int(seconds * SR)) * 0.1
    freqs = np.fft.rfftfreq(len(noise))
    later = np.fft.irfft(np.fft.rfft(noise) * np.exp(-2j * np.pi * freqs * delay), n=len(noise))
    return np.stack((noise, later))


def spliced(sample: np.ndarray, seconds: float = 8.0, seed: int = 1) -> np.ndarray:
    """Pieces of 0.3-0.6 s of the sample from random places, butted together: a hard splice every ~0.45 s."""
    rng = np.random.default_rng(seed)
    pieces, total = [], 0
    while total < seconds * SR:
        length = int(rng.integers(int(0.3 * SR), int(0.6 * SR)))
        start = int(rng.integers(0, sample.shape[1] - length))
        pieces.append(sample[:, start:start + length])
        total += length
    return np.concatenate(pieces, axis=1)


def test_the_clean_sample_gives_no_warning(sample):
    assert checked(sample) == []


def test_clipping_is_named_with_its_share(sample):
    clipped = np.clip(sample * 10.0, -1.0, 1.0)  # 7% of the samples, as in the recording of issue 31
    share = np.max(np.mean(np.abs(clipped) >= 1.0, axis=1)) * 100
    lines = checked(clipped, name="hot.wav")
    assert len(lines) == 1 and "hot.wav" in lines[0] and "clipped" in lines[0] and f"{share:.1f}%" in lines[0]


def test_clipped_then_scaled_down_is_a_plateau(sample):
    lines = checked(np.clip(sample * 10.0, -1.0, 1.0) * 0.3, name="quiet.wav")
    assert len(lines) == 1 and "clipped" in lines[0]


def test_a_few_clipped_peaks_are_not_named(sample):
    peak = np.max(np.abs(sample))
    level = np.sort(np.abs(sample).ravel())[-int(0.001 * sample.size)]  # about 0.1% of samples above it
    assert checked(np.clip(sample / level, -1.0, 1.0)) == [] and peak > level


def test_the_sample_at_a_too_small_spacing_is_named(sample):
    lines = checked(sample, spacing=0.06, name="two_talkers.wav")
    assert len(lines) == 1 and "two_talkers.wav" in lines[0] and "0.06 m" in lines[0]
    assert checked(sample, spacing=0.10) == [] and checked(sample, spacing=0.16) == []


def test_impossible_delay_of_a_noise_source():
    wave = delayed_noise(4.0)
    lines = checked(wave, spacing=0.0425)  # allows 2.0 samples
    assert len(lines) == 1 and "0.0425 m" in lines[0]
    needed = float(lines[0].split("at least ")[1].split(" m")[0])
    assert 4.0 / SR * 340.0 <= needed <= 4.5 / SR * 340.0


def test_a_source_at_endfire_is_possible():
    spacing = 0.10
    limit = spacing / 340.0 * SR
    assert checked(delayed_noise(limit), spacing=spacing) == []
    assert checked(delayed_noise(-limit, seed=3), spacing=spacing) == []


def test_silence_mono_copy_and_white_noise_give_no_warning(sample):
    assert checked(np.zeros((2, 2 * SR), dtype=np.float32)) == []
    assert checked(np.stack((sample[0], sample[0]))) == []
    assert checked(np.random.default_rng(2).standard_normal((2, 2 * SR)) * 0.1) == []
    assert checked(delayed_noise(0.0)) == []  # identical white noise: delay 0


def test_hard_splices_are_named(sample):
    lines = checked(spliced(sample), name="cut.wav")
    assert len(lines) == 1 and "cut.wav" in lines[0] and "splices" in lines[0]


@pytest.mark.parametrize("chunk", [1000, 4097, 1 << 14])
def test_the_warnings_do_not_depend_on_the_chunking(sample, chunk):
    damaged = np.concatenate((np.clip(spliced(sample, seconds=4.0) * 10.0, -1.0, 1.0), delayed_noise(4.0)), axis=1)
    whole = checked(damaged, spacing=0.0425)
    assert len(whole) == 3  # clipping, impossible delays, splices
    assert checked(damaged, spacing=0.0425, chunk=chunk) == whole


def test_irregular_chunks_and_bounded_memory(sample):
    rng = np.random.default_rng(4)
    wave = np.tile(sample, (1, 4))
    whole = InputChecks(SR, 0.06, "rec.wav")
    whole.update(wave)
    pieces = InputChecks(SR, 0.06, "rec.wav")
    start, held = 0, 0
    while start < wave.shape[1]:
        size = int(rng.integers(1, 3000))
        pieces.update(wave[:, start:start + size])
        start += size
        held = max(held, pieces.pending.shape[1], pieces.click_pending.shape[1])
    assert pieces.warnings() == whole.warnings()
    assert (pieces.clear_frames, pieces.impossible_frames, pieces.clicks) == \
        (whole.clear_frames, whole.impossible_frames, whole.clicks)
    assert held < pieces.frame + 3000


def test_a_chunk_that_is_not_stereo_is_refused():
    with pytest.raises(ValueError, match="rec.wav"):
        InputChecks(SR, 0.1, "rec.wav").update(np.zeros((1, 100)))


def test_format_warning_names_vorbis_and_low_bitrate_opus(sample, tmp_path):
    wave = sample.T
    for name, kwargs in (("a.wav", {}), ("a.flac", {})):
        soundfile.write(str(tmp_path / name), wave, SR, **kwargs)
        assert format_warning(tmp_path / name) is None
    vorbis = tmp_path / "a.ogg"
    soundfile.write(str(vorbis), wave, SR, format="OGG", subtype="VORBIS")
    line = format_warning(vorbis)
    assert line is not None and "a.ogg" in line and "Vorbis" in line and "\n" not in line
    low, high = tmp_path / "low.opus", tmp_path / "high.opus"
    soundfile.write(str(low), wave, SR, format="OGG", subtype="OPUS", compression_level=1.0)  # ~15 kb/s
    soundfile.write(str(high), wave, SR, format="OGG", subtype="OPUS", compression_level=0.5)  # ~270 kb/s
    assert "Opus" in (format_warning(low) or "") and format_warning(high) is None
