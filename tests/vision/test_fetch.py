"""Fetching a model: only the manifest's exact bytes are kept, and failures leave nothing behind."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agent.vision.fetch import fetch_model
from agent.vision.models import Manifest, ModelError, load_manifest

PAYLOAD = bytes(range(256)) * 40  # 10 240 bytes


class _Handler(BaseHTTPRequestHandler):
    hits: list[str] = []  # noqa: RUF012 - shared with the test through the class

    def do_GET(self) -> None:
        self.hits.append(self.path)
        if self.path == "/good":
            self._send(PAYLOAD)
        elif self.path == "/wrong":
            self._send(PAYLOAD[::-1])
        elif self.path == "/long":
            self._send(PAYLOAD + b"extra", with_length=False)
        elif self.path == "/truncated":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
            self.wfile.flush()
            self.close_connection = True
        else:
            self.send_error(404, "Not Found")

    def _send(self, body: bytes, with_length: bool = True) -> None:
        self.send_response(200)
        if with_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    """A local HTTP server on a free port; yields its base address."""
    _Handler.hits = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def manifest(tmp_path: Path, server: str) -> Manifest:
    path = tmp_path / "manifest.toml"
    path.write_text(
        f"""
default = "tiny"

[models.tiny]
file = "tiny.onnx"
sha256 = "{hashlib.sha256(PAYLOAD).hexdigest()}"
size = {len(PAYLOAD)}
family = "yolox"
input = [64, 64]
labels = "coco-80"
person_class = 0
score_threshold = 0.3
licence = "Apache-2.0"
source = "test"
url = "{server}/good"
""",
        encoding="utf-8",
    )
    return load_manifest(path)


def test_right_bytes_are_saved_under_the_manifest_file_name(tmp_path: Path, manifest: Manifest) -> None:
    dest = tmp_path / "state" / "models"
    path = fetch_model("tiny", dest, manifest=manifest)
    assert path == dest / "tiny.onnx"
    assert path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in dest.iterdir()) == ["tiny.onnx"]


def test_a_model_already_present_is_not_downloaded_again(tmp_path: Path, manifest: Manifest) -> None:
    fetch_model("tiny", tmp_path, manifest=manifest)
    fetch_model("tiny", tmp_path, manifest=manifest)
    assert _Handler.hits == ["/good"]


@pytest.mark.parametrize(
    ("route", "words"),
    [
        ("/truncated", "truncated"),
        ("/wrong", "sha256 " + hashlib.sha256(PAYLOAD[::-1]).hexdigest()),
        ("/long", "more than the expected"),
        ("/missing", "HTTP 404"),
    ],
)
def test_bad_downloads_are_refused_by_name_and_leave_nothing_behind(
    tmp_path: Path, manifest: Manifest, server: str, route: str, words: str
) -> None:
    dest = tmp_path / "models"
    with pytest.raises(ModelError) as caught:
        fetch_model("tiny", dest, url=server + route, timeout=5, manifest=manifest)
    assert "tiny" in str(caught.value)
    assert words in str(caught.value)
    assert list(dest.iterdir()) == []


def test_a_failed_download_keeps_the_previous_good_file(tmp_path: Path, manifest: Manifest, server: str) -> None:
    (tmp_path / "tiny.onnx").write_bytes(b"old and wrong")
    with pytest.raises(ModelError):
        fetch_model("tiny", tmp_path, url=server + "/wrong", timeout=5, manifest=manifest)
    assert (tmp_path / "tiny.onnx").read_bytes() == b"old and wrong"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.toml", "tiny.onnx"]


def test_an_unknown_name_is_refused(tmp_path: Path, manifest: Manifest) -> None:
    with pytest.raises(ModelError, match="unknown model 'huge'"):
        fetch_model("huge", tmp_path, manifest=manifest)


def test_an_unreachable_server_is_a_model_error(tmp_path: Path, manifest: Manifest) -> None:
    with pytest.raises(ModelError, match="failed"):
        fetch_model("tiny", tmp_path / "m", url="http://127.0.0.1:9/none", timeout=2, manifest=manifest)


def test_only_http_addresses_are_accepted(tmp_path: Path, manifest: Manifest) -> None:
    with pytest.raises(ModelError, match="http"):
        fetch_model("tiny", tmp_path, url=f"file://{tmp_path}/x", manifest=manifest)


def test_the_repository_manifest_points_yolox_nano_at_the_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    def fake_urlopen(request: object, timeout: float) -> None:
        seen.append(request.full_url)  # type: ignore[attr-defined]
        raise OSError("no network in tests")

    monkeypatch.setattr("urllib.request.urlopen", fake_urlopen)
    with pytest.raises(ModelError, match="yolox-nano"):
        fetch_model("yolox-nano", tmp_path, manifest=load_manifest())
    assert seen == ["https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0/yolox_nano.onnx"]
