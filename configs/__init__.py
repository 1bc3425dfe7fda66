"""The YAML configs of this repository and the loader that turns them into validated dataclasses."""
from configs.loader import (ConfigError, build_config, config_to_dict, deep_merge, dump_config, load_config, need,
                            parse_overrides)

__all__ = ["ConfigError", "build_config", "config_to_dict", "deep_merge", "dump_config", "load_config", "need",
           "parse_overrides"]
