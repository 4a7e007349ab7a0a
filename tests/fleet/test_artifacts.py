"""Artifact assembly on real files: chunks at their offsets, resume from the index file, verification."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from agent.contract.topics import InvalidTopicSegment, Topics, artifact_chunk, chunk_index
from agent.fleet.artifacts import ArtifactRejected, Assembly, Rejection, discard_staging
from agent.fleet.bodies import ModelBody, parse_body

CHUNK = 1024


def manifest_of(data: bytes, chunk: int = CHUNK) -> ModelBody:
    return ModelBody(
        sha256=hashlib.sha256(data).hexdigest(), size=len(data), chunks=-(-len(data) // chunk), chunk_size=chunk
    )


def chunks_of(data: bytes, chunk: int = CHUNK) -> list[bytes]:
    return [data[i : i + chunk] for i in range(0, len(data), chunk)]


def test_chunks_in_any_order_assemble_to_the_artifact_and_install_by_rename(tmp_path: Path) -> None:
    data = os.urandom(10 * CHUNK + 17)
    manifest = manifest_of(data)
    assembly = Assembly(tmp_path / "staging", manifest)
    parts = chunks_of(data)
    for index in reversed(range(len(parts))):
        assert assembly.accept(index, parts[index])
    assert not assembly.accept(3, parts[3])  # a duplicate changes nothing
    assert assembly.progress().complete
    assembly.verify()
    target = assembly.install(tmp_path / "models" / f"{manifest.sha256}.onnx")
    assert target.read_bytes() == data
    assert not assembly.part.exists() and not assembly.index_file.exists()


def test_a_restarted_assembly_keeps_the_chunks_it_had(tmp_path: Path) -> None:
    data = os.urandom(8 * CHUNK)
    manifest = manifest_of(data)
    parts = chunks_of(data)
    first = Assembly(tmp_path, manifest)
    for index in (0, 2, 5):
        first.accept(index, parts[index])
    with first.index_file.open("ab") as handle:
        handle.write(b"\x07\x00")  # a record cut short by a kill is ignored
    resumed = Assembly(tmp_path, manifest)
    assert resumed.progress().received == 3
    for index in (1, 3, 4, 6, 7):
        assert resumed.accept(index, parts[index])
    assert not resumed.accept(2, parts[2])
    resumed.verify()
    assert resumed.part.read_bytes() == data


def test_a_truncated_artifact_is_refused_at_verification_and_discarded(tmp_path: Path) -> None:
    data = os.urandom(4 * CHUNK)
    manifest = manifest_of(data)
    assembly = Assembly(tmp_path, manifest)
    parts = chunks_of(data)
    parts[-1] = parts[-1][:100]
    for index, part in enumerate(parts):
        assembly.accept(index, part)
    with pytest.raises(ArtifactRejected) as caught:
        assembly.verify()
    assert caught.value.reason is Rejection.SIZE_MISMATCH
    assert not assembly.part.exists()


def test_a_corrupted_artifact_is_refused_by_its_sha256(tmp_path: Path) -> None:
    data = bytearray(os.urandom(4 * CHUNK))
    manifest = manifest_of(bytes(data))
    data[CHUNK + 5] ^= 0xFF
    assembly = Assembly(tmp_path, manifest)
    for index, part in enumerate(chunks_of(bytes(data))):
        assembly.accept(index, part)
    with pytest.raises(ArtifactRejected) as caught:
        assembly.verify()
    assert caught.value.reason is Rejection.SHA256_MISMATCH


def test_chunks_beyond_the_manifest_or_too_long_are_refused(tmp_path: Path) -> None:
    manifest = manifest_of(os.urandom(2 * CHUNK))
    assembly = Assembly(tmp_path, manifest)
    assert not assembly.accept(2, b"x" * 10)
    assert not assembly.accept(0, b"x" * (CHUNK + 1))
    assert assembly.progress().refused == 2 and assembly.progress().received == 0


def test_the_model_body_names_a_wrong_chunk_count() -> None:
    body = {"sha256": "a" * 64, "size": 5000, "chunks": 4, "chunk_size": 1024}
    with pytest.raises(ValueError, match="chunks must be 5"):
        parse_body("model", body)
    with pytest.raises(ValueError, match="chunk_size"):
        parse_body("model", body | {"chunk_size": 10, "chunks": 500})


def test_artifact_topics() -> None:
    sha = "ab" * 32
    topic = artifact_chunk("acme", sha, 12)
    assert topic == f"retail/v1/acme/_artifacts/{sha}/12"
    assert Topics("acme", "s1", "d1").artifact_chunks(sha) == f"retail/v1/acme/_artifacts/{sha}/+"
    assert chunk_index(topic) == 12
    assert chunk_index(f"retail/v1/acme/_artifacts/{sha}/012") is None
    assert chunk_index(f"retail/v1/acme/_artifacts/{sha}/x") is None
    with pytest.raises(InvalidTopicSegment):
        artifact_chunk("acme", "AB" * 32, 0)


def test_a_staging_file_cut_in_other_chunks_is_started_over_not_resumed(tmp_path: Path) -> None:
    data = os.urandom(8 * CHUNK)
    old = Assembly(tmp_path, manifest_of(data, CHUNK))
    old_parts = chunks_of(data, CHUNK)
    for index in (0, 1, 3):
        old.accept(index, old_parts[index])
    # A later job for the same artifact cuts it in chunks twice as large.
    manifest = manifest_of(data, 2 * CHUNK)
    fresh = Assembly(tmp_path, manifest)
    assert fresh.progress().received == 0
    for index, part in enumerate(chunks_of(data, 2 * CHUNK)):
        assert fresh.accept(index, part)
    fresh.verify()
    assert fresh.part.read_bytes() == data


def test_discarding_staging_keeps_only_the_artifacts_asked_for(tmp_path: Path) -> None:
    kept_data, stale_data = os.urandom(2 * CHUNK), os.urandom(2 * CHUNK)
    kept = Assembly(tmp_path, manifest_of(kept_data))
    stale = Assembly(tmp_path, manifest_of(stale_data))
    kept.accept(0, kept_data[:CHUNK])
    stale.accept(0, stale_data[:CHUNK])
    (tmp_path / "unrelated.txt").write_text("x")
    assert discard_staging(tmp_path, frozenset({kept.manifest.sha256})) == 2
    assert kept.part.exists() and kept.index_file.exists()
    assert not stale.part.exists() and not stale.index_file.exists()
    assert (tmp_path / "unrelated.txt").exists()
