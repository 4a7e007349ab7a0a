"""Finding the sample clip: the cache, an installed opencv-doc, the shared folder; never a stale guess."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.sample import DEBIAN_PATH, REPO, SampleUnavailable, candidates, find_sample, shared_dir


def test_retail_shared_replaces_the_folder_beside_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETAIL_SHARED", str(tmp_path / "elsewhere"))
    assert shared_dir() == tmp_path / "elsewhere"
    places = candidates(tmp_path / "cache")
    assert places == [tmp_path / "cache" / "vtest.avi", DEBIAN_PATH, tmp_path / "elsewhere" / "data" / "vtest.avi"]
    assert REPO.parent / "shared" / "data" / "vtest.avi" not in places


def test_without_retail_shared_the_folder_beside_the_checkout_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RETAIL_SHARED", raising=False)
    assert shared_dir() == REPO.parent / "shared"


def test_a_cached_clip_is_found_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETAIL_SHARED", str(tmp_path / "shared"))
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "shared" / "data" / "vtest.avi").write_bytes(b"shared")
    assert find_sample(tmp_path / "cache", fetch=False) == tmp_path / "shared" / "data" / "vtest.avi"
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "vtest.avi").write_bytes(b"cached")
    assert find_sample(tmp_path / "cache", fetch=False) == tmp_path / "cache" / "vtest.avi"


def test_without_fetching_a_missing_clip_is_reported_with_the_places_looked_at(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETAIL_SHARED", str(tmp_path / "shared"))
    monkeypatch.setattr("agent.sample.DEBIAN_PATH", tmp_path / "no-opencv-doc" / "vtest.avi")
    with pytest.raises(SampleUnavailable, match=r"vtest\.avi not found in") as caught:
        find_sample(tmp_path / "cache", fetch=False)
    assert str(tmp_path / "shared" / "data" / "vtest.avi") in str(caught.value)
