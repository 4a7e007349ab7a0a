"""Files named by the config: where a relative name points, and whether the agent can read it.

Relative names are resolved against the config file's folder. For the TLS and password files
(``mqtt.ca_file``, ``cert_file``, ``key_file``, ``password_file``) there is one exception: under
systemd with ``LoadCredential=``, the service manager sets ``$CREDENTIALS_DIRECTORY`` and a
relative name is resolved against that folder instead, so ``key_file = "mqtt.key"`` reads the
credential loaded as ``LoadCredential=mqtt.key:/etc/retail-agent/tls/kiosk-7.key``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

CREDENTIALS_VARIABLE = "CREDENTIALS_DIRECTORY"


def credentials_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """systemd's credentials folder for this service, if it set one."""
    value = (os.environ if environ is None else environ).get(CREDENTIALS_VARIABLE, "")
    return Path(value) if value else None


def resolve(path: Path, folder: Path) -> Path:
    """``path`` itself if absolute, else ``folder / path`` made absolute."""
    return path if path.is_absolute() else (folder / path).resolve()


def unreadable(path: Path) -> str | None:
    """Why the agent cannot read the file at ``path``, or None when it can."""
    try:
        with path.open("rb"):
            return None
    except FileNotFoundError:
        return "file not found"
    except IsADirectoryError:
        return "is a folder, not a file"
    except PermissionError:
        return "cannot read the file: permission denied"
    except OSError as exc:
        return f"cannot read the file: {exc.strerror or exc}"


def missing_video_file(path: Path) -> str | None:
    """Why a file video source cannot be opened, or None when it may be.

    A device node (``/dev/video0``) is fine; an OpenCV image-sequence pattern
    (``frames/img_%04d.png``) needs its folder to exist.
    """
    if "%" in path.name:
        return None if path.parent.is_dir() else f"folder {path.parent} of the image sequence not found"
    if not path.exists():
        return "file not found"
    if path.is_dir():
        return "is a folder, not a video file"
    return None
