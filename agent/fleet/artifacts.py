"""Artifact assembly: retained chunks written into a staging file, resumable, verified before use.

Each chunk is written at its offset (``index * chunk_size``) into ``{folder}/{sha256}.part`` and its
index appended to ``{folder}/{sha256}.idx`` (4 bytes per chunk), so memory holds one chunk at a time
and an agent restarted mid-way keeps what it had and waits only for the rest. The index file starts
with the chunk size and count it was written for: a staging file left by a job that cut the same
artifact differently is started over, never resumed at the wrong offsets. A chunk longer than
the manifest's ``chunk_size`` or beyond its count is dropped; a short or altered one is written as
it came and caught by ``verify``: nothing of an artifact is used before its size and sha256 match
the signed manifest. ``install`` then moves it into place by an atomic rename.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import threading
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from agent.durable import fsync_folder
from agent.fleet.bodies import ModelBody

logger = logging.getLogger(__name__)

_INDEX = struct.Struct("<I")
_HEADER = struct.Struct("<4sII")  # magic, chunk_size, chunks; a multiple of _INDEX.size
_MAGIC = b"RAI1"
STAGING_SUFFIXES = (".part", ".idx")


class Rejection(StrEnum):
    """Why an assembled artifact was refused (the job's reason)."""

    SIZE_MISMATCH = "size_mismatch"
    SHA256_MISMATCH = "sha256_mismatch"


class ArtifactRejected(ValueError):
    """The assembled file is not the artifact the manifest describes."""

    def __init__(self, reason: Rejection, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason


@dataclass(frozen=True)
class Progress:
    received: int
    chunks: int
    refused: int

    @property
    def complete(self) -> bool:
        return self.received >= self.chunks


class Assembly:
    """One artifact being put together in ``folder`` from its chunks (safe across two threads)."""

    def __init__(self, folder: Path, manifest: ModelBody) -> None:
        self.folder = folder
        self.manifest = manifest
        self.part = folder / f"{manifest.sha256}.part"
        self.index_file = folder / f"{manifest.sha256}.idx"
        self._lock = threading.Lock()
        self._received: set[int] = set()
        self._refused = 0
        self._open()

    def _open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        header = _HEADER.pack(_MAGIC, self.manifest.chunk_size, self.manifest.chunks)
        if self.part.exists() and self.index_file.exists():
            data = self.index_file.read_bytes()
            if data[: _HEADER.size] == header:
                body = data[_HEADER.size :]
                whole = len(body) - len(body) % _INDEX.size
                indexes = {value for (value,) in _INDEX.iter_unpack(body[:whole])}
                self._received = {i for i in indexes if i < self.manifest.chunks}
                if self._received:
                    logger.info(
                        "artifact %s: resuming with %d of %d chunks",
                        self.manifest.sha256[:12],
                        len(self._received),
                        self.manifest.chunks,
                    )
                return
            logger.info(
                "artifact %s: the staging file was cut differently (not %d chunks of %d bytes); starting over",
                self.manifest.sha256[:12],
                self.manifest.chunks,
                self.manifest.chunk_size,
            )
        self.part.unlink(missing_ok=True)
        self.index_file.unlink(missing_ok=True)
        self.part.touch()
        self.index_file.write_bytes(header)

    def progress(self) -> Progress:
        with self._lock:
            return Progress(len(self._received), self.manifest.chunks, self._refused)

    def accept(self, index: int, data: bytes) -> bool:
        """Write chunk ``index`` at its offset; False when it was already there or is refused."""
        manifest = self.manifest
        with self._lock:
            if index in self._received:
                return False
            if not 0 <= index < manifest.chunks or len(data) > manifest.chunk_size:
                self._refused += 1
                logger.warning(
                    "artifact %s: chunk %d (%d bytes) refused: the manifest has %d chunks of at most %d bytes",
                    manifest.sha256[:12],
                    index,
                    len(data),
                    manifest.chunks,
                    manifest.chunk_size,
                )
                return False
            fd = os.open(self.part, os.O_WRONLY)
            try:
                os.pwrite(fd, data, index * manifest.chunk_size)
            finally:
                os.close(fd)
            with open(self.index_file, "ab") as handle:
                handle.write(_INDEX.pack(index))
            self._received.add(index)
            return True

    def verify(self) -> None:
        """Raise ArtifactRejected (and discard what was assembled) unless size and sha256 match."""
        manifest = self.manifest
        size = self.part.stat().st_size
        if size != manifest.size:
            self.discard()
            raise ArtifactRejected(
                Rejection.SIZE_MISMATCH, f"{size} bytes assembled, the manifest says {manifest.size}"
            )
        digest = hashlib.sha256()
        with self.part.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        actual = digest.hexdigest()
        if actual != manifest.sha256:
            self.discard()
            raise ArtifactRejected(Rejection.SHA256_MISMATCH, f"assembled sha256 {actual[:16]}… is not the manifest's")

    def install(self, target: Path) -> Path:
        """Move the verified file to ``target`` by an atomic rename (same file system) and fsync it."""
        target.parent.mkdir(parents=True, exist_ok=True)
        with self.part.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(self.part, target)
        self.index_file.unlink(missing_ok=True)
        fsync_folder(target.parent)
        logger.info("artifact %s installed as %s", self.manifest.sha256[:12], target)
        return target

    def discard(self) -> None:
        with self._lock:
            self.part.unlink(missing_ok=True)
            self.index_file.unlink(missing_ok=True)
            self._received.clear()


def discard_staging(folder: Path, keep: frozenset[str] = frozenset()) -> int:
    """Remove the staging files in ``folder`` except those of the sha256s in ``keep``; how many."""
    removed = 0
    if not folder.is_dir():
        return 0
    for path in folder.iterdir():
        if path.suffix in STAGING_SUFFIXES and path.stem not in keep and path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    if removed:
        logger.info("%d staging file(s) of ended model jobs removed from %s", removed, folder)
    return removed
