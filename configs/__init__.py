"""The YAML configs of this repository and the loader that turns them into validated dataclasses."""
from configs.loader import (ConfigError, ConfigYAMLError, build_config, config_to_dict, deep_merge, dump_config,
                            find_config, load_config, need, parse_overrides, shipped_configs)

__all__ = ["ConfigError", "ConfigYAMLError", "build_config", "config_to_dict", "deep_merge", "dump_config",
           "find_config", "load_config", "need", "parse_overrides", "shipped_configs"]
