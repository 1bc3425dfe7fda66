"""benchmarks/accuracy_targets.py: the real-recordings targets read off a bench_accuracy JSON."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from accuracy_targets import GCC, SRP_DNN, merged, target_rows  # noqa: E402


def pair_set(model: float, gcc: float, srp: float, shipped: float, acc5: float = 0.5) -> dict:
    metrics = lambda mae, acc=0.5: {"metrics": {"binned_mae_deg": mae, "acc5": acc}}  # noqa: E731
    return {"methods": {"model new": {"kind": "model", **metrics(model, acc5)},
                        "model shipped": {"kind": "model", **metrics(shipped)},
                        GCC: {"kind": "gcc_phat", **metrics(gcc)}, SRP_DNN: {"kind": "extra", **metrics(srp)}}}


def test_each_target_is_met_or_missed_on_the_numbers_given():
    results = {"sets": {
        "count": {"methods": {"model new": {"kind": "model", "metrics": {"count_accuracy": 0.92, "f1": 0.89}}}},
        "diffuse10": pair_set(5.9, 12.0, 8.0, 30.0),  # <= 6 and <= 0.5x GCC: met
        "sensor10": pair_set(6.0, 12.0, 5.0, 30.0),  # SRP-DNN is better: missed
        "diffuse0": pair_set(20.0, 25.0, 21.0, 35.0),  # below GCC and SRP-DNN (the shipped model is no baseline)
        "spacing8": pair_set(4.4, 9.0, 9.0, 12.0), "spacing12": pair_set(4.6, 9.0, 9.0, 12.0),
        "pra": pair_set(3.0, 13.0, 3.0, 2.8, acc5=0.91), "fra": pair_set(1.2, 12.0, 2.0, 1.0),
    }}
    rows = {row[0].split(":")[0]: row for row in target_rows(results, "model new", "model shipped")}
    assert rows["(d) count"][3] == "**missed**" and "92.0%" in rows["(d) count"][1]  # F1 0.89 < 0.90
    assert "ceiling" not in rows["(d) count"][2]  # the set gave none
    assert rows["(c) diffuse 10 dB"][3] == "met"
    assert rows["(c) sensor 10 dB"][3] == "**missed**"
    assert rows["(c) diffuse 0 dB"][3] == "met"
    assert rows["(e) spacing8"][3] == "met" and rows["(e) spacing12"][3] == "**missed**"  # 4.6 > 1.5 x 3.0
    assert rows["(e) mismatch"][3] == "not measured"
    assert rows["(b) clean pyroomacoustics rooms"][3] == "met"
    assert rows["(a) fra"][3] == "**missed**" and rows["(b) pra"][3] == "met"  # 1.2 > 1.1 x 1.0; 3.0 <= 3.08


def test_files_of_one_cached_set_merge_method_by_method():
    first = {"sets": {"diffuse0": pair_set(20.0, 25.0, 99.0, 35.0)}}
    del first["sets"]["diffuse0"]["methods"][SRP_DNN]
    second = {"sets": {"diffuse0": {"methods": {SRP_DNN: {"kind": "extra", "metrics": {"binned_mae_deg": 19.0}}}}}}
    alone = {row[0].split(":")[0]: row for row in target_rows(merged([first]), "model new", None)}
    assert alone["(c) diffuse 0 dB"][3] == "met (SRP-DNN not measured)"  # never a plain "met" without SRP-DNN
    rows = {row[0].split(":")[0]: row for row in target_rows(merged([first, second]), "model new", None)}
    assert rows["(c) diffuse 0 dB"][3] == "**missed**" and "SRP-DNN (pretrained, zero-shot) 19.00" in rows["(c) diffuse 0 dB"][2]


def test_the_count_row_carries_the_sets_resolution_ceiling_and_sensor_noise_says_when_srp_dnn_is_missing():
    ceiling = {"5": {"count_accuracy": 0.89, "f1": 0.96}, "10": {"count_accuracy": 0.815, "f1": 0.93}}
    first = {"sets": {"count": {"methods": {"model new": {"kind": "model", "metrics": {"count_accuracy": 0.7, "f1": 0.8}}},
                                "resolution_ceiling": ceiling},
                      "sensor10": pair_set(5.0, 12.0, 99.0, 30.0)}}
    del first["sets"]["sensor10"]["methods"][SRP_DNN]
    rows = {row[0].split(":")[0]: row for row in target_rows(merged([first, {"sets": {}}]), "model new", None)}
    assert "R 5 deg 89.0%, R 10 deg 81.5%" in rows["(d) count"][2]
    assert rows["(c) sensor 10 dB"][3] == "met (SRP-DNN not measured)"
