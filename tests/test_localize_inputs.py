"""`localize` on input with nothing to localize (issue 20): one line, exit 2, nothing on stdout."""
import numpy as np
import pytest
import soundfile as sf

from ssl_model.localize import main


def near_silent(kind: str) -> np.ndarray:
    """-> [T, 2] float32, 2 s at 16 kHz, with no signal a microphone could have picked up."""
    rng = np.random.default_rng(0)
    if kind == "noise_1e-30":
        return (rng.standard_normal((32000, 2)) * 1e-30).astype(np.float32)
    return np.full((32000, 2), 0.25, np.float32)  # DC only


@pytest.mark.parametrize("kind", ["noise_1e-30", "dc"])
def test_near_silent_input_is_nothing_to_localize(kind, tmp_path, capsys):
    path = tmp_path / f"{kind}.wav"
    sf.write(path, near_silent(kind), 16000, subtype="FLOAT")
    code = main([str(path), "--model", "two-talker"])  # a shipped model
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and out == ""
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: silent") and "nothing to localize" in lines[0]
