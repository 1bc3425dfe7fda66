"""Whether a recording's mics hold a usable signal: the level of each channel of a stream, and silent windows.

The floor (RMS re full scale 1.0, each channel's mean removed) under which a mic holds no usable signal is 1e-4 of
full scale, 3.3 LSB of a 16-bit file. Speech recordings sit at -50 to -20 dBFS and a quiet room's noise floor near
-70 dBFS, so -80 dBFS keeps quiet recordings; under it is dither, quantization noise or a dead input, whose
inter-mic phase is not the room's, yet the model (each window is level-normalized) would name talkers in it.
"""
from __future__ import annotations

import numpy as np
import torch

SIGNAL_FLOOR_DBFS = -80.0
FLOOR_POWER = 10 ** (SIGNAL_FLOOR_DBFS / 10)


class ChannelLevels:
    """Running level of each channel of a stereo stream (samples, sums, squares, lowest and highest sample):
    whether each mic holds a usable signal, in memory independent of the stream's length."""

    def __init__(self) -> None:
        self.samples = 0
        self.sums, self.squares = np.zeros(2), np.zeros(2)
        self.lows, self.highs = np.full(2, np.inf), np.full(2, -np.inf)

    def add(self, chunk: torch.Tensor) -> None:
        """chunk [2, n], finite."""
        x = chunk.double().numpy()
        self.samples += x.shape[-1]
        self.sums += x.sum(axis=-1)
        self.squares += np.square(x).sum(axis=-1)
        if x.shape[-1]:
            self.lows = np.minimum(self.lows, x.min(axis=-1))
            self.highs = np.maximum(self.highs, x.max(axis=-1))

    def dbfs(self) -> np.ndarray:
        """[2]: each channel's RMS with its mean (DC) removed, in dB re full scale; -inf for none."""
        n = max(self.samples, 1)
        power = np.maximum(self.squares / n - np.square(self.sums / n), 0.0)
        with np.errstate(divide="ignore"):
            return 10 * np.log10(power)

    def describe(self, channel: int) -> str:
        if self.lows[channel] == self.highs[channel] == 0:
            return "all zeros"
        if self.lows[channel] == self.highs[channel]:
            return f"constant {self.lows[channel]:g}: a DC offset only"
        return f"RMS {self.dbfs()[channel]:.1f} dBFS"

    def problem(self, name: str) -> str | None:
        """One line naming `name` when a channel's level is below SIGNAL_FLOOR_DBFS (`silent` for both, a dead mic
        for one), else None."""
        level = self.dbfs()
        dead = level < SIGNAL_FLOOR_DBFS
        floor = f"the {SIGNAL_FLOOR_DBFS:g} dBFS floor"
        if dead.all():
            return (f"{name}: silent (mic 0: {self.describe(0)}; mic 1: {self.describe(1)}; below {floor}): "
                    f"nothing to localize")
        if dead.any():
            mic = int(np.argmax(dead))
            return (f"{name}: mic {mic} (channel {mic}) is dead ({self.describe(mic)}, below {floor}, while "
                    f"mic {1 - mic} is at {level[1 - mic]:.1f} dBFS): localizing needs both microphones")
        return None


def window_is_silent(piece: torch.Tensor) -> bool:
    """piece [2, n] (a window without its zero padding) -> whether either channel, its mean removed, is below
    SIGNAL_FLOOR_DBFS (a pause, or one mic dropping out): such a window is not given to the model."""
    x = piece.double()
    power = (x - x.mean(dim=-1, keepdim=True)).square().mean(dim=-1)
    return bool((power < FLOOR_POWER).any())
