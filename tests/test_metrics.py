"""Loss, metric values on hand-made cases, breakdowns, and the oracle/chance floors on synthetic geometry."""
import math

import pytest
import torch
import torch.nn.functional as F

from ssl_model.metrics import localization_metrics, metric_sums, metrics_from_sums, two_slot_cross_entropy
from ssl_model.oracle import chance_binned_mae, oracle_floor_binned_mae
from ssl_model.targets import angle_to_class, angles_to_classes


def test_two_slot_cross_entropy_is_the_seeds_sum():
    torch.manual_seed(0)
    logits = torch.randn(5, 2, 36)
    classes = torch.randint(0, 36, (5, 2)).sort(-1).values
    expected = F.cross_entropy(logits[:, 0], classes[:, 0]) + F.cross_entropy(logits[:, 1], classes[:, 1])
    torch.testing.assert_close(two_slot_cross_entropy(logits, classes), expected)
    smoothed = F.cross_entropy(logits[:, 0], classes[:, 0], label_smoothing=0.1) + F.cross_entropy(
        logits[:, 1], classes[:, 1], label_smoothing=0.1)
    torch.testing.assert_close(two_slot_cross_entropy(logits, classes, label_smoothing=0.1), smoothed)
    perfect = F.one_hot(classes, 36).float() * 50
    assert two_slot_cross_entropy(perfect, classes).item() < 1e-6


PRED_CLS = torch.tensor([[1, 5], [2, 2], [10, 30]])  # the 5-degree bins of PRED_DEG and TRUE_DEG, by hand
TRUE_CLS = torch.tensor([[1, 7], [4, 2], [10, 29]])
PRED_DEG = torch.tensor([[7.0, 27.0], [12.0, 12.0], [52.0, 152.0]])
TRUE_DEG = torch.tensor([[8.0, 37.5], [22.0, 11.0], [51.0, 147.0]])


def test_metric_values_by_hand():
    assert torch.equal(angle_to_class(PRED_DEG), PRED_CLS) and torch.equal(angle_to_class(TRUE_DEG), TRUE_CLS)
    m = metrics_from_sums(metric_sums(PRED_DEG, TRUE_DEG))
    assert m["count"] == 3
    assert m["binned_mae_deg_slot1"] == pytest.approx((0 + 2 + 0) * 5 / 3)
    assert m["binned_mae_deg_slot2"] == pytest.approx((2 + 0 + 1) * 5 / 3)
    assert m["binned_mae_deg"] == pytest.approx((2 + 2 + 1) * 5 / 6)
    assert m["mae_deg_slot1"] == pytest.approx((1 + 10 + 1) / 3)
    assert m["mae_deg_slot2"] == pytest.approx((10.5 + 1 + 5) / 3)
    assert m["acc5_slot1"] == pytest.approx(2 / 3) and m["acc5_slot2"] == pytest.approx(2 / 3)  # 5.0 counts
    assert m["acc10_slot1"] == pytest.approx(1.0) and m["acc10_slot2"] == pytest.approx(2 / 3)


def test_sums_add_across_shards():
    whole = metric_sums(PRED_DEG, TRUE_DEG)
    parts = metric_sums(PRED_DEG[:1], TRUE_DEG[:1]) + metric_sums(
        PRED_DEG[1:], TRUE_DEG[1:])
    assert whole.dtype == torch.float64 and whole.shape == (2, 5)
    torch.testing.assert_close(whole, parts)


def test_breakdowns():
    factors = {
        "rt60": torch.tensor([0.15, 0.45, 0.65]),
        "distance": torch.tensor([[0.5, 4.0], [1.5, 1.5], [0.4, 4.5]]),
        "elevation": torch.tensor([[-5.0, 50.0], [15.0, -15.0], [0.0, 3.0]]),
        "separation": torch.tensor([30.0, 0.0, 100.0]),
    }
    m = localization_metrics(PRED_DEG, TRUE_DEG, factors)
    assert m["binned_mae_deg_slot1"] == pytest.approx(10 / 3)
    assert set(m["by_rt60"]) == {"0.1-0.3", "0.3-0.5", "0.5-0.7"}
    assert m["by_rt60"]["0.3-0.5"]["count"] == 1 and m["by_rt60"]["0.3-0.5"]["binned_mae_deg_slot1"] == 10.0
    near = m["by_distance"]["0.2-1"]  # per-source factor: slot 1 of samples 0 and 2
    assert near["binned_mae_deg_slot1"] == 0.0 and math.isnan(near["binned_mae_deg_slot2"])
    assert m["by_distance"]["3-5"]["binned_mae_deg_slot2"] == pytest.approx(7.5)
    assert m["by_elevation"]["10-20"]["count"] == 1  # |elevation| is binned
    total = sum(b["count"] for b in m["by_separation"].values())
    assert total == 3  # nothing dropped
    with pytest.raises(ValueError, match="no bin edges"):
        localization_metrics(PRED_DEG, TRUE_DEG, {"snr": torch.zeros(3)})


def test_chance_floor():
    classes = torch.tensor([[0, 10], [2, 10], [4, 30]])
    torch.testing.assert_close(chance_binned_mae(classes), torch.tensor([20 / 3, 100 / 3], dtype=torch.float64))


def planar_scenes(n, generator, elevation_deg=None):
    """Scene geometry around a mic pair at x = -+0.05: n scenes x 2 sources -> (tdoa, azimuth, lateral) [n, 2]."""
    lateral = torch.rand(n, 2, generator=generator, dtype=torch.float64) * math.pi
    distance = 0.5 + 3.5 * torch.rand(n, 2, generator=generator, dtype=torch.float64)
    if elevation_deg is None:
        elevation = torch.zeros(n, 2, dtype=torch.float64)
    else:
        elevation = torch.deg2rad(elevation_deg)
    # Source direction: angle `lateral` to +x, then lifted by `elevation` around the x axis.
    x = torch.cos(lateral)
    y = torch.sin(lateral) * torch.cos(elevation)
    z = torch.sin(lateral) * torch.sin(elevation)
    source = distance.unsqueeze(-1) * torch.stack((x, y, z), dim=-1)
    mic0 = torch.tensor([-0.05, 0.0, 0.0], dtype=torch.float64)
    mic1 = torch.tensor([0.05, 0.0, 0.0], dtype=torch.float64)
    tdoa = ((source - mic1).norm(dim=-1) - (source - mic0).norm(dim=-1)) / 340.0
    azimuth = torch.rad2deg(torch.atan2(y, x).abs())
    return tdoa, azimuth, torch.rad2deg(lateral)


def test_oracle_floor_coplanar_is_near_zero():
    tdoa, azimuth, _ = planar_scenes(2000, torch.Generator().manual_seed(0))
    floor = oracle_floor_binned_mae(tdoa=tdoa, angles_deg=azimuth)
    assert floor.shape == (2,) and (floor < 0.5).all(), floor


def test_oracle_floor_two_classes_per_tdoa():
    # Source 1 always at tdoa -1e-4 with class 2 or 6 (half each), source 2 at +1e-4 with class 20 or 30:
    # each slot's Bayes prediction is either class, expected error = 1/2 * class gap * 5 degrees.
    n = 400
    i = torch.arange(n)
    tdoa = torch.stack((torch.full((n,), -1e-4), torch.full((n,), 1e-4)), dim=1).double()
    first = torch.where(i % 2 == 0, 12.5, 32.5)
    second = torch.where(i % 4 < 2, 102.5, 152.5)
    floor = oracle_floor_binned_mae(tdoa=tdoa, angles_deg=torch.stack((first, second), dim=1).double())
    # Leave-one-out leaves 199 of one class against 200 of the other: 199/399 instead of 1/2.
    assert floor[0].item() == pytest.approx(10.0, abs=0.1)
    assert floor[1].item() == pytest.approx(25.0, abs=0.2)


def test_oracle_floor_from_metadata_matches_tensors():
    tdoa, azimuth, lateral = planar_scenes(300, torch.Generator().manual_seed(1),
                                           elevation_deg=torch.full((300, 2), 30.0, dtype=torch.float64))
    metadata = [{"sources": [{"tdoa_s": float(tdoa[k, s]), "azimuth_deg": float(azimuth[k, s]),
                              "lateral_deg": float(lateral[k, s]), "elevation_deg": 30.0, "distance_m": 1.0}
                             for s in range(2)]} for k in range(300)]
    torch.testing.assert_close(oracle_floor_binned_mae(metadata), oracle_floor_binned_mae(tdoa=tdoa, angles_deg=azimuth))
    # A fixed 30-degree elevation maps each TDOA to one azimuth too: the floor stays small (600 sources in
    # 36 classes: the 20-neighbour posterior spans about a bin)...
    assert (oracle_floor_binned_mae(metadata) < 2.0).all()
    # ...while the lateral target is identifiable from the TDOA alone.
    assert (oracle_floor_binned_mae(metadata, target="lateral") < 2.0).all()
    with pytest.raises(ValueError, match="sources"):
        oracle_floor_binned_mae([{"rt60": 0.2}])


def test_oracle_floor_with_random_elevation_is_positive_and_below_chance():
    g = torch.Generator().manual_seed(2)
    elevation = (torch.rand(1000, 2, generator=g, dtype=torch.float64) - 0.5) * 120
    tdoa, azimuth, lateral = planar_scenes(1000, g, elevation_deg=elevation)
    floor = oracle_floor_binned_mae(tdoa=tdoa, angles_deg=azimuth)
    chance = chance_binned_mae(angles_to_classes(azimuth))
    assert (floor > 2.0).all() and (floor < chance / 3).all(), (floor, chance)
    assert (oracle_floor_binned_mae(tdoa=tdoa, angles_deg=lateral) < 1.0).all()


def reference_table(n, seed, elevation_range=None):
    """n reference scenes of planar_scenes' prior (elevation U(-r, r) degrees when given) -> (tdoa, azimuth, lateral) [2n]."""
    g = torch.Generator().manual_seed(seed)
    elevation = None
    if elevation_range is not None:
        elevation = (torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 - 1) * elevation_range
    return tuple(x.flatten() for x in planar_scenes(n, g, elevation_deg=elevation))


def test_reference_posteriors_are_the_k_nearest_reference_classes():
    from ssl_model.oracle import reference_posteriors

    g = torch.Generator().manual_seed(3)
    query = torch.randn(70, generator=g, dtype=torch.float64)
    ref = torch.randn(500, generator=g, dtype=torch.float64)
    classes = torch.randint(0, 36, (500,), generator=g)
    got = reference_posteriors(query, ref, classes, neighbours=9, chunk=16)  # several chunks
    nearest = (query[:, None] - ref[None]).abs().topk(9, largest=False).indices
    expected = F.one_hot(classes[nearest], 36).double().sum(1) / 9
    torch.testing.assert_close(got, expected)
    # Queries beyond both ends of the table, and a table smaller than k: all of it.
    edge = reference_posteriors(torch.tensor([-100.0, 100.0]).double(), ref, classes, neighbours=9)
    torch.testing.assert_close(edge[0], F.one_hot(classes[ref.argsort()[:9]], 36).double().mean(0))
    torch.testing.assert_close(edge[1], F.one_hot(classes[ref.argsort()[-9:]], 36).double().mean(0))
    small = reference_posteriors(query[:3], ref[:4], classes[:4], neighbours=50)
    torch.testing.assert_close(small, F.one_hot(classes[:4], 36).double().mean(0).expand(3, -1))
    with pytest.raises(ValueError, match="reference"):
        reference_posteriors(query, ref, classes[:10])


def test_dense_reference_lateral_floor_is_near_zero_planar_and_3d():
    # Planar: the TDOA fixes the lateral angle (= azimuth here) up to near-field terms.
    tdoa, _, lateral = planar_scenes(400, torch.Generator().manual_seed(4))
    ref_tdoa, _, ref_lateral = reference_table(100_000, 5)
    dense = oracle_floor_binned_mae(tdoa=tdoa, angles_deg=lateral, reference=(ref_tdoa, ref_lateral))
    loo = oracle_floor_binned_mae(tdoa=tdoa, angles_deg=lateral)
    assert dense.shape == (2,) and (dense < 0.5).all(), dense
    assert (dense < loo / 3).all(), (dense, loo)  # the leave-one-out neighbourhood is what inflated it

    # 3-D: elevation U(-60, 60) degrees. Lateral is still fixed by the TDOA; azimuth is not.
    g = torch.Generator().manual_seed(6)
    elevation = (torch.rand(400, 2, generator=g, dtype=torch.float64) * 2 - 1) * 60
    tdoa, azimuth, lateral = planar_scenes(400, g, elevation_deg=elevation)
    ref_tdoa, ref_azimuth, ref_lateral = reference_table(100_000, 7, elevation_range=60.0)
    lateral_floor = oracle_floor_binned_mae(tdoa=tdoa, angles_deg=lateral, reference=(ref_tdoa, ref_lateral))
    azimuth_floor = oracle_floor_binned_mae(tdoa=tdoa, angles_deg=azimuth, reference=(ref_tdoa, ref_azimuth))
    assert (lateral_floor < 0.5).all(), lateral_floor
    assert (azimuth_floor > 2.0).all() and (azimuth_floor > 10 * lateral_floor).all(), (azimuth_floor, lateral_floor)
    # The metadata form takes the same reference.
    metadata = [{"sources": [{"tdoa_s": float(tdoa[k, s]), "lateral_deg": float(lateral[k, s])} for s in range(2)]}
                for k in range(400)]
    torch.testing.assert_close(oracle_floor_binned_mae(metadata, target="lateral", reference=(ref_tdoa, ref_lateral)),
                               lateral_floor)


def test_oracle_slot_classes_from_a_reference():
    from ssl_model.oracle import oracle_slot_classes

    tdoa, _, lateral = planar_scenes(300, torch.Generator().manual_seed(8))
    ref_tdoa, _, ref_lateral = reference_table(50_000, 9)
    predicted = oracle_slot_classes(tdoa, lateral, reference=(ref_tdoa, ref_lateral))
    truth = angles_to_classes(lateral)
    assert (predicted == truth).float().mean() > 0.97
    assert (predicted - truth).abs().max() <= 1


def test_evaluate_reads_the_oracle_prior_from_the_eval_manifest(tmp_path):
    import json
    from pathlib import Path

    from configs import config_to_dict
    from simulate.config import SimulateConfig
    from training.config import load_train_config
    from training.eval.prior import eval_prior_reference

    tiny = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
    cfg = load_train_config(tiny, [f"data.shards={tmp_path}"])
    table, info = eval_prior_reference(cfg, sources=2000)
    assert table is None and info["estimator"] == "leave-one-out" and "manifest" in info["note"]
    # A coplanar prior in the manifest: every reference source is at the array's height, azimuth = lateral.
    (tmp_path / cfg.data.eval_split).mkdir()
    config = {k: v for k, v in config_to_dict(SimulateConfig(coplanar=True)).items() if k != "splits"}
    (tmp_path / cfg.data.eval_split / "manifest.json").write_text(json.dumps({"config": config}))
    table, info = eval_prior_reference(cfg, sources=2000)
    assert info["estimator"] == "reference" and info["sources"] == 2000
    assert table["tdoa_s"].shape == (2000,)
    torch.testing.assert_close(table["azimuth_deg"], table["lateral_deg"])
    again, _ = eval_prior_reference(cfg, sources=2000)
    assert torch.equal(again["tdoa_s"], table["tdoa_s"])  # seeded
    (tmp_path / cfg.data.eval_split / "manifest.json").write_text(json.dumps({"config": {"room_min": "big"}}))
    table, info = eval_prior_reference(cfg, sources=2000)
    assert table is None and "room_min" in info["note"]
