"""A plain install (a built wheel, not an editable checkout) carries the models and counts with them.

The wheel is built from a copy of the source tree and installed into a fresh virtualenv that sees
this environment's dependencies through a ``.pth`` file but not the checkout: ``agent`` must come
from the wheel, and the default model from its package data.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.vision.models import load_manifest

REPO = Path(__file__).resolve().parents[1]
SOURCE_PACKAGES = ("agent", "provisioning")
COPIED = ["pyproject.toml", "README.md", "agent", "provisioning", "models", "systemd"]


def _declared_packages() -> set[str]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return set(data["tool"]["setuptools"]["packages"])


def test_every_package_folder_is_declared_for_installs() -> None:
    """pyproject.toml lists packages by hand; a folder left out would be missing from installs."""
    on_disk = {
        ".".join(init.parent.relative_to(REPO).parts)
        for top in SOURCE_PACKAGES
        for init in (REPO / top).rglob("__init__.py")
    }
    declared = _declared_packages()
    assert on_disk - declared == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert declared - on_disk == {"agent._models", "provisioning._units"}, (
        "packages declared in pyproject.toml without a folder"
    )


def _build_wheel(out: Path) -> Path:
    source = out / "source"
    source.mkdir()
    for name in COPIED:
        item = REPO / name
        if item.is_dir():
            shutil.copytree(item, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(item, source / name)
    wheels = out / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(wheels), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("retail_edge_agent-*.whl")
    return wheel


def _fresh_venv(root: Path) -> Path:
    """A virtualenv whose own site-packages come first, then (by a .pth file) this environment's."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (Path(purelib) / "test-dependencies.pth").write_text("".join(f"{p}\n" for p in ours), encoding="utf-8")
    return python


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """(the fresh venv, the environment to run it in) with the wheel installed."""
    work = tmp_path_factory.mktemp("install")
    wheel = _build_wheel(work)
    venv = work / "venv"
    python = _fresh_venv(venv)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["XDG_STATE_HOME"] = str(work / "state")  # no models fetched by hand on this machine
    subprocess.run(
        # --force-reinstall: the editable install seen through the .pth has the same version.
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--force-reinstall", str(wheel)],
        check=True,
        capture_output=True,
        cwd=work,
        env=env,
        timeout=300,
    )
    return venv, env


def _run(venv: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        list(args), cwd=venv.parent, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.integration
def test_the_wheel_ships_the_manifest_default_model_and_licence(installed: tuple[Path, dict[str, str]]) -> None:
    venv, env = installed
    probe = (
        "import json, agent; from agent.vision.models import packaged_models_dir, resolve_model, load_manifest; "
        "m = load_manifest(); spec = resolve_model(m.default); d = packaged_models_dir(); "
        "print(json.dumps({'agent': agent.__file__, 'dir': str(d), 'model': str(spec.path), "
        "'files': sorted(p.name for p in d.iterdir())}))"
    )
    found = json.loads(_run(venv, env, str(venv / "bin" / "python"), "-c", probe))
    assert Path(found["agent"]).is_relative_to(venv), "agent was imported from outside the installed wheel"
    assert Path(found["dir"]) == Path(found["agent"]).parent / "_models"
    assert Path(found["model"]).parent == Path(found["dir"])
    assert {"manifest.toml", "ssdlite_mobilenet_v2_pedestrian.onnx", "LICENSE-ssdlite"} <= set(found["files"])


@pytest.mark.integration
@pytest.mark.slow
def test_the_installed_agent_counts_the_sample_with_the_default_model(
    installed: tuple[Path, dict[str, str]], vtest_clip: Callable[[int], Path]
) -> None:
    venv, env = installed
    clip = vtest_clip(30)
    agent_cli = str(venv / "bin" / "retail-agent")
    report = json.loads(_run(venv, env, agent_cli, "count", str(clip), "--line", "door=60,330,700,330", "--json"))
    default = load_manifest()[load_manifest().default]
    assert report["frames"] == 30
    assert report["model"] == {"name": default.name, "sha256": default.sha256}
    listed = _run(venv, env, agent_cli, "models", "list")
    assert default.name in listed


@pytest.mark.integration
def test_the_wheel_ships_the_unit_files_the_installer_puts_in_place(installed: tuple[Path, dict[str, str]]) -> None:
    venv, env = installed
    probe = "from provisioning.install import UNITS, units_dir; d = units_dir(); print(d); print(*UNITS)"
    folder, units = _run(venv, env, str(venv / "bin" / "python"), "-c", probe).splitlines()
    assert Path(folder).is_relative_to(venv)
    for name in units.split():
        assert (Path(folder) / name).read_bytes() == (REPO / "systemd" / name).read_bytes()
