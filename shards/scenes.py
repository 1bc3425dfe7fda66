"""Vectorized draws from a scene prior (shards.prior): rooms, RT60s, array placement, sources, image counts.

Every number is drawn from a CPU torch.Generator and only then moved to the render device, so a seed gives
the same scenes on any device (issue 19). The simulator renders these scenes (simulate.scenes.sample_scenes
checks its whole config first); the TDOA oracle draws its reference sources from a split's prior here.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from shards.array import SOUND_SPEED
from shards.geometry import lateral_deg, source_geometry
from shards.prior import ScenePrior

# Source placement is rejection sampling in vectorized rounds; each round draws this many candidates
# per unplaced source. Candidates come from the box where the room margin and the distance ball
# overlap, so acceptance is >= ~40% unless min_source_separation_deg is close to its maximum.
_CANDIDATES_PER_ROUND = 16
_MAX_ROUNDS = 64


class PriorError(ValueError):
    """The prior's sources cannot be placed (distance range and separation too tight); names the keys."""


@dataclass
class Scenes:
    """A batch of B scenes; positions in metres in room coordinates (origin on the floor corner)."""

    room_dim: torch.Tensor  # [B,3]
    rt60: torch.Tensor  # [B]
    array_pos: torch.Tensor  # [B,3]
    mic_pos: torch.Tensor  # [B,M,3]
    mic_spacing: torch.Tensor  # [B]: mic 0 to mic 1 (m)
    src_pos: torch.Tensor  # [B,S,3]
    image_count: torch.Tensor  # [B] long

    def __len__(self) -> int:
        return self.room_dim.shape[0]

    @property
    def device(self) -> torch.device:
        return self.room_dim.device

    def to(self, device: torch.device | str) -> "Scenes":
        return Scenes(**{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)})

    def select(self, index: int | slice | torch.Tensor) -> "Scenes":
        """Sub-batch by slice, index tensor or boolean mask; an int keeps a batch of one."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return Scenes(**{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)})

    __getitem__ = select

    def geometry(self, sound_speed: float = SOUND_SPEED) -> dict[str, torch.Tensor]:
        """-> source_geometry of every scene: dict of [B,S] tensors."""
        return source_geometry(self.src_pos, self.mic_pos, self.array_pos, sound_speed)


def _uniform(low: torch.Tensor, high: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """low, high [...] -> U(low, high) [...] drawn from `generator`."""
    u = torch.rand(low.shape, generator=generator, device=low.device, dtype=low.dtype)
    return low + (high - low) * u


def _place_sources(
    prior: ScenePrior, room_dim: torch.Tensor, array_pos: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """room_dim [B,3], array_pos [B,3] -> src_pos [B,S,3]; one source index at a time, all scenes at once."""
    count = room_dim.shape[0]
    dmin, dmax = prior.distance_range
    margin = prior.wall_margin
    # Uniform in the margin box conditioned on the distance range = uniform in the margin box cut
    # to the cube around the array centre that holds the distance ball, then rejection.
    low = torch.maximum(torch.full_like(room_dim, margin), array_pos - dmax)
    high = torch.minimum(room_dim - margin, array_pos + dmax)
    src = torch.zeros(count, prior.num_sources, 3, dtype=room_dim.dtype, device=room_dim.device)
    lateral = torch.zeros(count, prior.num_sources, dtype=room_dim.dtype, device=room_dim.device)
    for s in range(prior.num_sources):
        pending = torch.arange(count, device=room_dim.device)
        for _ in range(_MAX_ROUNDS):
            if pending.numel() == 0:
                break
            shape = (pending.numel(), _CANDIDATES_PER_ROUND, 3)
            lo = low[pending, None, :].expand(shape)
            hi = high[pending, None, :].expand(shape)
            cand = _uniform(lo, hi, generator)
            centre = array_pos[pending, None, :]
            if prior.coplanar:
                cand[..., 2] = centre[..., 2].expand(cand.shape[:2])
            v = cand - centre
            dist = torch.linalg.vector_norm(v, dim=-1)
            lat = lateral_deg(v)
            ok = (dist >= dmin) & (dist <= dmax)
            if s > 0 and prior.min_source_separation_deg > 0:
                gap = (lat[:, :, None] - lateral[pending, None, :s]).abs()
                ok &= (gap >= prior.min_source_separation_deg).all(dim=-1)
            found = ok.any(dim=1)
            first = ok.to(torch.int8).argmax(dim=1)  # first accepted candidate of each scene
            rows = pending[found]
            src[rows, s] = cand[found, first[found]]
            lateral[rows, s] = lat[found, first[found]]
            pending = pending[~found]
        if pending.numel():
            raise PriorError(
                f"distance_range / min_source_separation_deg: could not place source {s} in "
                f"{pending.numel()} scene(s) after {_MAX_ROUNDS * _CANDIDATES_PER_ROUND} draws "
                f"(e.g. room {room_dim[pending[0]].tolist()}); widen distance_range or lower the separation"
            )
    return src


def cpu_generator(generator: torch.Generator) -> torch.Generator:
    """-> generator itself; ValueError unless it is a CPU generator (draws must not depend on the device)."""
    if generator.device.type != "cpu":
        raise ValueError(f"scenes draw every number on the CPU; got a torch.Generator on {generator.device}")
    return generator


def _mic_offsets(prior: ScenePrior, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (mic offsets from the array centre [B,M,3], mic spacing [B]) float64; draws only with mic_spacing_range."""
    dtype = torch.float64
    if prior.mic_spacing_range is None:
        offsets = torch.tensor(prior.mic_positions, dtype=dtype).expand(count, -1, -1)
        return offsets, torch.full((count,), prior.mic_spacing, dtype=dtype)
    lo, hi = prior.mic_spacing_range
    spacing = _uniform(torch.full((count,), lo, dtype=dtype), torch.full((count,), hi, dtype=dtype), generator)
    axis = torch.tensor([[-0.5, 0.0, 0.0], [0.5, 0.0, 0.0]], dtype=dtype)
    return spacing[:, None, None] * axis, spacing


def draw_scenes(
    prior: ScenePrior, count: int, generator: torch.Generator, device: torch.device | str = "cpu"
) -> Scenes:
    """prior, count B, a CPU generator -> Scenes of B scenes on `device`; positions in float64.

    Draw order: rooms, RT60s, array centres, image counts, sources, then (only with mic_spacing_range) the
    spacings, so a fixed-array prior draws exactly what it drew before the range existed.
    """
    cpu_generator(generator)
    dtype = torch.float64
    zeros = torch.zeros(count, 3, dtype=dtype)
    room_min = zeros + torch.tensor(prior.room_min, dtype=dtype)
    room_max = zeros + torch.tensor(prior.room_max, dtype=dtype)
    room_dim = _uniform(room_min, room_max, generator)
    lo, hi = prior.rt60_range
    rt60 = _uniform(torch.full((count,), lo, dtype=dtype), torch.full((count,), hi, dtype=dtype), generator)
    keep = prior.wall_margin + prior.array_radius
    array_pos = _uniform(zeros + keep, room_dim - keep, generator)
    ilo, ihi = prior.image_count_range
    image_count = torch.randint(ilo, ihi + 1, (count,), generator=generator)
    src_pos = _place_sources(prior, room_dim, array_pos, generator)
    offsets, spacing = _mic_offsets(prior, count, generator)
    mic_pos = array_pos[:, None, :] + offsets
    return Scenes(room_dim, rt60, array_pos, mic_pos, spacing, src_pos, image_count).to(device)


def prior_sources(prior: ScenePrior, sources: int, seed: int) -> dict[str, torch.Tensor]:
    """prior, R, seed -> {'tdoa_s', 'lateral_deg', 'azimuth_deg': float64 [R']}, the sources of ceil(R / sources
    per scene) scenes drawn from the prior (geometry only, nothing is rendered)."""
    count = math.ceil(sources / prior.num_sources)
    geometry = draw_scenes(prior, count, torch.Generator().manual_seed(seed)).geometry(prior.sound_speed)
    return {key: geometry[key].flatten() for key in ("tdoa_s", "lateral_deg", "azimuth_deg")}
