"""Moved to configs.cli_log (command-line plumbing below both simulate and ssl_model); these names stay here for
training/, which still imports them from ssl_model.cli_log until its owner moves that import."""
from configs.cli_log import OneLineFormatter, add_verbosity, progress_wanted, setup_logging

__all__ = ["OneLineFormatter", "add_verbosity", "progress_wanted", "setup_logging"]
