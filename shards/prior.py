"""The scene prior: the distribution a split's scenes are drawn from, as its manifest's `config` records it.

The simulator draws every scene from it (shards.scenes.draw_scenes, called by simulate.scenes), and a reader
that needs the prior itself, not just the split's scenes (the TDOA oracle's dense reference table), rebuilds
it from the manifest. The defaults are the seed protocol's (docs/protocol.md); simulate.config.SimulateConfig
takes its own defaults of these fields from here. Light on purpose: no torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from shards.array import SOUND_SPEED


def array_radius(mic_positions: Any, mic_spacing_range: Any) -> float:
    """mic offsets [M][3] from the array centre (m), spacing range [lo, hi] or None -> the farthest any mic can be
    from the array centre (m)."""
    if mic_spacing_range is not None:
        return mic_spacing_range[1] / 2
    return max(math.sqrt(x * x + y * y + z * z) for x, y, z in mic_positions)


@dataclass(frozen=True)
class ScenePrior:
    """Rooms (m), RT60s (s), sources per scene, the array (mic offsets or a spacing range, m), source placement
    (margin, distance range, height, separation in lateral angle), FRA-RIR image counts, the speed of sound (m/s)."""

    room_min: tuple[float, float, float] = (3.0, 3.0, 2.5)
    room_max: tuple[float, float, float] = (10.0, 6.0, 4.0)
    rt60_range: tuple[float, float] = (0.1, 0.7)
    num_sources: int = 2
    # Mic offsets from the array centre in metres; the array axis is the room's x axis, never rotated.
    mic_positions: tuple[tuple[float, float, float], ...] = ((-0.05, 0.0, 0.0), (0.05, 0.0, 0.0))
    # [lo, hi] m: replaces mic_positions by two mics at -d/2 and +d/2 along x, d ~ U(lo, hi) per scene.
    mic_spacing_range: tuple[float, float] | None = None
    wall_margin: float = 0.5
    distance_range: tuple[float, float] = (0.2, 5.0)
    coplanar: bool = False  # sources at the array's height
    min_source_separation_deg: float = 0.0  # in lateral angle, between any two sources of a scene
    image_count_range: tuple[int, int] = (1024, 4096)
    sound_speed: float = SOUND_SPEED

    @property
    def array_radius(self) -> float:
        """The farthest any mic can be from the array centre (m)."""
        return array_radius(self.mic_positions, self.mic_spacing_range)

    @property
    def mic_spacing(self) -> float:
        """Mic 0 to mic 1 of mic_positions (m); the spacing of every scene unless mic_spacing_range is set."""
        return math.dist(self.mic_positions[0], self.mic_positions[1])

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """-> the field names: the keys of a manifest's `config` that shape the prior."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def of(cls, record: Any) -> ScenePrior:
        """Any record with these fields as attributes (e.g. a validated SimulateConfig) -> its prior."""
        return cls(**{key: getattr(record, key) for key in cls.keys()})
