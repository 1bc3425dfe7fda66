"""benchmarks/bench_one_source.py: its sources are what it says (one delay, white / pink / band-limited)."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_one_source as one  # noqa: E402
from ssl_model.baselines import gcc_phat  # noqa: E402


def band_power(x: np.ndarray, lo_hz: float, hi_hz: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    freq = np.fft.rfftfreq(len(x), 1.0 / one.SR)
    return float(spec[(freq >= lo_hz) & (freq < hi_hz)].mean())


@pytest.mark.parametrize("angle", [10.0, 75.0, 170.0])
def test_the_source_comes_from_its_angle_by_gcc_phat(angle):
    signal = one.source_signal("white", one.SR, np.random.default_rng(1))
    wave = torch.from_numpy(one.one_source(signal, angle, 0.1)).double()[None]
    found = gcc_phat(wave, one.SR, 0.1, num_sources=1)
    assert float(found[0, 0]) == pytest.approx(angle, abs=3.0)


def test_the_kinds_have_their_spectra_and_unit_level():
    rng = np.random.default_rng(0)
    white, pink, limited = (one.source_signal(kind, 4 * one.SR, rng) for kind in one.KINDS)
    for x in (white, pink, limited):
        assert np.sqrt(np.mean(x ** 2)) == pytest.approx(1.0, rel=1e-6)
    tilt_db = lambda x: 10 * np.log10(band_power(x, 250, 500) / band_power(x, 4000, 8000))  # noqa: E731
    assert abs(tilt_db(white)) < 1.0
    assert tilt_db(pink) == pytest.approx(10 * np.log10(16), abs=1.0)  # power 1/f over four octaves
    assert band_power(limited, 4100, 8000) < 1e-9 * band_power(limited, 250, 3900)
    with pytest.raises(ValueError, match="unknown source kind"):
        one.source_signal("brown", 100, rng)


def test_the_table_bolds_every_count_but_one_and_gives_the_worst_error_of_the_rest():
    rows = [{"spacing": 0.1, "kind": kind, "angle": angle, "count": count, "angles": found, "windows": windows}
            for kind in one.KINDS
            for angle, count, found, windows in ((10.0, 1, [14.0], [[14.0], [13.0]]),
                                                 (60.0, 2, [58.0, 168.0], [[58.0], [58.0, 168.0]]))]
    lines = one.table("m", rows, [10.0, 60.0])
    assert lines[4] == "| 10 cm | white | 1 | **2** | 75% | 4.0 |"
    assert len(lines) == 4 + len(one.KINDS)


def test_the_gcc_phat_row_names_one_source_at_its_angle_and_has_no_windows():
    signal = one.source_signal("white", one.SR, np.random.default_rng(2))
    found, windows = one.gcc_phat_method(one.one_source(signal, 40.0, 0.1), 0.1)
    assert len(found) == 1 and found[0] == pytest.approx(40.0, abs=2.0) and windows == []
