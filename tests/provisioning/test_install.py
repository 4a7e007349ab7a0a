"""The installer on a staged root: what it puts where, that a second run changes nothing, and
that an upgrade keeps the state directory.

These runs use ``--root`` with ``--no-venv``: users, ``chgrp``, ``systemctl`` and the virtualenv
commands are recorded in ROOT/install-plan.txt, not run, so the tests check the files, modes and
the recorded commands. The wheel itself is covered by tests/test_packaging.py (it carries the
unit files the installer writes); a run on a real machine is not part of the test suite.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from agent.config import load_config
from agent.config_files import CREDENTIALS_VARIABLE
from agent.storage.database import open_database
from provisioning.cli import main
from provisioning.install import units_dir


def _snapshot(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path under ``root`` with its mode and, for files, its bytes."""
    found: dict[str, tuple[int, bytes | None]] = {}
    for path in sorted(root.rglob("*")):
        mode = path.lstat().st_mode & 0o7777
        found[str(path.relative_to(root))] = (mode, path.read_bytes() if path.is_file() else None)
    return found


def _enroll(tmp_path: Path, out: str) -> Path:
    argv = ["device", "enroll", "--tenant", "acme", "--store", "s12", "--device", "kiosk-7"]
    assert main([*argv, "--ca", str(tmp_path / "ca"), "--broker", "broker.s12", "--out", str(tmp_path / out)]) == 0
    return tmp_path / out / "kiosk-7.tar"


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    assert main(["pki", "init", "--out", str(tmp_path / "ca")]) == 0
    return _enroll(tmp_path, "bundles")


def _install(bundle: Path, root: Path, *extra: str) -> int:
    return main(["install", str(bundle), "--root", str(root), "--no-venv", *extra])


def test_install_puts_config_credentials_and_units_in_place_with_their_modes(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    assert _install(bundle, root) == 0
    tree = _snapshot(root)
    assert tree["etc/retail-agent"][0] == 0o750
    assert tree["etc/retail-agent/agent.toml"][0] == 0o640
    assert tree["etc/retail-agent/credentials"][0] == 0o700
    for name in ("ca.crt", "mqtt.crt", "mqtt.key", "no.key"):
        assert tree[f"etc/retail-agent/credentials/{name}"][0] == 0o600
    with tarfile.open(bundle) as archive:
        member = archive.extractfile("kiosk-7/mqtt.key")
        assert member is not None
        assert tree["etc/retail-agent/credentials/mqtt.key"][1] == member.read()
    for unit in ("retail-agent.service", "retail-agent-console.service"):
        assert tree[f"etc/systemd/system/{unit}"] == (0o644, (units_dir() / unit).read_bytes())
    plan = (root / "install-plan.txt").read_text().splitlines()
    assert any(line.startswith("useradd --system") and line.endswith(" retail-agent") for line in plan)
    assert "python3 -m venv /opt/retail-agent" in plan
    assert plan[-2:] == ["systemctl enable retail-agent.service", "systemctl restart retail-agent.service"]
    assert "PRIVATE KEY" not in capsys.readouterr().out


def test_the_installed_config_validates_as_the_service_sees_it(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under systemd the TLS files come from $CREDENTIALS_DIRECTORY (LoadCredential=)."""
    root = tmp_path / "root"
    assert _install(bundle, root) == 0
    credentials = root / "etc" / "retail-agent" / "credentials"
    monkeypatch.setenv(CREDENTIALS_VARIABLE, str(credentials))
    config = load_config(root / "etc" / "retail-agent" / "agent.toml")
    assert config.mqtt is not None
    assert config.mqtt.key_file == credentials / "mqtt.key"
    assert config.device.id == "kiosk-7"


def test_a_second_run_changes_nothing(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    assert _install(bundle, root) == 0
    first = _snapshot(root)
    capsys.readouterr()
    assert _install(bundle, root) == 0
    assert "nothing changed" in capsys.readouterr().out
    assert _snapshot(root) == first
    # The folder form of the same bundle installs the same tree.
    assert _install(bundle.with_suffix(""), root) == 0
    assert _snapshot(root) == first


def test_an_upgrade_keeps_the_database_fetched_models_and_an_edited_config(bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert _install(bundle, root) == 0
    state = root / "var" / "lib" / "retail-agent"
    db = open_database(state / "agent.db")
    with db.conn:
        db.execute("CREATE TABLE kept (value TEXT)")
        db.execute("INSERT INTO kept VALUES ('before the upgrade')")
    db.close()
    (state / "models").mkdir()
    (state / "models" / "yolox_nano.onnx").write_bytes(b"fetched model bytes")
    config = root / "etc" / "retail-agent" / "agent.toml"
    edited = config.read_text() + "\n[camera.lines.door]\na = [0.1, 0.5]\nb = [0.9, 0.5]\n"
    config.write_text(edited)
    state_before = _snapshot(state)

    renewed = _enroll(tmp_path, "renewed")  # a new certificate and key for the same device
    wheel = tmp_path / "retail_edge_agent-9.9.9-py3-none-any.whl"
    wheel.write_bytes(b"stand-in: with --no-venv the pip command is only recorded")
    assert _install(renewed, root, "--wheel", str(wheel)) == 0

    assert _snapshot(state) == state_before
    db = open_database(state / "agent.db")
    assert db.execute("SELECT value FROM kept").fetchall() == [("before the upgrade",)]
    db.close()
    assert config.read_text() == edited
    key = root / "etc" / "retail-agent" / "credentials" / "mqtt.key"
    with tarfile.open(renewed) as archive:
        member = archive.extractfile("kiosk-7/mqtt.key")
        assert member is not None
        assert key.read_bytes() == member.read()
    plan = (root / "install-plan.txt").read_text()
    assert f"/opt/retail-agent/bin/python -m pip install --quiet {wheel}" in plan

    assert _install(renewed, root, "--replace-config") == 0
    assert config.read_text() != edited


def test_a_bundle_without_its_key_is_refused(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    with tarfile.open(bundle) as archive:
        for name in ("agent.toml", "ca.crt", "mqtt.crt"):
            member = archive.extractfile(f"kiosk-7/{name}")
            assert member is not None
            (broken / name).write_bytes(member.read())
    assert _install(broken, tmp_path / "root") == 2
    assert "lacks mqtt.key" in capsys.readouterr().err
    assert not (tmp_path / "root").exists()


def test_installing_on_the_machine_needs_root(
    bundle: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("provisioning.install.os.geteuid", lambda: 1000)
    assert main(["install", str(bundle)]) == 1
    assert "needs root" in capsys.readouterr().err
