"""`python -m simulate` (write RIR shards), `python -m simulate verify DIR`, `python -m simulate speech`.

The same program is installed as `ssl-simulate`; usage and help name the command that was run. Results go to
stdout; warnings and errors to stderr, one line each (`-q`: errors only and no progress bar, `-v`: notes).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import textwrap
import time
from pathlib import Path

from configs import ConfigError, load_config
from configs.cli_log import add_verbosity, setup_logging
from shards.manifest import load_manifest
from simulate.config import SimulateConfig
from simulate.options import local_output_dir, parse_shards, parse_splits, resolve_config
from simulate.verify import verify


def output_folder(out: str) -> Path:
    """--out -> a local Path that is a folder or can become one; ConfigError for a URL or an existing file."""
    path = local_output_dir(out)
    blocker = next((p for p in (path, *path.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ConfigError(f"--out {out}: {blocker} is a file, not a folder; give a folder for the shards")
    return path


def write_error(err: OSError) -> str:
    """An OSError while writing -> one line naming the file and what the system said."""
    where = f"{err.filename}: " if err.filename else ""
    return (f"{where}{err.strerror or err} (errno {err.errno}); finished shards are kept and verified on rerun: "
            f"free space or fix the folder's permissions, then rerun the same command")


def command_name(argv0: str) -> str:
    """sys.argv[0] -> the command as typed: `python -m simulate` for the module, else the script (`ssl-simulate`)."""
    name = Path(argv0).name
    return "python -m simulate" if name in ("__main__.py", "-m", "") else name


def override_keys() -> str:
    """SimulateConfig's fields -> the help's list of `key=default` overrides, wrapped at 116 columns."""
    defaults = SimulateConfig()
    values = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(SimulateConfig)}
    items = [f"{key}={value if isinstance(value, str) else json.dumps(value, separators=(',', ':'))}"
             for key, value in values.items()]
    lines = textwrap.wrap("  ".join(items), width=114, break_long_words=False, break_on_hyphens=False)
    return ("override keys (key=value, the value in YAML; the seed protocol's defaults shown; what each means:\n"
            "shards/prior.py's ScenePrior and simulate/config.py):\n" + "\n".join(f"  {line}" for line in lines))


def generate_main(argv: list[str], prog: str) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=override_keys(),
        description="Write FRA-RIR WebDataset shards and manifests (seed protocol by default). "
                    "Subcommands: `verify DIR`, `speech --audio-dir DIR --out OUT`.")
    parser.add_argument("--out", default="shards", help="output folder (default: shards)")
    parser.add_argument("--config", help="YAML file of SimulateConfig fields")
    parser.add_argument("--splits", help="e.g. train=3000,eval=200")
    parser.add_argument("--workers", type=int, help="processes (default: every core on cpu, 1 on cuda)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda (cuda:LOCAL_RANK when torchrun or srun starts one process per GPU) or cuda:N")
    parser.add_argument("--shards", help="only these shard numbers, e.g. 3,17")
    parser.add_argument("--rank", type=int, help="this task's rank (default: SLURM or torchrun variables, else 0)")
    parser.add_argument("--world-size", type=int, help="number of tasks (default: SLURM or torchrun, else 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_verbosity(parser)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="SimulateConfig overrides")
    args = parser.parse_intermixed_args(argv)

    if (args.rank is None) != (args.world_size is None):
        raise ConfigError("--rank and --world-size go together")
    splits = parse_splits(args.splits) if args.splits is not None else None
    shards = parse_shards(args.shards) if args.shards is not None else None
    cfg = resolve_config(load_config(SimulateConfig, args.config, args.overrides), splits, ())
    output_folder(args.out)
    # torch is imported only now, so bad input fails fast (a genuinely heavy import).
    setup_logging(args)
    from simulate.generate import generate_dataset

    workers = args.workers if args.workers is not None else ((os.cpu_count() or 1) if args.device == "cpu" else 1)
    if workers < 1:
        raise ConfigError(f"--workers: must be >= 1, got {workers}")
    start = time.perf_counter()
    manifests = generate_dataset(args.out, cfg, workers=workers, device=args.device, shards=shards,
                                 rank=args.rank, world_size=args.world_size,
                                 progress=not (args.no_progress or args.quiet))
    elapsed = time.perf_counter() - start
    for split, path in manifests.items():
        manifest = load_manifest(path)
        state = "complete" if manifest["complete"] else (
            f"incomplete: {manifest['present_shards']}/{manifest['num_shards']} shards present "
            "(other ranks or --shards runs write the rest)")
        print(f"{split}: {manifest['present_count']} scenes in {path.parent} ({state})")
    print(f"done in {elapsed:.1f} s; check with: {prog} verify {args.out}")
    return 0


def verify_main(argv: list[str], prog: str) -> int:
    parser = argparse.ArgumentParser(prog=f"{prog} verify",
                                     description="Check shards against manifests; exit 1 naming a bad shard.")
    parser.add_argument("dir", help="output folder (holding split folders) or one split folder")
    parser.add_argument("--regenerate", action="store_true",
                        help="also render every RIR shard again from the config and seed its manifest records and "
                             "compare (takes as long as writing them; catches a shard rewritten together with its sha256)")
    parser.add_argument("--workers", type=int, help="processes for --regenerate (default: every core)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_verbosity(parser)
    args = parser.parse_args(argv)
    problems, summaries = verify(Path(args.dir))
    for line in summaries:
        print(f"ok: {line}")
    if args.regenerate:
        problems += regenerate_main(args)
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    return 1 if problems else 0


def regenerate_main(args: argparse.Namespace) -> list[str]:
    """verify --regenerate: every listed RIR shard rendered again and compared -> problems (summaries printed)."""
    setup_logging(args)
    from simulate.regenerate import regenerate  # torch: heavy

    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise ConfigError(f"--workers: must be >= 1, got {workers}")
    problems, summaries = regenerate(Path(args.dir), workers, progress=not (args.no_progress or args.quiet))
    for line in summaries:
        print(f"regenerated: {line}")
    return problems


def speech_main(argv: list[str], prog: str) -> int:
    parser = argparse.ArgumentParser(prog=f"{prog} speech",
                                     description="Pack wav/flac/ogg files (any rate and channel count; LibriSpeech "
                                                 "layout works) into mono FLAC speech shards.")
    parser.add_argument("--audio-dir", required=True, help="folder of .wav/.flac/.ogg files, any depth")
    parser.add_argument("--out", required=True, help="output folder for speech-{k:06d}.tar and manifest.json")
    parser.add_argument("--shard-size", type=int, default=256, help="files per shard (default 256)")
    parser.add_argument("--sr", type=int, default=16000, help="sample rate of the packed audio (default 16000)")
    parser.add_argument("--include", default="*", help="only files whose path under --audio-dir matches this glob, "
                                                       "e.g. '*/cs/*.ogg' (default: all)")
    parser.add_argument("--no-progress", action="store_true")
    add_verbosity(parser)
    args = parser.parse_args(argv)
    setup_logging(args)
    from simulate.speech import pack_speech  # torchaudio: heavy

    path = pack_speech(Path(args.audio_dir), output_folder(args.out), args.shard_size, args.sr, args.include,
                       progress=not (args.no_progress or args.quiet))
    manifest = load_manifest(path)
    print(f"{manifest['count']} files ({manifest['hours']} h at {manifest['sr']} Hz, {manifest['speakers']} speakers) in "
          f"{manifest['num_shards']} shards under {path.parent}; {len(manifest['skipped'])} skipped")
    return 0


COMMANDS = {"verify": verify_main, "speech": speech_main}


def main(argv: list[str] | None = None) -> int:
    """Dispatch on the first argument; ConfigError -> one line on stderr and exit 2."""
    prog = command_name(sys.argv[0]) if argv is None else "python -m simulate"
    argv = sys.argv[1:] if argv is None else list(argv)
    command = COMMANDS.get(argv[0], generate_main) if argv else generate_main
    try:
        return command(argv[1:] if argv and argv[0] in COMMANDS else argv, prog)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {write_error(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: finished shards are kept; rerun the same command to write the rest", file=sys.stderr)
        return 130
