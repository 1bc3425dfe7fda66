"""The command-line tools' plumbing, below every package that has a command: diagnostics through `logging` to
stderr (stdout carries only data), the -q / -v flags, progress bars only on a terminal, and the command's name
for a usage line.

`-q` keeps errors only, `-v` adds progress notes, `-vv` debug. Warnings and errors print as one line,
`warning: ...` / `error: ...`, the form the tools' one-line errors have always had. Standard library only: a
command's bad command line fails before torch is imported.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

LEVELS = (logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG)


class OneLineFormatter(logging.Formatter):
    """INFO as the bare message; other levels prefixed `error: `, `warning: `, `debug: `; one line each."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage().replace("\n", " ")
        return message if record.levelno == logging.INFO else f"{record.levelname.lower()}: {message}"


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    """parser -> the same parser with the mutually exclusive -q/--quiet and -v/--verbose (countable) flags."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="errors only (no warnings, notes or progress bars)")
    group.add_argument("-v", "--verbose", action="count", default=0, help="more notes on stderr (-vv: debug)")


def progress_wanted(args: argparse.Namespace) -> bool:
    """Whether to draw progress bars: only on stderr, only when it is a terminal, never with -q."""
    return not args.quiet and sys.stderr.isatty()


def setup_logging(args: argparse.Namespace, default: int = logging.WARNING) -> int:
    """-q / -v flags -> the level of this process's root logger, writing to stderr; returns the level."""
    level = logging.ERROR if args.quiet else LEVELS[min(LEVELS.index(default) + args.verbose, len(LEVELS) - 1)]
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h.formatter, OneLineFormatter)]:
        root.removeHandler(old)  # a second main() in one process (tests) replaces, not doubles, the handler
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    return level


def command_name(module: str) -> str:
    """The command this process was started as, for a usage line: `python -m MODULE` when run as that module,
    `python PATH` for a script path, else the program's name (a console script such as ssl-export)."""
    main = sys.modules.get("__main__")
    if getattr(getattr(main, "__spec__", None), "name", None) == module or not sys.argv or not sys.argv[0]:
        return f"python -m {module}"
    program = Path(sys.argv[0])
    return f"python {sys.argv[0]}" if program.suffix == ".py" else program.name
