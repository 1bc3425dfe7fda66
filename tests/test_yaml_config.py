from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from configs import ConfigError, config_to_dict, load_config, parse_overrides


@dataclass
class Inner:
    rate: float = 1.0
    mode: Literal["a", "b"] = "a"

    def validate(self):
        if self.rate <= 0:
            raise ConfigError(f"inner.rate must be > 0, got {self.rate}")


@dataclass
class Outer:
    count: int = 3
    name: Optional[str] = None
    dims: tuple[float, float] = (1.0, 2.0)
    inner: Inner = field(default_factory=Inner)


def test_overrides_parse_nested_yaml_values():
    assert parse_overrides(["a.b=1", "c=[1, 2]", "d=x"]) == {"a": {"b": 1}, "c": [1, 2], "d": "x"}


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("count: 5\ninner:\n  rate: 2\n")
    cfg = load_config(Outer, path, ["inner.mode=b", "dims=[3, 4]"])
    assert cfg.count == 5 and cfg.inner.rate == 2.0 and cfg.inner.mode == "b" and cfg.dims == (3.0, 4.0)
    assert config_to_dict(cfg)["dims"] == [3.0, 4.0]


@pytest.mark.parametrize(
    "override, words",
    [
        ("cuont=1", ["cuont", "accepted keys"]),
        ("inner.mode=c", ["inner.mode", "'a', 'b'"]),
        ("count=abc", ["count", "integer"]),
        ("inner.rate=-1", ["inner.rate", "> 0"]),
        ("dims=[1]", ["dims", "2 values"]),
    ],
)
def test_bad_values_name_the_key(override, words):
    with pytest.raises(ConfigError) as err:
        load_config(Outer, None, [override])
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_errors_name_the_file_or_the_command_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("count: 5\n")
    with pytest.raises(ConfigError) as err:
        load_config(Outer, path, ["inner.rate=-1"])
    assert str(err.value).startswith("command line: ") and str(path) not in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config(Outer, path, ["cuont=1"])
    assert str(err.value).startswith("command line: unknown key 'cuont'")
    with pytest.raises(ConfigError) as err:
        load_config(Outer, path, ["no-equals-sign"])
    assert str(err.value).startswith("command line: ")
    path.write_text("count: 5\ninner:\n  rate: -2\n")
    with pytest.raises(ConfigError) as err:
        load_config(Outer, path, ["dims=[3, 4]"])
    assert str(err.value).startswith(f"{path}: ") and "inner.rate" in str(err.value)
    # An override that repairs the file's value is fine.
    assert load_config(Outer, path, ["inner.rate=1"]).inner.rate == 1.0


def one_line_error(call):
    with pytest.raises(ConfigError) as err:
        call()
    message = str(err.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize("text, words", [
    ("count: !!python/object/apply:os.system ['touch {marker}']\n", ["not a plain YAML config", "python/object"]),
    ("count: [1, 2\n", ["not a plain YAML config", "line 2"]),
    ("count: 1\n  name: x: y\n", ["not a plain YAML config"]),
])
def test_a_yaml_file_with_a_tag_or_broken_syntax_is_one_line_naming_it(tmp_path, text, words):
    """Issue 27: these were yaml.constructor.ConstructorError / ParserError tracebacks."""
    marker = tmp_path / "constructed"
    path = tmp_path / "c.yaml"
    path.write_text(text.format(marker=marker))
    message = one_line_error(lambda: load_config(Outer, path))
    assert message.startswith(f"{path}: ")
    for word in words:
        assert word in message, message
    assert not marker.exists()


def test_an_override_with_a_tag_or_broken_yaml_is_one_line_naming_it(tmp_path):
    marker = tmp_path / "constructed"
    for override in (f"count=!!python/object/apply:os.system ['touch {marker}']", "dims=[1, 2"):
        message = one_line_error(lambda: load_config(Outer, None, [override]))
        assert message.startswith("command line: ") and repr(override) in message, message
    assert not marker.exists()


def cli_run(module, *args, cwd):
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)


@pytest.mark.parametrize("module", ["simulate", "training.train"])
def test_yaml_errors_are_exit_2_in_one_line_for_simulate_and_training(tmp_path, module):
    marker = tmp_path / "constructed"
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"seed: !!python/object/apply:os.system ['touch {marker}']\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("seed: [1, 2\n")
    cases = [("--config", str(bad)), ("--config", str(broken)), (f"seed=!!python/object/apply:os.system ['touch {marker}']",)]
    for args in cases:
        run = cli_run(module, *args, "--run-dir" if module != "simulate" else "--out", str(tmp_path / "out"), cwd=tmp_path)
        lines = run.stderr.strip().splitlines()
        assert run.returncode == 2 and len(lines) == 1 and "not a plain YAML config" in lines[0], run.stderr
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("given", ["tiny", "tiny.yaml", "configs/tiny.yaml"])
def test_shipped_configs_are_found_by_name_from_any_folder(tmp_path, monkeypatch, given):
    """Issue 27: `ssl-train --config tiny` (or configs/tiny.yaml) outside the repository found no file."""
    from configs import shipped_configs
    from training.config import load_train_config
    monkeypatch.chdir(tmp_path)
    assert {"tiny", "real", "simulate", "train"} <= set(shipped_configs())
    assert load_train_config(given, []) == load_train_config(shipped_configs()["tiny"], [])


def test_a_local_file_wins_over_a_shipped_name_and_unknown_names_list_the_shipped_ones(tmp_path, monkeypatch):
    from simulate.config import SimulateConfig
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "simulate.yaml").write_text("seed: 7\n")
    assert load_config(SimulateConfig, "configs/simulate.yaml").seed == 7
    assert load_config(SimulateConfig, "simulate").seed == 0
    for missing in ("nosuch", "configs/nosuch.yaml", "elsewhere/tiny.yaml"):
        message = one_line_error(lambda: load_config(SimulateConfig, missing))
        assert f"config file {missing} does not exist" in message and "tiny" in message, message
