"""The simulation config: the seed protocol as defaults (docs/protocol.md)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from configs import need
from shards.array import ArraySetup
from shards.layout import MAX_SAMPLES, MAX_SHARDS, shard_count
from shards.prior import ScenePrior, array_radius

# 3: every sample's json and the split manifest carry the array record (shards.array); all draws come from a
# CPU generator whatever the render device.
GENERATOR_VERSION = "fra-rir-torch/3"
MAX_MIC_SPACING = 1.0  # m: the largest mic_spacing_range, and mic distance from the array centre, accepted
MAX_SR = 192_000  # Hz
MAX_ROOM_M = 100.0  # m: the largest room side and source distance accepted
MAX_IMAGES = 1 << 16  # FRA-RIR images per source (the seed protocol draws 1024-4096)
MAX_SHARD_BYTES = 4 << 30  # SimulateConfig.shard_bytes() above this is refused before any work


def _all_finite(value: object) -> bool:
    """A config value (number, string, or nested lists/tuples/dicts of them) -> False when any number is NaN/Inf."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(map(_all_finite, value))
    if isinstance(value, dict):
        return all(map(_all_finite, value.values()))
    return True


@dataclass
class SimulateConfig:
    """The scene prior's fields (shards.prior.ScenePrior: their meaning and seed-protocol defaults), the render's
    and the output's."""
    sr: int = 16000
    room_min: tuple[float, float, float] = ScenePrior.room_min
    room_max: tuple[float, float, float] = ScenePrior.room_max
    rt60_range: tuple[float, float] = ScenePrior.rt60_range
    num_sources: int = ScenePrior.num_sources
    mic_positions: list[tuple[float, float, float]] = field(default_factory=lambda: list(ScenePrior.mic_positions))
    mic_spacing_range: tuple[float, float] | None = ScenePrior.mic_spacing_range
    wall_margin: float = ScenePrior.wall_margin
    distance_range: tuple[float, float] = ScenePrior.distance_range
    coplanar: bool = ScenePrior.coplanar
    min_source_separation_deg: float = ScenePrior.min_source_separation_deg
    image_count_range: tuple[int, int] = ScenePrior.image_count_range
    # fra: the FRA-RIR model as written (its T20 is ~2x the requested RT60); calibrated: same draws,
    # reflection law solved so the Schroeder T20 tracks the requested RT60.
    decay: Literal["fra", "calibrated"] = "fra"
    uniform_directions: bool = False  # FRA-RIR's own direction draw is not uniform on the sphere
    # > 0: also render the shoebox's exact image sources up to this reflection order (specular early
    # reflections from their geometric directions, e.g. the end walls along the array axis), beside FRA's random
    # ones. 0 (default) is FRA-RIR as its authors define it.
    early_images: int = 0
    reflection_perturb: tuple[float, float] = (-2.0, 2.0)  # (a, b) of U(a, b) * ratio^tau
    reflection_tau: float = 0.25
    sound_speed: float = ScenePrior.sound_speed
    highpass_hz: float = 80.0
    # Polynomial order of the Farrow fractional delay placing each path at its exact delay (4: < -55 dB).
    fractional_delay_order: int = 4
    early_window_ms: tuple[float, float] = (-6.0, 50.0)
    shard_size: int = 100
    seed: int = 0
    splits: dict[str, int] = field(default_factory=lambda: {"train": 3000, "eval": 200})

    @property
    def array_radius(self) -> float:
        """The farthest any mic can be from the array centre (m)."""
        return array_radius(self.mic_positions, self.mic_spacing_range)

    def shard_bytes(self) -> int:
        """A cheap upper bound of one shard's render memory: the image draws, 4 float32 per image per source per
        scene, all drawn up front (fra_rir.draw_images), plus the full and early RIRs, float32 [B, M, S, L]."""
        scenes, mics = self.shard_size, max(len(self.mic_positions), 2)
        draws = 16 * scenes * self.num_sources * self.image_count_range[1]
        rirs = 8 * scenes * mics * self.num_sources * math.ceil(self.rt60_range[1] * self.sr)
        return draws + rirs

    def array_setup(self, mic_spacing: float | None = None) -> ArraySetup:
        """-> the array record of a scene with this spacing (m); None: the spacing of mic_positions' mics 0 and 1."""
        if mic_spacing is None:
            mic_spacing = math.dist(self.mic_positions[0], self.mic_positions[1])
        return ArraySetup(self.sr, mic_spacing, self.sound_speed, self.num_sources)

    def validate(self) -> None:
        for name, value in vars(self).items():
            need(_all_finite(value), name, f"every number must be finite, got {value!r}")
        need(1000 <= self.sr <= MAX_SR, "sr", f"must be in [1000, {MAX_SR}] Hz, got {self.sr}")
        need(max(self.room_max) <= MAX_ROOM_M, "room_max", f"every side must be <= {MAX_ROOM_M:g} m (a hall), got "
                                                           f"{list(self.room_max)}")
        need(self.distance_range[1] <= MAX_ROOM_M, "distance_range",
             f"max must be <= {MAX_ROOM_M:g} m, got {self.distance_range[1]}")
        need(200.0 <= self.sound_speed <= 2000.0, "sound_speed",
             f"must be in [200, 2000] m/s (air is ~340), got {self.sound_speed}")
        need(0.0 <= self.reflection_tau <= 10.0, "reflection_tau", f"must be in [0, 10], got {self.reflection_tau}")
        need(max(map(abs, self.reflection_perturb)) <= 20.0, "reflection_perturb",
             f"must lie in [-20, 20], got {list(self.reflection_perturb)}")
        need(self.image_count_range[1] <= MAX_IMAGES, "image_count_range",
             f"max must be <= {MAX_IMAGES} images per source, got {self.image_count_range[1]}")
        need(self.early_window_ms[1] <= 1000.0 and self.early_window_ms[0] >= -1000.0, "early_window_ms",
             f"must lie within [-1000, 1000] ms, got {list(self.early_window_ms)}")
        need(all(math.dist(p, (0, 0, 0)) <= MAX_MIC_SPACING for p in self.mic_positions), "mic_positions",
             f"every mic must be within {MAX_MIC_SPACING:g} m of the array centre, got {self.mic_positions}")
        mics = self.mic_positions
        close = [(i, j) for i in range(len(mics)) for j in range(i + 1, len(mics)) if math.dist(mics[i], mics[j]) < 1e-3]
        need(not close, "mic_positions", f"mics {close[0] if close else ''} are less than 1 mm apart (coincident), "
                                         f"got {mics}")
        lo, hi = self.rt60_range
        need(0 < lo <= hi, "rt60_range", f"must satisfy 0 < min <= max, got {list(self.rt60_range)}")
        need(hi <= 5.0, "rt60_range", f"max must be <= 5 s, got {hi}")
        # FRA's k_max = (log10(c T60) - 3) / log10(beta) turns negative once c T60 exceeds 1000 m: the
        # reflection count then falls with distance and amplitudes decay only as 1/d.
        if self.decay == "fra" and self.sound_speed * hi >= 1000.0:
            need(False, "rt60_range",
                 f"max {hi} s is too long for decay: fra, which holds only while c * T60 < 1000 m "
                 f"(T60 < {1000.0 / self.sound_speed:.2f} s at sound_speed={self.sound_speed:g}); above it FRA-RIR's "
                 f"reflection count k_max turns negative and reflections fall only as 1/d. Use decay: calibrated "
                 f"for longer reverberation")
        need(self.num_sources >= 1, "num_sources", f"must be >= 1, got {self.num_sources}")
        need(len(self.mic_positions) >= 2, "mic_positions", "needs at least two microphones")
        if self.mic_spacing_range is not None:
            lo, hi = self.mic_spacing_range
            need(0 < lo <= hi <= MAX_MIC_SPACING, "mic_spacing_range",
                 f"must satisfy 0 < lo <= hi <= {MAX_MIC_SPACING:g} m, got {list(self.mic_spacing_range)}")
        need(self.wall_margin >= 0, "wall_margin", f"must be >= 0, got {self.wall_margin}")
        for axis in range(3):
            need(
                0 < self.room_min[axis] <= self.room_max[axis],
                "room_min",
                f"must be positive and <= room_max on every axis, got {list(self.room_min)} vs {list(self.room_max)}",
            )
        smallest_needed = 2 * (self.wall_margin + self.array_radius)
        need(
            min(self.room_min) > smallest_needed,
            "room_min",
            f"every side must exceed 2 * (wall_margin + array radius) = {smallest_needed:.3f} m, got {list(self.room_min)}",
        )
        dmin, dmax = self.distance_range
        need(0 < dmin <= dmax, "distance_range", f"must satisfy 0 < min <= max, got {list(self.distance_range)}")
        # Farthest a source can be from the array centre in the largest room: corner to corner of
        # the usable box (sources keep wall_margin, the centre keeps wall_margin + radius).
        usable = [side - 2 * self.wall_margin for side in self.room_max]
        reach = math.sqrt(sum(u * u for u in usable))
        need(
            dmin < reach,
            "distance_range",
            f"min {dmin} m is farther than any source can be from the array in the largest room ({reach:.2f} m)",
        )
        need(self.distance_range[0] > self.array_radius, "distance_range",
             f"min must exceed the array radius {self.array_radius:.3f} m")
        need(
            0 <= self.min_source_separation_deg < 180.0 / max(self.num_sources - 1, 1),
            "min_source_separation_deg",
            f"must be in [0, {180.0 / max(self.num_sources - 1, 1):.1f}), got {self.min_source_separation_deg}",
        )
        ilo, ihi = self.image_count_range
        # 0 images gives direct paths only (anechoic), useful for tests.
        need(0 <= ilo <= ihi, "image_count_range", f"must satisfy 0 <= min <= max, got {list(self.image_count_range)}")
        need(0 <= self.early_images <= 6, "early_images", f"must be in [0, 6], got {self.early_images}")
        need(1 <= self.fractional_delay_order <= 8, "fractional_delay_order",
             f"must be in [1, 8], got {self.fractional_delay_order}")
        a, b = self.reflection_perturb
        need(a <= b, "reflection_perturb", f"must satisfy a <= b, got {list(self.reflection_perturb)}")
        need(self.sound_speed > 0, "sound_speed", f"must be > 0, got {self.sound_speed}")
        need(0 <= self.highpass_hz < self.sr / 2, "highpass_hz", f"must be in [0, sr/2), got {self.highpass_hz}")
        e0, e1 = self.early_window_ms
        need(e0 < 0 < e1, "early_window_ms", f"must satisfy start < 0 < end, got {list(self.early_window_ms)}")
        need(self.shard_size >= 1, "shard_size", f"must be >= 1, got {self.shard_size}")
        need(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")
        for name, count in self.splits.items():
            need(isinstance(name, str) and name.isidentifier(), "splits", f"split names must be identifiers, got {name!r}")
            need(isinstance(count, int) and count >= 0, f"splits.{name}", f"must be a count >= 0, got {count!r}")
            self.check_split_size(name, count)
        # Last: a bound of several keys together, so a single absurd value is named by its own check above.
        estimate = self.shard_bytes()
        need(estimate <= MAX_SHARD_BYTES, "shard_size",
             f"one shard would take ~{estimate / 2**30:.1f} GiB to render (shard_size={self.shard_size} x "
             f"num_sources={self.num_sources} x image_count_range max {self.image_count_range[1]} x rt60 max "
             f"{self.rt60_range[1]} s at {self.sr} Hz); keep it under {MAX_SHARD_BYTES / 2**30:g} GiB with a smaller "
             f"shard_size or image_count_range")

    def check_split_size(self, name: str, count: int) -> None:
        """A split's scene count -> ConfigError unless its shard numbers and sample keys keep their fixed widths
        (so names sort in order); checked before any shard is planned, since planning is per shard."""
        shards = shard_count(count, self.shard_size)
        need(count <= MAX_SAMPLES and shards <= MAX_SHARDS, f"splits.{name}",
             f"{count:,} scenes in {shards:,} shards of shard_size={self.shard_size}; a split holds at most "
             f"{MAX_SAMPLES:,} scenes (9-digit sample keys) in at most {MAX_SHARDS:,} shards (6-digit shard numbers)")
