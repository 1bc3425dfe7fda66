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
