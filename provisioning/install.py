"""Install an enrolled device: service users, the agent in a virtualenv, config, credentials, units.

What goes where (all under ``--root`` when one is given):

- ``/opt/retail-agent``: a virtualenv with the agent installed from a wheel;
- ``/etc/retail-agent/agent.toml`` (0640, group ``retail-agent``) and ``fleet.pub`` (0644);
- ``/etc/retail-agent/credentials/`` (0700, root): ``ca.crt``, ``mqtt.crt``, ``mqtt.key``, each
  0600. The agent never reads them there: systemd hands them over with ``LoadCredential=``;
  ``no.key`` (empty) stands in for the key in the console's unit, which never gets the real one;
- ``/etc/systemd/system/retail-agent.service`` and ``retail-agent-console.service``.

The state directory (``/var/lib/retail-agent``: database, fetched models, bdSeq) belongs to
systemd's ``StateDirectory=`` and is never touched, so an upgrade keeps it as it is.

Idempotent: a file is written only when its bytes or mode differ; a second run with the same
bundle changes nothing. An existing ``agent.toml`` that differs from the bundle's (the operator
added lines and zones) is kept unless ``replace_config``. Credentials always follow the bundle.

Under ``root``, commands that act on this machine (``useradd``, ``chgrp``, ``systemctl``, and
with ``venv=False`` the virtualenv and ``pip``) are not run but written, in order, to
``ROOT/install-plan.txt``.
"""

from __future__ import annotations

import logging
import os
import pwd
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import provisioning
from provisioning.enrol import (
    CONFIG_NAME,
    CREDENTIAL_NAMES,
    FLEET_KEY_NAME,
    EnrolError,
    check_bundle,
    read_bundle,
)
from provisioning.pki import write_atomic

logger = logging.getLogger(__name__)

SERVICE_USER = "retail-agent"
CONSOLE_USER = "retail-console"
VENV = PurePosixPath("/opt/retail-agent")
CONFIG_DIR = PurePosixPath("/etc/retail-agent")
CREDENTIALS_DIR = CONFIG_DIR / "credentials"
UNIT_DIR = PurePosixPath("/etc/systemd/system")
STATE_DIR = PurePosixPath("/var/lib/retail-agent")
UNITS = ("retail-agent.service", "retail-agent-console.service")
AGENT_UNIT = UNITS[0]
CONSOLE_UNIT = UNITS[1]
PLAN_FILE = "install-plan.txt"
NO_KEY_NAME = "no.key"

Runner = Callable[[Sequence[str]], None]


class InstallError(RuntimeError):
    """A step of the installation failed; the message names the step."""


def units_dir() -> Path:
    """The unit files: package data of an installed agent, else the checkout's systemd/ folder."""
    installed = Path(provisioning.__file__).resolve().parent / "_units"
    if (installed / AGENT_UNIT).is_file():
        return installed
    return Path(provisioning.__file__).resolve().parents[1] / "systemd"


def run_command(command: Sequence[str]) -> None:
    logger.info("running %s", shlex.join(command))
    try:
        subprocess.run(list(command), check=True, stdin=subprocess.DEVNULL, timeout=900)
    except (OSError, subprocess.SubprocessError) as exc:
        raise InstallError(f"{shlex.join(command)} failed: {exc}") from None


@dataclass(frozen=True)
class InstallOptions:
    root: Path | None = None
    """Install into this folder instead of the machine (a staging tree, or a test)."""
    wheel: Path | None = None
    venv: bool = True
    """False: do not build the virtualenv, only record its commands in the plan."""
    replace_config: bool = False
    console: bool = False
    """Enable the staff console on tty1 as well."""


@dataclass
class InstallReport:
    changed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    planned: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)

    def describe(self) -> str:
        lines = [f"changed: {path}" for path in self.changed] or ["nothing changed"]
        lines += [f"kept: {note}" for note in self.kept]
        lines += [f"ran: {command}" for command in self.ran]
        if self.planned:
            lines.append(f"{len(self.planned)} command(s) for the machine recorded in {PLAN_FILE}")
        return "\n".join(lines)


class Installer:
    def __init__(self, options: InstallOptions, runner: Runner = run_command) -> None:
        self.options = options
        self.runner = runner
        self.report = InstallReport()

    @property
    def staged(self) -> bool:
        return self.options.root is not None

    def path(self, target: PurePosixPath) -> Path:
        root = self.options.root
        return Path(str(target)) if root is None else root / str(target).lstrip("/")

    def command(self, command: Sequence[str], *, machine: bool = True) -> None:
        """Run ``command``, or record it when staging and it acts on the machine."""
        if self.staged and machine:
            self.report.planned.append(shlex.join(command))
            return
        self.runner(command)
        self.report.ran.append(shlex.join(command))

    def install(self, bundle: Path) -> InstallReport:
        files = read_bundle(bundle)
        check_bundle(files, bundle)
        self._users()
        venv_changed = self._venv()
        config_changed = self._config(files)
        units_changed = self._units()
        self._services(venv_changed or config_changed or units_changed, units_changed)
        if self.options.root is not None:
            plan = "".join(f"{line}\n" for line in self.report.planned).encode()
            self._write(self.options.root / PLAN_FILE, plan, 0o644, report=False)
        return self.report

    def _users(self) -> None:
        nologin = "/usr/sbin/nologin"
        wanted = [
            (SERVICE_USER, ["--home-dir", str(STATE_DIR), "--no-create-home"]),
            (CONSOLE_USER, ["--no-create-home", "--groups", SERVICE_USER]),
        ]
        for name, extra in wanted:
            if not self.staged and _user_exists(name):
                continue
            self.command(["useradd", "--system", "--user-group", "--shell", nologin, *extra, name])

    def _venv(self) -> bool:
        """Create the virtualenv if missing and install the wheel; True when the agent changed.

        With ``venv=False`` the commands are recorded with the device's paths, not run.
        """
        machine = not self.options.venv
        venv = Path(str(VENV)) if machine else self.path(VENV)
        python = venv / "bin" / "python"
        changed = False
        if machine or not python.exists():
            base = "python3" if machine else str(Path(sys.base_prefix) / "bin" / "python3")
            self.command([base, "-m", "venv", str(venv)], machine=machine)
            changed = not machine
        if self.options.wheel is not None:
            wheel = self.options.wheel.resolve()
            if not wheel.is_file():
                raise InstallError(f"--wheel {wheel}: file not found")
            before = None if machine else _installed_version(python)
            self.command([str(python), "-m", "pip", "install", "--quiet", str(wheel)], machine=machine)
            changed = changed or (not machine and _installed_version(python) != before)
        if changed:
            self.report.changed.append(str(VENV))
        return changed

    def _config(self, files: dict[str, bytes]) -> bool:
        changed = self._dir(self.path(CONFIG_DIR), 0o750)
        config = self.path(CONFIG_DIR / CONFIG_NAME)
        new = files[CONFIG_NAME]
        if config.exists() and config.read_bytes() != new and not self.options.replace_config:
            self.report.kept.append(f"{CONFIG_DIR / CONFIG_NAME} differs from the bundle's (--replace-config)")
            changed |= self._mode(config, 0o640)
        else:
            changed |= self._write(config, new, 0o640)
        self.command(["chgrp", SERVICE_USER, str(CONFIG_DIR), str(CONFIG_DIR / CONFIG_NAME)])
        if FLEET_KEY_NAME in files:
            changed |= self._write(self.path(CONFIG_DIR / FLEET_KEY_NAME), files[FLEET_KEY_NAME], 0o644)
        changed |= self._dir(self.path(CREDENTIALS_DIR), 0o700)
        for name in CREDENTIAL_NAMES:
            changed |= self._write(self.path(CREDENTIALS_DIR / name), files[name], 0o600)
        # The console's stand-in for mqtt.key: it validates the shared config but holds no secret.
        changed |= self._write(self.path(CREDENTIALS_DIR / NO_KEY_NAME), b"", 0o600)
        return changed

    def _units(self) -> bool:
        source = units_dir()
        changed = self._dir(self.path(UNIT_DIR), 0o755, report=False)
        for name in UNITS:
            try:
                text = (source / name).read_bytes()
            except OSError as exc:
                raise InstallError(f"unit file {source / name}: {exc.strerror or exc}") from None
            changed |= self._write(self.path(UNIT_DIR / name), text, 0o644)
        return changed

    def _services(self, restart: bool, reload: bool) -> None:
        if reload or self.staged:
            self.command(["systemctl", "daemon-reload"])
        self.command(["systemctl", "enable", AGENT_UNIT])
        self.command(["systemctl", "restart" if restart or self.staged else "start", AGENT_UNIT])
        if self.options.console:
            self.command(["systemctl", "enable", "--now", CONSOLE_UNIT])

    def _dir(self, path: Path, mode: int, report: bool = True) -> bool:
        if path.is_dir():
            return self._mode(path, mode, report)
        path.mkdir(parents=True)
        os.chmod(path, mode)
        if report:
            self.report.changed.append(str(path))
        return True

    def _mode(self, path: Path, mode: int, report: bool = True) -> bool:
        if path.stat().st_mode & 0o7777 == mode:
            return False
        os.chmod(path, mode)
        if report:
            self.report.changed.append(f"{path} (mode {mode:04o})")
        return True

    def _write(self, path: Path, data: bytes, mode: int, report: bool = True) -> bool:
        if path.is_file() and path.read_bytes() == data:
            return self._mode(path, mode, report)
        write_atomic(path, data, mode)
        if report:
            self.report.changed.append(str(path))
        return True


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _installed_version(python: Path) -> str | None:
    """The agent version installed in the virtualenv, or None."""
    if not python.exists():
        return None
    probe = "import importlib.metadata as m; print(m.version('retail-edge-agent'))"
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=False, timeout=60)
    return done.stdout.strip() or None if done.returncode == 0 else None


def install(bundle: Path, options: InstallOptions, runner: Runner = run_command) -> InstallReport:
    """Install the bundle (a folder or tar from ``retail-provision device enroll``)."""
    if not bundle.exists():
        raise EnrolError(f"{bundle}: not found")
    if options.root is None and os.geteuid() != 0:
        raise InstallError("installing on this machine needs root (or give --root DIR to stage a tree)")
    return Installer(options, runner).install(bundle)
