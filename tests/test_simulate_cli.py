"""generate_dataset and `python -m simulate`: data contract, reproducibility, reruns, --shards, bad input."""
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import simulate.cli
import ssl_model.localize
from configs import cli_log
from shards.array import SOUND_SPEED, ArraySetup
from simulate import generate_dataset
from simulate.config import GENERATOR_VERSION, SimulateConfig
from shards.files import read_samples
from shards.layout import sidecar_path
from simulate.verify import verify

SMALL = ("shard_size=2", "rt60_range=[0.1,0.2]", "image_count_range=[64,128]")
SPLITS = {"train": 6, "eval": 4}


def files(root: Path) -> dict[str, bytes]:
    """Every shard, sidecar and manifest under root -> bytes (temp and lock files left out)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix in (".tar", ".json")}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "shards"
    return out, generate_dataset(out, splits=SPLITS, overrides=SMALL)


def test_data_contract(dataset):
    out, manifests = dataset
    assert manifests == {"train": out / "train" / "manifest.json", "eval": out / "eval" / "manifest.json"}
    manifest = json.loads(manifests["train"].read_text())
    assert manifest["complete"] and manifest["count"] == 6 and manifest["num_shards"] == 3
    assert manifest["config"]["shard_size"] == 2 and manifest["seed"] == 0 and "splits" not in manifest["config"]
    names = [record["name"] for record in manifest["shards"]]
    assert names == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]
    for record in manifest["shards"]:
        assert json.loads(sidecar_path(out / "train" / record["name"]).read_text()) == record
    keys, metas = [], []
    for name in names:
        for key, parts in read_samples(out / "train" / name):
            keys.append(key)
            assert set(parts) == {"rir.npy", "early.npy", "json"}
            meta = json.loads(parts["json"])
            metas.append(meta)
            rir = np.load(__import__("io").BytesIO(parts["rir.npy"]), allow_pickle=False)
            assert rir.dtype == np.float32 and rir.shape == (2, 2, meta["length"])
            assert meta["length"] == int(np.ceil(meta["rt60"] * meta["sr"] - 1e-9))
    assert keys == [f"train-{i:09d}" for i in range(6)]
    meta = metas[0]
    assert meta["generator_version"] == GENERATOR_VERSION and meta["sr"] == 16000 and meta["seed"] == 0
    assert len(meta["room_dim"]) == 3 and len(meta["array_pos"]) == 3
    assert np.array(meta["mic_pos"]).shape == (2, 3) and np.array(meta["src_pos"]).shape == (2, 3)
    assert set(meta["sources"][0]) == {"azimuth_deg", "lateral_deg", "elevation_deg", "distance_m", "tdoa_s"}
    assert [m["index"] for m in metas] == list(range(6)) and metas[5]["shard"] == 2
    assert verify(out)[0] == []


def test_rerun_is_bit_identical_and_workers_do_not_matter(dataset, tmp_path):
    out, _ = dataset
    other = tmp_path / "shards"
    generate_dataset(other, splits=SPLITS, overrides=SMALL, workers=2)
    assert files(other) == files(out)


def test_rerun_skips_verified_shards_and_repairs_damaged_ones(dataset, tmp_path):
    out, _ = dataset
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    clean = files(copy)
    damaged = copy / "train" / "train-000001.tar"
    damaged.write_bytes(damaged.read_bytes()[:5000])
    (copy / "eval" / "eval-000000.tar").unlink()
    untouched = copy / "train" / "train-000000.tar"
    before = untouched.stat().st_mtime_ns
    generate_dataset(copy, splits=SPLITS, overrides=SMALL)
    assert files(copy) == clean
    assert untouched.stat().st_mtime_ns == before  # verified, not rewritten


def test_shards_option_writes_only_those(dataset, tmp_path):
    out, _ = dataset
    generate_dataset(tmp_path, splits=SPLITS, overrides=SMALL, shards=[1])
    assert sorted(p.name for p in (tmp_path / "train").glob("*.tar")) == ["train-000001.tar"]
    assert sorted(p.name for p in (tmp_path / "eval").glob("*.tar")) == ["eval-000001.tar"]
    manifest = json.loads((tmp_path / "train" / "manifest.json").read_text())
    assert not manifest["complete"] and manifest["present_shards"] == 1
    assert (tmp_path / "train" / "train-000001.tar").read_bytes() == (out / "train" / "train-000001.tar").read_bytes()
    problems, _ = verify(tmp_path)
    assert any("incomplete" in line for line in problems)


def test_splits_draw_from_disjoint_streams_and_seed_matters(dataset, tmp_path):
    out, _ = dataset
    generate_dataset(tmp_path, splits={"train": 2}, overrides=(*SMALL, "seed=1"))
    assert (tmp_path / "train" / "train-000000.tar").read_bytes() != (out / "train" / "train-000000.tar").read_bytes()
    first = lambda split: json.loads(next(read_samples(out / split / f"{split}-000000.tar"))[1]["json"])
    assert first("train")["room_dim"] != first("eval")["room_dim"]


def test_other_config_in_same_folder_is_refused(dataset, tmp_path):
    from configs import ConfigError
    generate_dataset(tmp_path, splits={"eval": 2}, overrides=SMALL)
    with pytest.raises(ConfigError, match="different config"):
        generate_dataset(tmp_path, splits={"eval": 2}, overrides=(*SMALL, "seed=5"))


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "simulate", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})


def test_cli_writes_and_verifies(tmp_path):
    config = tmp_path / "sim.yaml"
    config.write_text("shard_size: 2\nrt60_range: [0.1, 0.2]\n")
    out = tmp_path / "out"
    run = cli("--out", str(out), "--config", str(config), "--splits", "train=2,eval=2", "--workers", "1",
              "--no-progress", "image_count_range=[64,128]")
    assert run.returncode == 0, run.stderr
    assert "train: 2 scenes" in run.stdout and "(complete)" in run.stdout
    manifest = json.loads((out / "train" / "manifest.json").read_text())
    assert manifest["config"]["rt60_range"] == [0.1, 0.2] and manifest["config"]["image_count_range"] == [64, 128]
    check = cli("verify", str(out))
    assert check.returncode == 0, check.stderr
    assert check.stdout.count("ok:") == 2


@pytest.mark.parametrize("args, key", [
    (["bogus_key=1"], "bogus_key"),
    (["rt60_range=[-0.1,0.5]"], "rt60_range"),
    (["room_min=[0.5,0.5,0.5]", "room_max=[0.6,0.6,0.6]"], "room_min"),
    (["distance_range=[20,30]"], "distance_range"),
    (["--splits", "train=x"], "--splits"),
    (["--shards", "a,b"], "--shards"),
    (["--splits", "eval=4", "--shards", "1,7"], "--shards"),
    (["--config", "missing.yaml"], "missing.yaml"),
    (["rt60_range=[0.5,4.0]"], "decay: fra"),
    # Issue 20: values that cannot work are refused before work, not after an OOM or a NaN render.
    (["image_count_range=[100000000,100000000]"], "image_count_range"),
    (["distance_range=[0.2,.inf]"], "distance_range"),
    (["room_max=[1000,1000,1000]"], "room_max"),
    (["reflection_tau=.nan"], "reflection_tau"),
    (["mic_positions=[[0.05,0,0],[0.05,0,0]]"], "mic_positions"),
    (["mic_positions=[[-0.05,0,0],[0.05,0,0],[0.0502,0,0]]"], "coincident"),
    (["sound_speed=.inf"], "sound_speed"),
    (["early_window_ms=[-6,.nan]"], "early_window_ms"),
    (["shard_size=100000"], "GiB to render"),
    # Issue 27: an absurd RT60 is named as itself, not as the memory estimate it also breaks.
    (["rt60_range=[0.1,1000000000]"], "rt60_range: max must be <= 5 s"),
])
def test_cli_bad_input_fails_in_one_line_before_any_work(tmp_path, args, key):
    run = cli("--out", str(tmp_path / "out"), "--no-progress", *args)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and key in lines[0], run.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("url", ["s3://bucket/x", "gs://bucket/shards", "https://host/shards", "pipe:cat"])
def test_cli_refuses_a_url_as_output(tmp_path, url):
    run = cli("--out", url, "--no-progress", "--splits", "train=2", cwd=tmp_path)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and "not to a URL" in lines[0] and "aws s3 cp" in lines[0]
    assert list(tmp_path.iterdir()) == []  # no local folder named `s3:` or `https:`


def test_ranks_write_disjoint_shards_and_the_last_one_completes_the_manifest(dataset, tmp_path):
    out, _ = dataset
    generate_dataset(tmp_path, splits=SPLITS, overrides=SMALL, rank=1, world_size=2)
    assert sorted(p.name for p in (tmp_path / "train").glob("*.tar")) == ["train-000001.tar"]
    assert not json.loads((tmp_path / "train" / "manifest.json").read_text())["complete"]
    generate_dataset(tmp_path, splits=SPLITS, overrides=SMALL, rank=0, world_size=2)
    assert json.loads((tmp_path / "train" / "manifest.json").read_text())["complete"]
    assert files(tmp_path) == files(out)


def test_every_sample_and_manifest_carry_the_array_record(dataset):
    out, manifests = dataset
    record = {"sr": 16000, "mic_spacing": 0.1, "sound_speed": SOUND_SPEED, "num_sources": 2}
    assert json.loads(manifests["train"].read_text())["array"] == record
    for key, parts in read_samples(out / "train" / "train-000000.tar"):
        meta = json.loads(parts["json"])
        assert meta["array"] == record
        assert ArraySetup.from_meta(meta, key) == ArraySetup(16000, 0.1)


def test_a_spacing_range_gives_each_sample_its_own_consistent_record(tmp_path):
    overrides = (*SMALL, "mic_spacing_range=[0.06,0.16]")
    generate_dataset(tmp_path / "a", splits={"train": 4}, overrides=overrides)
    manifest = json.loads((tmp_path / "a" / "train" / "manifest.json").read_text())
    assert manifest["config"]["mic_spacing_range"] == [0.06, 0.16]
    assert manifest["array"]["mic_spacing"] is None and manifest["array"]["mic_spacing_range"] == [0.06, 0.16]
    spacings = []
    for name in ("train-000000.tar", "train-000001.tar"):
        for key, parts in read_samples(tmp_path / "a" / "train" / name):
            meta = json.loads(parts["json"])
            setup = ArraySetup.from_meta(meta, key)  # checks the record against mic_pos, sr and src_pos
            mic, src = np.array(meta["mic_pos"]), np.array(meta["src_pos"])
            path = np.linalg.norm(src - mic[1], axis=1) - np.linalg.norm(src - mic[0], axis=1)
            tdoa = np.array([s["tdoa_s"] for s in meta["sources"]])
            np.testing.assert_allclose(tdoa * setup.sound_speed, path, atol=1e-12)
            assert (np.abs(tdoa) <= setup.mic_spacing / setup.sound_speed + 1e-15).all()
            spacings.append(setup.mic_spacing)
    assert len(spacings) == 4 and all(0.06 <= d <= 0.16 for d in spacings) and len(set(spacings)) == 4
    generate_dataset(tmp_path / "b", splits={"train": 4}, overrides=overrides)
    assert files(tmp_path / "b") == files(tmp_path / "a")


def test_a_folder_belongs_to_one_config(dataset, tmp_path):
    """Issue 20: another seed is refused in another split of the folder, and after a killed run that left only
    sidecars (no manifest yet); nothing is written by the refused run."""
    from configs import ConfigError
    import shutil
    out, _ = dataset
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = files(copy)
    with pytest.raises(ConfigError, match="different config.*seed 0 there, 5 now"):
        generate_dataset(copy, splits={"val": 2}, overrides=(*SMALL, "seed=5"))
    (copy / "dataset.json").unlink()
    for manifest in copy.glob("*/manifest.json"):
        manifest.unlink()  # as a run SIGKILLed before its merge leaves the folder
    with pytest.raises(ConfigError, match=r"-000000.json: .*different config"):
        generate_dataset(copy, splits={"train": 2}, overrides=(*SMALL, "seed=5"))
    assert not (copy / "val").exists()
    generate_dataset(copy, splits=SPLITS, overrides=SMALL)  # the folder's own config resumes
    assert files(copy) == before


@pytest.mark.parametrize("listed", [True, False])
def test_a_rerun_never_launders_a_damaged_shard_whose_sidecar_was_rewritten(dataset, tmp_path, listed):
    """listed: the manifest still holds the shard's record; else the shard is unlisted (a killed run's)."""
    import shutil
    from shards.files import write_sidecar
    out, _ = dataset
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    clean = files(copy)
    shard = copy / "train" / "train-000001.tar"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x04  # inside a float: the tar still parses
    shard.write_bytes(bytes(data))
    sidecar = json.loads(sidecar_path(shard).read_text())
    write_sidecar(shard, {k: v for k, v in sidecar.items() if k not in ("bytes", "sha256", "name")})
    if not listed:
        (copy / "train" / "manifest.json").unlink()
    generate_dataset(copy, splits=SPLITS, overrides=SMALL)
    assert files(copy) == clean


def capped_memory():
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def test_a_split_too_large_to_plan_is_refused_before_any_allocation(tmp_path):
    """Issue 27: `--splits train=1000000000000` printed nothing while plan_split's job list grew without bound.
    Under a 2 GiB address-space cap, a plan that allocated per shard would die of MemoryError (exit 1)."""
    from configs import ConfigError
    from hang_guard import HANG_S
    from simulate.options import resolve_config
    with pytest.raises(ConfigError, match="splits.train: 1,000,000,000,000 scenes"):
        resolve_config(None, {"train": 10**12}, ())
    with pytest.raises(ConfigError, match="splits.train: .* 1,000,001 shards"):
        resolve_config(None, {"train": 10**6 + 1}, ("shard_size=1",))
    resolve_config(None, {"train": 10**6}, ())  # a large but plannable split is fine
    run = subprocess.run([sys.executable, "-m", "simulate", "--out", str(tmp_path / "out"), "--no-progress",
                          "--splits", "train=1000000000000"], capture_output=True, text=True, timeout=HANG_S,
                         preexec_fn=capped_memory, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and "splits.train" in lines[0] and "at most" in lines[0], run.stderr
    assert not (tmp_path / "out").exists()


def test_an_existing_split_is_never_shrunk(dataset, tmp_path):
    """Issue 27: `--splits train=4` on a folder of 12 train scenes exited 0 "(complete)" with a shrunk manifest
    and unlisted shards, and verify then failed. Now it is refused before anything is written, whichever record
    remains (dataset.json, the manifest, the shards themselves); growing a split still works."""
    from configs import ConfigError
    import shutil
    out, _ = dataset
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = files(copy)
    for splits in ({"train": 2, "eval": 4}, {"train": 5}):
        with pytest.raises(ConfigError, match=r"splits.train=\d: .*6 scenes; a split cannot shrink"):
            generate_dataset(copy, splits=splits, overrides=SMALL)
    (copy / "dataset.json").unlink()
    (copy / "train" / "manifest.json").unlink()  # as a killed run leaves it: shards and sidecars only
    with pytest.raises(ConfigError, match=r"train-000002\.(json|tar) is on disk; a split cannot shrink"):
        generate_dataset(copy, splits={"train": 4}, overrides=SMALL)
    run = cli("--out", str(copy), "--no-progress", "--splits", "train=4", *SMALL)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and "cannot shrink" in lines[0], run.stderr
    assert files(copy) == {k: v for k, v in before.items() if k not in ("dataset.json", "train/manifest.json")}
    generate_dataset(copy, splits=SPLITS, overrides=SMALL)
    assert files(copy) == before and verify(copy)[0] == []
    generate_dataset(copy, splits={"train": 8}, overrides=SMALL)  # growing is fine
    assert verify(copy)[0] == [] and json.loads((copy / "train" / "manifest.json").read_text())["count"] == 8


def test_help_names_the_command_that_was_run(monkeypatch, capsys):
    """Issue 27: `ssl-simulate --help` said `python -m simulate`."""
    from simulate.cli import main
    for argv0, subcommand, usage in (("/venv/bin/ssl-simulate", [], "usage: ssl-simulate "),
                                     ("/venv/bin/ssl-simulate", ["verify"], "usage: ssl-simulate verify "),
                                     ("/repo/simulate/__main__.py", ["speech"], "usage: python -m simulate speech ")):
        monkeypatch.setattr(sys, "argv", [argv0, *subcommand, "--help"])
        with pytest.raises(SystemExit) as done:
            main()
        assert done.value.code == 0
        assert capsys.readouterr().out.startswith(usage)


def test_the_verbosity_flags_are_ssl_localizes():
    """One declaration of -q / -v for every tool, below both packages (configs.cli_log, no torch): simulate and
    ssl-localize use the same function."""
    assert simulate.cli.add_verbosity is cli_log.add_verbosity is ssl_model.localize.add_verbosity
    assert simulate.cli.setup_logging is cli_log.setup_logging


def test_help_lists_every_override_key(capsys):
    """ssl-simulate --help names each SimulateConfig field a key=value override may set, with its default."""
    with pytest.raises(SystemExit) as done:
        simulate.cli.main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for field in dataclasses.fields(SimulateConfig):
        assert f"{field.name}=" in text, field.name
    assert "num_sources=2" in text and "decay=fra" in text


def test_quiet_and_verbose_flags_like_ssl_localize(tmp_path):
    """-q: errors only (no note, no progress bar; the results stay on stdout); -v: notes; not both."""
    args = ("--splits", "train=2", *SMALL)
    quiet = cli("--out", str(tmp_path / "q"), "-q", *args)
    assert quiet.returncode == 0 and quiet.stderr == "" and "(complete)" in quiet.stdout, quiet.stderr
    verbose = cli("--out", str(tmp_path / "q"), "--verbose", "--no-progress", *args)
    assert verbose.returncode == 0 and "1 already verified" in verbose.stderr, verbose.stderr
    both = cli("--out", str(tmp_path / "q"), "-q", "-v", *args)
    assert both.returncode == 2 and "not allowed with" in both.stderr
    check = cli("verify", "-q", str(tmp_path / "q"))
    assert check.returncode == 0 and check.stderr == ""
