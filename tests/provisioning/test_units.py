"""The unit files: valid for systemd, hardened (exposure ≤ 2.0 for the agent), every directive
documented, and the credentials they load are the ones enrolment and the installer provide."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from provisioning.enrol import CREDENTIAL_NAMES
from provisioning.install import CREDENTIALS_DIR, NO_KEY_NAME, UNITS, units_dir

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is missing (Debian package systemd; .ci/run installs it)"
)
EXPOSURE_LIMIT = 2.0
INSTALLED_AGENT = "/opt/retail-agent/bin/retail-agent"


def _directives(unit: str) -> list[str]:
    text = (units_dir() / unit).read_text()
    return [line.split("=", 1)[0] for line in text.splitlines() if re.match(r"^[A-Z][A-Za-z]+=", line)]


def _values(unit: str, key: str) -> list[str]:
    text = (units_dir() / unit).read_text()
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]


@needs_analyze
def test_units_verify_clean(tmp_path: Path) -> None:
    """``systemd-analyze verify`` checks that ExecStart exists: the copies point at this
    environment's ``retail-agent`` instead of /opt/retail-agent (the only change)."""
    assert SYSTEMD_ANALYZE is not None
    here = str(Path(sys.executable).parent / "retail-agent")
    copies = []
    for unit in UNITS:
        copy = tmp_path / unit
        copy.write_text((units_dir() / unit).read_text().replace(INSTALLED_AGENT, here))
        copies.append(str(copy))
    done = subprocess.run([SYSTEMD_ANALYZE, "verify", *copies], check=False, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def _exposure(unit: str) -> float:
    assert SYSTEMD_ANALYZE is not None
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", str(units_dir() / unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert found, done.stdout + done.stderr
    return float(found.group(1))


@needs_analyze
@pytest.mark.parametrize("unit", UNITS)
def test_exposure_is_at_most_two(unit: str) -> None:
    score = _exposure(unit)
    print(f"systemd-analyze security --offline=true {unit}: exposure {score}")
    assert score <= EXPOSURE_LIMIT


@pytest.mark.parametrize("unit", UNITS)
def test_every_directive_is_explained_in_the_readme(unit: str) -> None:
    readme = (units_dir() / "README.md").read_text()
    missing = sorted({key for key in _directives(unit) if f"`{key}=" not in readme})
    assert missing == []


def test_the_agent_gets_its_tls_files_as_credentials_and_reloads_on_hup() -> None:
    loaded = dict(value.split(":", 1) for value in _values("retail-agent.service", "LoadCredential"))
    assert loaded == {name: str(CREDENTIALS_DIR / name) for name in CREDENTIAL_NAMES}
    assert _values("retail-agent.service", "ExecReload") == ["/bin/kill -HUP $MAINPID"]
    assert "time-sync.target" in _values("retail-agent.service", "After")[0]


def test_the_console_never_gets_the_device_key() -> None:
    loaded = dict(value.split(":", 1) for value in _values("retail-agent-console.service", "LoadCredential"))
    assert loaded["mqtt.key"] == str(CREDENTIALS_DIR / NO_KEY_NAME)
    assert _values("retail-agent-console.service", "User") == ["retail-console"]
    # Signing in, redeeming and logging are writes to the agent's database: its folder is writable
    # for the console, and both sides leave what they create writable by the shared group.
    assert _values("retail-agent-console.service", "ReadWritePaths") == ["/var/lib/retail-agent"]
    assert _values("retail-agent-console.service", "UMask") == ["0007"]
    assert _values("retail-agent.service", "UMask") == ["0007"]
    assert _values("retail-agent.service", "StateDirectoryMode") == ["0770"]
