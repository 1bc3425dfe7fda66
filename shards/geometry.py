"""Per-source geometry seen from a microphone array: angles, distance and the mic-0/mic-1 TDOA (the `sources`
fields of a sample's json, shards/README.md)."""
from __future__ import annotations

import torch

from shards.array import SOUND_SPEED


def lateral_deg(v: torch.Tensor) -> torch.Tensor:
    """Vectors [..., 3] from the array centre -> angle to the +x (mic 0 -> mic 1) axis [...] in degrees, 0..180.

    atan2 of (off-axis, on-axis) is exact near 0 and 180, where acos of a dot product is not.
    """
    return torch.rad2deg(torch.atan2(torch.hypot(v[..., 1], v[..., 2]), v[..., 0]))


def source_geometry(
    src_pos: torch.Tensor, mic_pos: torch.Tensor, array_pos: torch.Tensor, sound_speed: float = SOUND_SPEED
) -> dict[str, torch.Tensor]:
    """src_pos [B,S,3], mic_pos [B,M,3], array_pos [B,3] -> dict of [B,S] tensors (degrees, metres, seconds)."""
    v = src_pos - array_pos[:, None, :]
    dx, dy, dz = v.unbind(-1)
    horizontal = torch.hypot(dx, dy)
    distance = torch.linalg.vector_norm(v, dim=-1)
    azimuth = torch.rad2deg(torch.atan2(dy, dx).abs())
    lateral = lateral_deg(v)
    elevation = torch.rad2deg(torch.atan2(dz, horizontal))
    to_mic = torch.linalg.vector_norm(src_pos[:, :, None, :] - mic_pos[:, None, :, :], dim=-1)  # [B,S,M]
    tdoa = (to_mic[..., 1] - to_mic[..., 0]) / sound_speed
    return {
        "azimuth_deg": azimuth,
        "lateral_deg": lateral,
        "elevation_deg": elevation,
        "distance_m": distance,
        "tdoa_s": tdoa,
    }
