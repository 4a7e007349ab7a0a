"""Download a manifest model, accepting it only with the manifest's size and sha256."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO

from agent import __version__
from agent.durable import fsync_folder
from agent.vision.models import Manifest, ModelError, file_sha256, load_manifest

logger = logging.getLogger(__name__)

CHUNK = 1 << 16


def fetch_model(
    name: str,
    dest_dir: Path,
    url: str | None = None,
    timeout: float = 60,
    *,
    manifest: Manifest | None = None,
) -> Path:
    """Download model ``name`` into dest_dir and return its path.

    The bytes go to a temporary file in dest_dir and are renamed into place only when their size
    and sha256 match the manifest; anything else raises ModelError and leaves nothing behind.
    ``url`` overrides the manifest's address; ``manifest`` defaults to the shipped manifest.
    """
    manifest = manifest if manifest is not None else load_manifest()
    if name not in manifest:
        raise ModelError(f"unknown model {name!r}; the manifest has {', '.join(manifest)}")
    entry = manifest[name]
    address = url or entry.url
    if not address:
        raise ModelError(f"model {name}: the manifest gives no download address; pass one with --url")
    if urllib.parse.urlsplit(address).scheme not in ("http", "https"):
        raise ModelError(f"model {name}: only http and https addresses are supported, got {address}")

    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / entry.file
    if target.is_file() and file_sha256(target) == entry.sha256:
        logger.info("model %s already present at %s", name, target)
        return target

    handle, temp_name = tempfile.mkstemp(dir=dest_dir, prefix=f".{entry.file}.", suffix=".part")
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            size, sha256 = _download(name, address, out, entry.size, timeout)
            out.flush()
            os.fsync(out.fileno())
        if size != entry.size:
            raise ModelError(
                f"model {name}: download from {address} is {size} bytes, the manifest expects {entry.size}"
                + (" (truncated)" if size < entry.size else "")
            )
        if sha256 != entry.sha256:
            raise ModelError(
                f"model {name}: download from {address} has sha256 {sha256}, the manifest expects {entry.sha256}"
            )
        os.replace(temp, target)
        fsync_folder(dest_dir)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    logger.info("model %s: %d bytes from %s verified and saved to %s", name, size, address, target)
    return target


def _download(name: str, address: str, out: BinaryIO, limit: int, timeout: float) -> tuple[int, str]:
    """Stream the body into out; (bytes read, sha256). Stops past limit bytes."""
    request = urllib.request.Request(address, headers={"User-Agent": f"retail-agent/{__version__}"})
    digest = hashlib.sha256()
    size = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) != limit:
                raise ModelError(f"model {name}: {address} announces {length} bytes, the manifest expects {limit}")
            while block := response.read(CHUNK):
                size += len(block)
                if size > limit:
                    raise ModelError(f"model {name}: {address} sends more than the expected {limit} bytes")
                digest.update(block)
                out.write(block)
    except urllib.error.HTTPError as exc:
        raise ModelError(f"model {name}: download from {address} failed: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ModelError(f"model {name}: download from {address} failed: {reason}") from exc
    return size, digest.hexdigest()
