"""training.eval.evaluate (with its target_scores and report) and training.eval.plots: metrics.json's keys and
values, valid PNGs, the CLI's errors."""
import json
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from simulate import generate_dataset
from ssl_model import SSLModel
from ssl_model.metrics import localization_metrics
from training.eval import plots
from training.checkpoint import CONFIG, WEIGHTS, export_weights, run_config
from training.config import dump_config, load_train_config
from training.eval.report import write_plots
from training.eval.target_scores import reshape_metrics, unique_scenes
from training.eval.evaluate import evaluate_run, main

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
METRICS = ("binned_mae_deg", "mae_deg", "acc5", "acc10")


def assert_png(path) -> None:
    path = Path(path)
    assert path.read_bytes()[:8] == PNG_MAGIC, path
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300, (path, image.shape)
    assert image[..., :3].std() > 0.01, f"{path} looks blank"


def untrained_run(run: Path, shards: Path, overrides: list[str], seed: int) -> Path:
    """A run folder holding a randomly initialized configs/tiny.yaml model and its config."""
    run.mkdir()
    cfg = load_train_config(ROOT / "configs" / "tiny.yaml", [f"run.dir={run}", f"data.shards={shards}", *overrides])
    torch.manual_seed(seed)
    export_weights(SSLModel(cfg.model), cfg, run / WEIGHTS)
    dump_config(cfg, run / CONFIG)
    return run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Small shards (8 train, 40 eval scenes) and an untrained tiny run with a hand-written metrics.jsonl."""
    root = tmp_path_factory.mktemp("eval")
    shards = root / "shards"
    generate_dataset(shards, splits={"train": 8, "eval": 40}, overrides=("shard_size=20",), workers=1)
    run = untrained_run(root / "run", shards, ["eval.num_samples=48", "eval.batch_size=16"], seed=0)
    lines = [{"event": "start", "step": 0}]
    for step in range(10, 101, 10):
        lines.append({"event": "train", "step": step, "loss": 7.0 / (1 + step / 30), "lr": 1e-3})
        if step % 50 == 0:
            lines.append({"event": "eval", "step": step, "binned_mae_deg": 40 - step / 5, "mae_deg": 40 - step / 5,
                          "acc5": step / 200, "acc10": step / 150})
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n{\"event\": \"tra")  # cut line
    return run, shards


def test_evaluate_writes_metrics_and_plots(tiny_run, capsys):
    run, shards = tiny_run
    assert main(["--run", str(run), "-q"]) == 0
    printed, notes = capsys.readouterr()
    assert notes == ""  # -q: no progress bars, no notes; the data stays on stdout
    assert "lateral" in printed and "azimuth" in printed and "metrics.json" in printed
    report = json.loads((run / "eval" / "metrics.json").read_text())
    assert report["model_target"] == "lateral"
    assert report["counts"] == {"mixtures": 48, "sources": 96, "distinct_eval_scenes": 40}
    assert "synthetic" in report["speech_source"]
    manifest = report["eval_manifest"]
    assert manifest["path"].endswith("eval/manifest.json") and len(manifest["sha256"]) == 64
    for target in ("lateral", "azimuth"):
        res = report["targets"][target]
        methods = ("model", "gcc_phat", "oracle_tdoa") if target == "lateral" else ("gcc_phat", "oracle_tdoa")
        for method in methods:
            scores = res[method]
            assert scores["count"] == 48
            for name in METRICS:
                assert np.isfinite(scores[name])
                for slot in ("slot1", "slot2"):
                    assert np.isfinite(scores["per_slot"][slot][name])
            assert 0 <= scores["acc5"] <= scores["acc10"] <= 1
            assert {"by_rt60", "by_distance", "by_elevation", "by_separation"} <= set(scores)
        for floor in ("oracle_floor_binned_mae_deg", "chance_binned_mae_deg"):
            assert set(res[floor]) == {"slot1", "slot2", "mean"} and res[floor]["mean"] >= 0
    assert report["targets"]["azimuth"]["model"] is None and "model_note" in report["targets"]["azimuth"]
    # The TDOA fixes the lateral angle, not the azimuth: the oracle's floor must show it.
    lateral_floor = report["targets"]["lateral"]["oracle_floor_binned_mae_deg"]["mean"]
    azimuth_floor = report["targets"]["azimuth"]["oracle_floor_binned_mae_deg"]["mean"]
    assert lateral_floor < azimuth_floor
    expected = {"pred_vs_true", "error_cdf_lateral", "error_cdf_azimuth", "error_vs_factors", "confusion",
                "training_curves"}
    assert set(report["plots"]) == expected
    for path in report["plots"].values():
        assert_png(path)


def test_evaluate_errors_are_one_line(tmp_path, tiny_run, capsys):
    run, _ = tiny_run
    assert main(["--run", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert main(["--run", str(run), "--shards", str(tmp_path / "no-shards"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_unique_scenes_maps_repeats():
    metas = [{"shard": "a", "key": k, "index": i} for k, i in (("x", 0), ("y", 1), ("x", 0))]
    scenes, index = unique_scenes(metas)
    assert len(scenes) == 2 and index.tolist() == [0, 1, 0]


def test_reshape_metrics():
    flat = {"count": 4.0, **{f"{m}{s}": 1.0 for m in METRICS for s in ("", "_slot1", "_slot2")}, "by_rt60": {}}
    out = reshape_metrics(flat)
    assert out["count"] == 4 and set(out["per_slot"]) == {"slot1", "slot2"} and "by_rt60" in out


def test_plots_from_plain_arrays(tmp_path):
    rng = np.random.default_rng(0)
    true = np.sort(rng.uniform(0, 180, (60, 2)), axis=1)
    pred = np.clip(true + rng.normal(0, 5, true.shape), 0, 180)
    paths = [
        plots.pred_vs_true(true, {"model": pred, "GCC-PHAT": pred[::-1]}, tmp_path / "a.png", target="lateral"),
        plots.error_cdf({"model": pred - true, "oracle": np.zeros(3)}, tmp_path / "b.png", target="azimuth"),
        plots.error_vs_factors({"RT60 (s)": np.repeat(rng.uniform(0.1, 0.7, (60, 1)), 2, 1)},
                               {"model": pred - true}, tmp_path / "c.png", target="lateral"),
        plots.confusion((true // 5).astype(int), (pred // 5).astype(int), 36, 5.0, tmp_path / "d.png", target="lateral"),
        plots.training_curves([{"step": s, "train loss": 1 / (s + 1), "eval acc5": s / 100} for s in range(0, 100, 10)],
                              tmp_path / "e.png"),
        plots.training_curves([], tmp_path / "f.png"),
    ]
    for path in paths:
        assert_png(path)


def test_two_models_scored_on_the_same_mixtures(tiny_run, tmp_path):
    run, shards = tiny_run
    # Another model trained with a longer clip and another eval seed: scored on the first run's eval set instead.
    other = untrained_run(tmp_path / "other", shards, ["speech.clip_seconds=1.5", "eval.seed=99"], seed=1)
    mine = evaluate_run(run, progress=False, out_dir=tmp_path / "mine")
    own = evaluate_run(other, progress=False, out_dir=tmp_path / "own")
    alike = evaluate_run(other, progress=False, out_dir=tmp_path / "alike", eval_like=run)
    gcc = lambda report: report["targets"]["lateral"]["gcc_phat"]["per_slot"]  # noqa: E731
    # GCC-PHAT sees the waves only: equal on the same mixtures, different on the other run's own eval set.
    assert gcc(alike) == gcc(mine) and gcc(own) != gcc(mine)
    assert alike["counts"] == mine["counts"] and alike["model_target"] == "lateral"


def test_a_run_without_a_training_log_gets_no_curves_figure(tmp_path):
    """The shipped model has no metrics.jsonl: no empty "nothing logged" figure; the azimuth CDF says why it has
    no model curve."""
    rng = np.random.default_rng(2)
    truth = {t: np.sort(rng.uniform(0, 180, (30, 2)), axis=1) for t in ("lateral", "azimuth")}
    preds = {"lateral": {"model": truth["lateral"] + 1, "GCC-PHAT": truth["lateral"] - 2},
             "azimuth": {"GCC-PHAT": truth["azimuth"] + 3}}
    classes = {"model": (truth["lateral"] // 5).astype(int)}
    factors = {"rt60": rng.uniform(0.1, 0.7, 30)}
    paths = write_plots(tmp_path, "lateral", truth, preds, classes, factors, tmp_path / "no-metrics.jsonl")
    assert set(paths) == {"pred_vs_true", "error_cdf_lateral", "error_cdf_azimuth", "error_vs_factors", "confusion"}
    assert not (tmp_path / "training_curves.png").exists()
    for path in paths.values():
        assert_png(path)


def test_binned_error_of_the_legend_is_the_metric_evaluate_prints():
    """plots.binned_abs_error (numpy, the pred_vs_true legend) == ssl_model.metrics' binned MAE, edges included."""
    rng = np.random.default_rng(1)
    true = np.sort(rng.uniform(0, 180, (200, 2)), axis=1)
    true[:3] = [[0.0, 180.0], [5.0, 175.0], [4.999, 90.0]]  # bin edges and the closed end at 180
    pred = np.clip(true + rng.normal(0, 8, true.shape), 0, 180)
    flat = localization_metrics(torch.from_numpy(pred), torch.from_numpy(true), {})
    for slot in (0, 1):
        legend = plots.binned_abs_error(pred[:, slot], true[:, slot], 5.0).mean()
        assert legend == pytest.approx(flat[f"binned_mae_deg_slot{slot + 1}"], abs=1e-9)


def test_every_factor_bin_counts_its_sources():
    x = np.array([0.1, 0.1, 0.2, 0.55, 0.7, 0.7, 0.7])
    centers, means, _, counts = plots._binned_means(x, np.arange(7.0), np.linspace(0.1, 0.7, 4))
    assert counts.tolist() == [3, 0, 4] and counts.sum() == x.size
    assert means[0] == pytest.approx(1.0) and np.isnan(means[1]) and means[2] == pytest.approx(4.5)


def spoiled_run(run: Path, shards: Path, spoil) -> Path:
    """An untrained tiny run whose model is changed by `spoil(model)` before its weights are written (as a
    diverged or damaged run's would be), bypassing the exporter's own check."""
    untrained_run(run, shards, [], seed=0)
    with safe_open(str(run / WEIGHTS), framework="pt") as handle:
        metadata, model = handle.metadata(), SSLModel(run_config(run).model)
    model.load_state_dict(load_file(str(run / WEIGHTS)))
    with torch.no_grad():
        spoil(model)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(run / WEIGHTS), metadata=metadata)
    return run


def test_a_model_with_nan_weights_is_refused_in_one_line(tiny_run, tmp_path, capsys):
    _, shards = tiny_run
    run = spoiled_run(tmp_path / "nan", shards, lambda model: model.head.weight.view(-1)[7:9].fill_(float("nan")))
    assert main(["--run", str(run), "--num-samples", "8", "-q"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1, err
    assert "head.weight" in err and "not finite" in err and "2 NaN" in err
    assert not (run / "eval").exists()


def test_a_model_whose_outputs_overflow_fails_instead_of_scoring_them(tiny_run, tmp_path, capsys):
    _, shards = tiny_run
    # Finite weights (they load) whose sums overflow float32: every output is NaN. Before this check, evaluate
    # reported the decoded NaNs as errors of about 4.6e19 degrees and exited 0.
    run = spoiled_run(tmp_path / "overflow", shards, lambda model: model.patch_embed[1].weight.fill_(1e38))
    assert main(["--run", str(run), "--num-samples", "8", "-q"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1, err
    assert "outputs" in err and ("NaN" in err or "not finite" in err)
    assert not (run / "eval" / "metrics.json").exists()


def test_a_counting_model_is_refused_in_one_line_not_scored_on_two_slots(tiny_run, tmp_path, capsys):
    _, shards = tiny_run
    run = untrained_run(tmp_path / "counting", shards, ["model.num_slots=3", "model.count_head=true",
                                                         "mix.talker_probs=[0.25,0.25,0.25,0.25]"], seed=0)
    assert main(["--run", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "counting model" in err and "bench_accuracy" in err
