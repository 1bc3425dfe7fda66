"""shards.audio: resampling at any rate in bounded memory, and input with nothing to localize."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shards.audio import KERNEL_BUDGET, is_near_silent, kernel_elements, resample_ratio

ROOT = Path(__file__).parents[1]

# Decodes a 2 s stereo 1 kHz sine at a prime rate under an address-space cap of 1.5 GiB above what the
# interpreter holds after importing torch; the exact windowed-sinc kernel for 1000003 -> 16000 is 64 GB.
CAPPED = """
import io, json, resource, sys
import numpy as np, soundfile
from shards.audio import decode_audio
held = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (held + (3 << 29), resource.RLIM_INFINITY))
for rate in map(int, sys.argv[1:]):
    t = np.arange(2 * rate) / rate
    buffer = io.BytesIO()
    stereo = np.stack([np.sin(2 * np.pi * 1000 * t)] * 2, axis=1) * 0.5
    soundfile.write(buffer, stereo, rate, format="WAV", subtype="FLOAT")
    del t, stereo
    wave, sr = decode_audio(buffer.getvalue(), "capped.wav", sr=16000, mono=False)
    spectrum = np.abs(np.fft.rfft(wave[0] * np.hanning(wave.shape[1])))
    print(json.dumps({"sr": sr, "shape": list(wave.shape), "peak_hz": float(np.argmax(spectrum) * sr / wave.shape[1])}))
"""


def test_prime_rates_resample_under_a_memory_cap():
    rates = ["44101", "96001", "1000003"]
    done = subprocess.run([sys.executable, "-c", CAPPED, *rates], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(results) == len(rates)
    for result in results:
        assert result["sr"] == 16000 and result["shape"][0] == 2
        assert abs(result["shape"][1] - 32000) <= 1  # 2 s, to within the ratio's ppm
        assert abs(result["peak_hz"] - 1000.0) <= 0.5  # one FFT bin: the pitch is kept


@pytest.mark.parametrize("sr_in", [7, 8000, 11025, 22050, 32000, 44100, 44101, 48000, 88200, 96000, 96001, 176400,
                                   192000, 192001, 1000003, 4000000007, 16001, 44099])
@pytest.mark.parametrize("sr_out", [16000, 44100, 8000])
def test_ratio_fits_the_budget_and_is_exact_where_the_rates_share_a_factor(sr_in, sr_out):
    orig, new = resample_ratio(sr_in, sr_out)
    assert orig >= 1 and new >= 1
    assert kernel_elements(orig, new) <= KERNEL_BUDGET or new == 1  # integer ratios: as long as the input
    error = abs(new / orig - sr_out / sr_in) / (sr_out / sr_in)
    if np.gcd(sr_in, sr_out) >= 100 or sr_in == 7:
        assert error == 0 and orig * sr_out == new * sr_in
    assert error <= 1.001 / min(sr_in, sr_out), (orig, new, error)  # at most one sample per second
    if sr_in in (44101, 96001, 1000003) and sr_out == 16000:
        assert error <= 1.1e-5, (orig, new, error)  # 10 ppm at worst (96001 -> 16000 as 6 -> 1)


def test_near_silent_input_is_told_apart_from_quiet_speech():
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((2, 16000))
    assert is_near_silent(np.zeros((2, 16000)))
    assert is_near_silent(noise * 1e-30)  # the case: two angles came out of this
    assert is_near_silent(np.full((2, 16000), 0.3))  # DC only
    assert is_near_silent(np.full((2, 16000), 0.3) + noise * 1e-9)  # DC plus numerical noise
    assert not is_near_silent(noise * 1e-4)  # -80 dBFS: a quiet room, still a signal
    assert not is_near_silent(np.stack([np.zeros(16000), noise[1] * 1e-3]))  # one live channel is enough
    assert is_near_silent(np.zeros((2, 0)))
