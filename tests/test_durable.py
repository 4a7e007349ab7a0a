"""Folder syncs after a rename: done where the file system allows, never an error where it does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.durable import fsync_folder


def test_a_folder_is_synced_with_its_own_descriptor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = __import__("os").fsync
    monkeypatch.setattr("agent.durable.os.fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    fsync_folder(tmp_path)
    assert len(synced) == 1


def test_a_folder_that_cannot_be_opened_is_left_alone(tmp_path: Path) -> None:
    fsync_folder(tmp_path / "gone")  # no error: the rename itself already happened
