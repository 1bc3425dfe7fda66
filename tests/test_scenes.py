"""Scene sampling constraints, source geometry and simulate-config validation."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from configs import ConfigError, build_config, load_config
from shards.geometry import source_geometry
from shards.scenes import Scenes
from simulate.config import SimulateConfig
from simulate.scenes import sample_scenes

ROOT = Path(__file__).resolve().parents[1]


def _sample(cfg: SimulateConfig, count: int = 400, seed: int = 0) -> Scenes:
    return sample_scenes(cfg, count, torch.Generator().manual_seed(seed))


def test_seed_protocol_constraints_hold():
    cfg = SimulateConfig()
    s = _sample(cfg)
    lo, hi = torch.tensor(cfg.room_min, dtype=s.room_dim.dtype), torch.tensor(cfg.room_max, dtype=s.room_dim.dtype)
    assert ((s.room_dim >= lo) & (s.room_dim <= hi)).all()
    assert ((s.rt60 >= cfg.rt60_range[0]) & (s.rt60 <= cfg.rt60_range[1])).all()
    keep = cfg.wall_margin + cfg.array_radius
    assert ((s.array_pos >= keep) & (s.array_pos <= s.room_dim - keep)).all()
    offsets = torch.tensor(cfg.mic_positions, dtype=s.mic_pos.dtype)
    assert torch.allclose(s.mic_pos - s.array_pos[:, None], offsets.expand_as(s.mic_pos))
    assert ((s.mic_pos >= cfg.wall_margin) & (s.mic_pos <= s.room_dim[:, None] - cfg.wall_margin)).all()
    assert s.src_pos.shape == (400, cfg.num_sources, 3)
    margin = cfg.wall_margin
    assert ((s.src_pos >= margin) & (s.src_pos <= s.room_dim[:, None] - margin)).all()
    dist = s.geometry()["distance_m"]
    assert ((dist >= cfg.distance_range[0]) & (dist <= cfg.distance_range[1])).all()
    assert s.image_count.dtype == torch.long
    assert ((s.image_count >= 1024) & (s.image_count <= 4096)).all()
    # Sources are not all at the array's height by default.
    assert (s.src_pos[..., 2] - s.array_pos[:, None, 2]).abs().max() > 0.5


def test_coplanar_min_separation_and_custom_geometry():
    cfg = SimulateConfig(
        coplanar=True, min_source_separation_deg=25.0, num_sources=3, distance_range=(0.5, 2.0),
        mic_positions=[(-0.1, 0.0, 0.0), (0.0, 0.0, 0.0), (0.1, 0.0, 0.0), (0.0, 0.05, 0.0)],
        room_min=(4.0, 4.0, 2.5), room_max=(5.0, 5.0, 3.0), wall_margin=0.3,
    )
    s = _sample(cfg, 200, seed=1)
    assert s.mic_pos.shape == (200, 4, 3) and s.src_pos.shape == (200, 3, 3)
    assert torch.allclose(s.src_pos[..., 2], s.array_pos[:, None, 2].expand(-1, 3))
    geo = s.geometry()
    assert ((geo["distance_m"] >= 0.5) & (geo["distance_m"] <= 2.0)).all()
    lat = geo["lateral_deg"]
    gaps = (lat[:, :, None] - lat[:, None, :]).abs() + 1000 * torch.eye(3)
    assert gaps.min() >= 25.0
    assert torch.allclose(geo["lateral_deg"], geo["azimuth_deg"], atol=1e-9)  # coplanar: the same angle
    assert geo["elevation_deg"].abs().max() < 1e-9


def test_same_seed_same_scenes_different_seed_different():
    cfg = SimulateConfig()
    a, b, c = _sample(cfg, 50, 7), _sample(cfg, 50, 7), _sample(cfg, 50, 8)
    for name in ("room_dim", "rt60", "array_pos", "mic_pos", "src_pos", "image_count"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.src_pos, c.src_pos) and not torch.equal(a.room_dim, c.room_dim)


def test_scenes_select_and_to():
    s = _sample(SimulateConfig(), 10, 2)
    sub = s.select(torch.tensor([1, 3]))
    assert len(sub) == 2 and torch.equal(sub.src_pos[1], s.src_pos[3])
    assert len(s[2:5]) == 3 and len(s[4]) == 1 and torch.equal(s[4].rt60, s.rt60[4:5])
    assert len(s.select(s.rt60 > 0.4)) == int((s.rt60 > 0.4).sum())
    assert s.to("cpu").device.type == "cpu"


def test_source_geometry_by_hand():
    array = torch.tensor([[2.0, 2.0, 1.5]])
    mics = array[:, None] + torch.tensor([[[-0.05, 0, 0], [0.05, 0, 0]]])
    src = torch.tensor([[[3.0, 3.0, 1.5], [1.0, 2.0, 1.5], [2.0, 1.0, 2.5], [2.0, 2.0, 3.0]]])
    g = source_geometry(src, mics, array, 340.0)
    assert torch.allclose(g["azimuth_deg"][0, :3], torch.tensor([45.0, 180.0, 90.0]))
    assert torch.allclose(g["lateral_deg"][0], torch.tensor([45.0, 180.0, 90.0, 90.0]))
    assert torch.allclose(g["elevation_deg"][0], torch.tensor([0.0, 0.0, 45.0, 90.0]))
    assert torch.allclose(g["distance_m"][0, :2], torch.tensor([math.sqrt(2), 1.0]))
    # Source behind mic 0 on the axis: mic 1 hears it 0.1 m later.
    assert torch.allclose(g["tdoa_s"][0, 1], torch.tensor(0.1 / 340.0))
    assert g["tdoa_s"][0, 2].abs() < 1e-9


def test_yaml_is_the_seed_protocol():
    assert load_config(SimulateConfig, ROOT / "configs" / "simulate.yaml") == SimulateConfig()


@pytest.mark.parametrize(
    "data, key",
    [
        ({"rt60_range": [-0.2, 0.5]}, "rt60_range"),
        ({"room_min": [0.8, 3.0, 2.5]}, "room_min"),
        ({"distance_range": [12.0, 13.0]}, "distance_range"),
        ({"distance_range": [0.02, 1.0]}, "distance_range"),
        ({"min_source_separation_deg": 200.0}, "min_source_separation_deg"),
        ({"image_count_range": [10, 5]}, "image_count_range"),
        ({"fractional_delay_order": 0}, "fractional_delay_order"),
        ({"decay": "sabine"}, "decay"),
        ({"rt60_range": [0.5, 3.0]}, "decay: fra, which holds only while c \\* T60 < 1000 m"),
        ({"no_such_key": 1}, "no_such_key"),
        ({"mic_spacing_range": [0.0, 0.1]}, "mic_spacing_range"),
        ({"mic_spacing_range": [0.12, 0.08]}, "mic_spacing_range"),
        ({"mic_spacing_range": [0.1, 1.5]}, "mic_spacing_range"),
        ({"mic_spacing_range": [0.05, float("nan")]}, "mic_spacing_range"),
        ({"mic_spacing_range": [0.1]}, "mic_spacing_range"),
        ({"mic_positions": [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]}, "mic_positions"),
    ],
)
def test_bad_config_fails_naming_the_key(data, key):
    with pytest.raises(ConfigError, match=key):
        build_config(SimulateConfig, data)


def test_fra_decay_is_capped_where_its_reflection_law_breaks_down():
    # c T60 = 340 * 2.9 = 986 m: still valid; 3.0 s is refused for fra and allowed for calibrated.
    build_config(SimulateConfig, {"rt60_range": [0.5, 2.9]})
    build_config(SimulateConfig, {"rt60_range": [0.5, 3.0], "decay": "calibrated"})
    with pytest.raises(ConfigError, match="rt60_range: max 3.0 s is too long for decay: fra.*2.94 s"):
        build_config(SimulateConfig, {"rt60_range": [0.5, 3.0]})


def test_mic_spacing_range_draws_each_scenes_pair_inside_it():
    cfg = SimulateConfig(mic_spacing_range=(0.06, 0.16))
    s = _sample(cfg, 300, seed=4)
    assert s.mic_pos.shape == (300, 2, 3)
    assert ((s.mic_spacing >= 0.06) & (s.mic_spacing <= 0.16)).all() and s.mic_spacing.std() > 0.02
    # Mics at -d/2 and +d/2 along x around the centre; the centre keeps wall_margin + hi/2 from the walls.
    half = s.mic_spacing[:, None] / 2 * torch.tensor([-1.0, 1.0], dtype=torch.float64)
    assert torch.allclose(s.mic_pos[..., 0] - s.array_pos[:, None, 0], half, atol=1e-12)
    assert torch.equal(s.mic_pos[..., 1:], s.array_pos[:, None, 1:].expand(-1, 2, -1))
    keep = cfg.wall_margin + 0.08
    assert cfg.array_radius == 0.08 and ((s.array_pos >= keep) & (s.array_pos <= s.room_dim - keep)).all()
    # Rerun: the same spacings.
    assert torch.equal(_sample(cfg, 300, seed=4).mic_spacing, s.mic_spacing)


def test_tdoas_follow_each_scenes_own_spacing():
    cfg = SimulateConfig(mic_spacing_range=(0.06, 0.16))
    s = _sample(cfg, 300, seed=5)
    geo = s.geometry(cfg.sound_speed)
    # Exact: c tdoa = |s - m1| - |s - m0| with the mics at -/+ d/2 along x from the centre, d the scene's own.
    axis = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    m0 = s.array_pos - s.mic_spacing[:, None] / 2 * axis
    m1 = s.array_pos + s.mic_spacing[:, None] / 2 * axis
    path = (s.src_pos - m1[:, None]).norm(dim=-1) - (s.src_pos - m0[:, None]).norm(dim=-1)
    assert torch.allclose(geo["tdoa_s"] * cfg.sound_speed, path, atol=1e-12)
    assert (geo["tdoa_s"].abs() <= s.mic_spacing[:, None] / cfg.sound_speed + 1e-15).all()
    # Far field: c tdoa -> -d cos(lateral), so the lateral angle and the spacing agree with the TDOA.
    far = geo["distance_m"] > 10 * s.mic_spacing[:, None]
    farfield = -s.mic_spacing[:, None] * torch.cos(torch.deg2rad(geo["lateral_deg"]))
    assert far.sum() > 300
    assert ((geo["tdoa_s"] * cfg.sound_speed - farfield).abs()[far] < 0.01 * s.mic_spacing[:, None].expand_as(far)[far]).all()


def test_a_one_point_spacing_range_is_the_fixed_array():
    # The spacing is drawn after everything else, so the range [0.1, 0.1] reproduces the default scenes.
    fixed, ranged = _sample(SimulateConfig(), 50, 9), _sample(SimulateConfig(mic_spacing_range=(0.1, 0.1)), 50, 9)
    for name in ("room_dim", "rt60", "array_pos", "src_pos", "image_count", "mic_spacing"):
        assert torch.equal(getattr(fixed, name), getattr(ranged, name)), name
    assert torch.allclose(fixed.mic_pos, ranged.mic_pos, atol=1e-15)


def test_unplaceable_sources_fail_naming_distance_range():
    # Valid for the largest room, impossible in the smallest ones: fails while sampling, with the key.
    cfg = SimulateConfig(distance_range=(5.5, 6.0), room_min=(3.0, 3.0, 2.5))
    with pytest.raises(ValueError, match="distance_range"):
        _sample(cfg, 50, 3)
