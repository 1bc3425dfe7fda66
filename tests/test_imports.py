"""Every module of the project imports, and the installed torch/torchaudio are the locked pair.

A compiled extension that does not load (torchaudio beside a torch it was not built for) fails here, in one
test that names the module, instead of as a collection error in every test file that imports it.
"""
import ast
import importlib
import importlib.metadata
import pkgutil
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("configs", "shards", "simulate", "ssl_model", "training")


def project_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        names.append(package)
        names += [info.name for info in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}.")]
    return sorted(names)


def test_the_package_list_covers_the_tree():
    found = {path.parent.name for path in ROOT.glob("*/__init__.py")}
    assert found == set(PACKAGES)


@pytest.mark.parametrize("name", project_modules())
def test_module_imports(name):
    importlib.import_module(name)


def imported_packages(package: str) -> dict[str, set[str]]:
    """A package folder -> {module file: the project packages it imports (top level, lazily or not)}."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names & set(PACKAGES) - {package}
    return found


@pytest.mark.parametrize("package, forbidden", [("configs", set(PACKAGES)), ("shards", set(PACKAGES)),
                                                ("simulate", {"ssl_model", "training"}),
                                                ("training", {"simulate"})])
def test_dependencies_run_one_way(package, forbidden):
    """The README's layering: configs and shards import no other project package; the simulator knows neither the
    model nor training (its command-line plumbing is configs.cli_log's); training knows the shard contract, never
    the simulator."""
    wrong = {path: sorted(names & forbidden) for path, names in imported_packages(package).items() if names & forbidden}
    assert not wrong, f"{package} imports {wrong}"


def imported_training_modules(folder: str) -> dict[str, set[str]]:
    """A folder under training/ -> {module file: the training modules it imports (dotted, lazily or not)}."""
    found = {}
    for path in sorted((ROOT / "training" / folder).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        found[str(path.relative_to(ROOT))] = {name for name in names if name.startswith("training.")}
    return found


@pytest.mark.parametrize("folder, allowed", [("data", ("training.config", "training.data")),
                                             ("eval", ("training.config", "training.checkpoint", "training.data",
                                                       "training.eval"))])
def test_training_wings_run_one_way(folder, allowed):
    """training.data knows only the run config; training.eval reads data and checkpoints; neither imports the loop."""
    wrong = {path: sorted(name for name in names if not name.startswith(allowed))
             for path, names in imported_training_modules(folder).items()}
    wrong = {path: names for path, names in wrong.items() if names}
    assert not wrong, f"training/{folder} imports {wrong}"


def test_torchaudio_compiled_part_loads_and_filters():
    import torch
    import torchaudio.functional as AF

    impulse = torch.zeros(1, 8)
    impulse[0, 0] = 1.0
    out = AF.lfilter(impulse, torch.tensor([1.0, -0.5]), torch.tensor([1.0, 0.0]), clamp=False)
    assert torch.allclose(out[0, :3], torch.tensor([1.0, 0.5, 0.25]))


def locked_versions() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line.strip())
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def test_torch_and_torchaudio_are_the_locked_exact_pair():
    pins = locked_versions()
    declared = (ROOT / "pyproject.toml").read_text()
    for name in ("torch", "torchaudio"):
        assert f'"{name}=={pins[name]}"' in declared, f"pyproject.toml and constraints.txt disagree on {name}"
        installed = importlib.metadata.version(name).split("+")[0]
        assert installed == pins[name], f"{name} {installed} installed, {pins[name]} locked: run `make install`"
