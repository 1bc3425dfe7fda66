"""The documentation's commands, run as a reader would paste them.

A code block is runnable when the line just above its fence is `<!-- runnable -->` (invisible on GitHub). Every
shell command of the README's runnable blocks runs, block after block, in one temporary folder that links the
repository folders the commands name (examples/, configs/, ...) and keeps what they write (shards/, runs/, PNGs);
each model card's runnable blocks (ssl_model/pretrained/*/README.md) run the same way. Commands that would take
hours as written run with the small additions of OVERRIDES; SKIPS lists any left out, with the reason; both are
checked against the documents, so neither can go stale silently. The quickstart is checked on its own (in the
quick pass): the sample recording's two talkers must be found within 5 degrees of the true angles the README
states, by its command and by its Python three-liner.

Until the default model (ssl_model/pretrained/wide/) is shipped, commands that rely on it get `--model two-talker`
(Python: `from_pretrained("two-talker")`); once it is there they run as written.
"""
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ssl_model.loading import PRETRAINED_DIR, PRETRAINED_NAMES, WEIGHTS

from hang_guard import HANG_S
from run_helpers import ROOT

README = ROOT / "README.md"
CARDS = sorted(PRETRAINED_DIR.glob("*/README.md"))
SAMPLE = ROOT / "examples" / "sample"
TRUTH = json.loads((SAMPLE / "two_talkers.json").read_text())
TOLERANCE_DEG = 5.0
MARK = "<!-- runnable -->"
# What the commands may read from the repository; they run in a temporary folder holding links to these.
LINKED = ("examples", "configs", "training", "ssl_model", "benchmarks", "accelerate_config.yaml")

# A command as written (its trailing comment dropped) -> what is appended to it here: the same program, a
# bounded amount of work. Each key must occur in a runnable block (test_the_override_and_skip_lists_match_the_docs).
OVERRIDES = {
    # README, Simulate: 3,200 rooms as written (seconds, but 640 MB); 40 + 20 rooms here
    "ssl-simulate --out shards/": "--splits train=40,eval=20 shard_size=20 --no-progress",
    # README, Train: 600 steps as written (minutes); 4 steps here, saving a state to resume from
    "ssl-train --config configs/tiny.yaml --shards shards/ --run-dir runs/tiny":
        "--steps 4 run.save_every=2 eval.every=4 eval.num_samples=16 eval.batch_size=16 run.progress=false",
    # two-talker card: 200 held-out rooms and 200 mixtures as written; 20 of each here
    "ssl-simulate --out shards/ --splits eval=200": "--splits eval=20 --no-progress",
    "ssl-evaluate --run ssl_model/pretrained/two-talker --shards shards/ --speech synthetic --out runs/eval_two_talker/":
        "--num-samples 20 --no-progress",
}
# A command as written -> why it does not run here. Empty today: every runnable command runs (some with the
# additions above). A command that needs hours or a GPU belongs in a block without the marker, or here.
SKIPS: dict[str, str] = {}


def real_model_shipped() -> bool:
    return (PRETRAINED_DIR / PRETRAINED_NAMES[0] / WEIGHTS).is_file()


def runnable_blocks(markdown: Path, section: str | None = None) -> list[tuple[str, str]]:
    """A markdown file (or its `section`, up to the next `## `) -> its runnable blocks as (language, code)."""
    text = markdown.read_text()
    if section is not None:
        text = text.split(section, 1)[1].split("\n## ", 1)[0]
    return re.findall(re.escape(MARK) + r"\n```(\w+)\n(.*?)```", text, flags=re.S)


def shell_commands(code: str) -> list[str]:
    """A shell block -> its commands: continuation lines joined, comment lines and trailing comments dropped."""
    joined = re.sub(r"\s*\\\n\s*", " ", code)
    commands = []
    for line in joined.splitlines():
        line = re.sub(r"\s+#\s.*$", "", line).strip()
        if line and not line.startswith("#"):
            commands.append(line)
    return commands


def documented_commands() -> list[tuple[Path, str]]:
    """Every shell command of every runnable block, README first, then the model cards: (file, command)."""
    found = []
    for markdown in (README, *CARDS):
        for language, code in runnable_blocks(markdown):
            assert language in ("bash", "sh"), f"{markdown}: a runnable block must be bash, not {language}"
            found += [(markdown, command) for command in shell_commands(code)]
    return found


def as_run_here(command: str) -> str:
    """A command as written -> as it runs here: its OVERRIDES added; the two-talker model where it relies on the
    default model and that is not shipped yet."""
    command = f"{command} {OVERRIDES[command]}" if command in OVERRIDES else command
    localizes = re.match(r"(ssl-localize|python -m ssl_model\.localize|ssl-export|python -m ssl_model\.export)\b",
                         command)
    if localizes and not real_model_shipped() and not re.search(r"--(model|run)\b", command):
        command += " --model two-talker"
    return command


def python_here(code: str) -> str:
    return code if real_model_shipped() else code.replace("from_pretrained()", 'from_pretrained("two-talker")')


def scratch(folder: Path) -> Path:
    """A working folder holding links to the repository folders the commands read."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        (folder / name).symlink_to(ROOT / name)
    return folder


def shell_env() -> dict[str, str]:
    """The venv's scripts and python first on PATH; the repository importable; the working folder never on
    sys.path (it holds a data folder named shards/, which must not shadow the package)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg", PYTHONSAFEPATH="1",
               PYTHONWARNINGS="ignore::DeprecationWarning")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_shell(command: str, folder: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", "-c", f"set -eo pipefail; {command}"], cwd=folder, env=shell_env(),
                          capture_output=True, text=True, timeout=HANG_S)
    assert proc.returncode == 0, f"{command}\nexit {proc.returncode}\n{proc.stderr[-3000:]}"
    return proc


def matched_errors(found: list[float], truth: list[float]) -> list[float]:
    """Both sorted ascending -> |found - truth| pair by pair (the same number of each asserted)."""
    assert len(found) == len(truth), (found, truth)
    return [abs(a - b) for a, b in zip(sorted(found), sorted(truth))]


def files_under(*folders: Path) -> set[Path]:
    return {p for folder in folders for p in folder.rglob("*")}


def not_ignored(folder: Path) -> list[str]:
    """The files a scratch folder's commands wrote (its links to the repository aside), as paths relative to it,
    that the repository's .gitignore would not cover were they written in the checkout."""
    written = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not (Path(root) / d).is_symlink()]
        written += [str((Path(root) / f).relative_to(folder)) for f in files if not (Path(root) / f).is_symlink()]
    proc = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "--no-index", "--stdin"], input="\n".join(written),
                          capture_output=True, text=True)
    assert proc.returncode in (0, 1), proc.stderr
    return sorted(set(written) - set(proc.stdout.splitlines()))


def test_the_quickstart_finds_the_samples_two_talkers(tmp_path, monkeypatch):
    """The README's quickstart: its command on the shipped sample and its Python lines, each finding both talkers
    within 5 degrees of the angles the README states (the ones examples/make_sample.py placed them at)."""
    section = README.read_text().split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    truth = TRUTH["lateral_deg"]
    assert f"{truth[0]:g} and {truth[1]:g} degrees" in section, "the quickstart states the sample's true angles"
    blocks = runnable_blocks(README, "## Quickstart")
    assert len(blocks) == 1, "the quickstart has one runnable shell block"
    (command,) = shell_commands(blocks[0][1])
    assert "examples/sample/two_talkers.wav" in command and "--plot" in command

    folder = scratch(tmp_path / "shell")
    printed = json.loads(run_shell(as_run_here(command), folder).stdout)
    assert printed["count"] == 2, printed["angles_deg"]
    assert max(matched_errors(printed["angles_deg"], truth)) < TOLERANCE_DEG, (printed["angles_deg"], truth)
    picture = folder / command.split("--plot", 1)[1].split()[0]
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    code = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(code) == 1 and len(code[0].strip().splitlines()) == 3, "the quickstart's Python is three lines"
    monkeypatch.chdir(scratch(tmp_path / "python"))
    names = {"__name__": "quickstart"}
    exec(compile(python_here(code[0]), "README.md (Quickstart)", "exec"), names)
    result = names["result"]
    assert result.count == 2 and max(matched_errors(list(result.angles_deg), truth)) < TOLERANCE_DEG, \
        result.angles_deg


def python_blocks(markdown: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown.read_text(), flags=re.S)


@pytest.mark.parametrize("markdown", [README, *CARDS], ids=["README", *(card.parent.name for card in CARDS)])
def test_every_python_block_runs_as_written(markdown, tmp_path, monkeypatch, capsys):
    """Each ```python block a reader can paste runs from the repository's root folder, as written (the files it
    reads are the repository's; what it writes lands in a scratch folder)."""
    blocks = python_blocks(markdown)
    assert blocks, f"{markdown}: no Python block"
    monkeypatch.chdir(scratch(tmp_path / "python"))
    for k, code in enumerate(blocks):
        exec(compile(python_here(code), f"{markdown} (Python block {k + 1})", "exec"), {"__name__": "docs"})
    assert capsys.readouterr().out, "the blocks print what they show"
    assert not not_ignored(tmp_path / "python")


def test_the_sample_is_what_its_readme_and_json_say():
    info = sf.info(str(SAMPLE / "two_talkers.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 2, "PCM_16")
    assert abs(info.duration - TRUTH["seconds"]) < 1e-3 and (SAMPLE / "two_talkers.wav").stat().st_size < 300_000
    wave, _ = sf.read(str(SAMPLE / "two_talkers.wav"))
    assert np.abs(wave).max() > 0.1 and not np.allclose(wave[:, 0], wave[:, 1])  # not silent, not mono
    card = (SAMPLE / "README.md").read_text()
    for angle in TRUTH["lateral_deg"]:
        assert f"**{angle:g} degrees**" in card
    assert TRUTH["mic_spacing_m"] == 0.1 and "GPL" in card and "fillets-ng-data-nl" in card
    # the stated angles are the geometry's: lateral angle of each talker from the array centre, mic 0 -> mic 1 = +x
    centre = np.array(TRUTH["array_centre_m"])
    for talker in TRUTH["talkers"]:
        v = np.array(talker["position_m"]) - centre
        assert abs(np.degrees(np.arctan2(np.hypot(v[1], v[2]), v[0])) - talker["lateral_deg"]) < 0.01


@pytest.mark.skipif(not (ROOT / "shards" / "speech" / "eval" / "manifest.json").is_file(),
                    reason="shards/speech/eval is absent (bash examples/prepare_speech.sh builds it)")
def test_make_sample_writes_the_committed_sample_again(tmp_path):
    spec = importlib.util.spec_from_file_location("make_sample", ROOT / "examples" / "make_sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    record = module.make(ROOT / "shards" / "speech" / "eval", tmp_path)
    again, _ = sf.read(str(tmp_path / "two_talkers.wav"), dtype="int16")
    shipped, _ = sf.read(str(SAMPLE / "two_talkers.wav"), dtype="int16")
    assert again.shape == shipped.shape and np.abs(again.astype(int) - shipped).max() <= 1
    assert record["lateral_deg"] == TRUTH["lateral_deg"] and record["talkers"] == TRUTH["talkers"]


def test_the_override_and_skip_lists_match_the_docs():
    """Every entry of OVERRIDES and SKIPS names a command of a runnable block, and the docs hold runnable blocks:
    the quickstart, and one for each main job."""
    commands = [command for _, command in documented_commands()]
    for listed in (*OVERRIDES, *SKIPS):
        assert listed in commands, f"{listed!r} is in OVERRIDES or SKIPS but in no runnable block"
    for job in ("ssl-localize examples/sample/two_talkers.wav", "ssl-simulate", "ssl-train", "ssl-evaluate"):
        assert any(command.startswith(job) for command in commands), job
    assert shell_commands("a \\\n  b  # note\n# only a comment\n\nc") == ["a b", "c"]


@pytest.mark.slow  # simulate, train 4 steps, resume, evaluate, localize: about a minute on 2 cores
def test_every_runnable_readme_command_runs(tmp_path):
    folder = scratch(tmp_path / "readme")
    before = files_under(PRETRAINED_DIR, SAMPLE)
    ran = 0
    for markdown, command in documented_commands():
        if markdown == README and command not in SKIPS:
            run_shell(as_run_here(command), folder)
            ran += 1
    assert ran >= 6
    assert (folder / "runs" / "tiny" / "eval" / "metrics.json").is_file()
    assert files_under(PRETRAINED_DIR, SAMPLE) == before, "a documented command wrote into the repository"
    assert not not_ignored(folder), f"the README's commands leave files git would show: {not_ignored(folder)}"


@pytest.mark.slow  # the two-talker card: 20 rooms, an evaluation of 20 mixtures, a localize and an export
@pytest.mark.parametrize("card", CARDS, ids=[card.parent.name for card in CARDS])
def test_every_runnable_model_card_command_runs(card, tmp_path):
    commands = [c for m, c in documented_commands() if m == card and c not in SKIPS]
    assert commands, f"{card}: no runnable block; mark its shell commands' block with {MARK} on the line above"
    folder = scratch(tmp_path / card.parent.name)
    before = files_under(PRETRAINED_DIR, SAMPLE)
    for command in commands:
        run_shell(as_run_here(command), folder)
    assert files_under(PRETRAINED_DIR, SAMPLE) == before, "a documented command wrote into the repository"
    assert not not_ignored(folder), f"{card}'s commands leave files git would show: {not_ignored(folder)}"


def test_scripts_the_docs_call_are_installed():
    """The ssl-* scripts the runnable commands start sit beside this Python (make install puts them there)."""
    scripts = {command.split()[0] for _, command in documented_commands() if command.startswith("ssl-")}
    here = Path(sys.executable).parent
    missing = [s for s in sorted(scripts) if shutil.which(s, path=str(here)) is None]
    assert not missing, f"not installed beside {sys.executable}: {missing} (run `make install`)"
