"""Verified download against a real local HTTP server (there is no internet here, and none is needed)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecgwatch.datasets import DataUnavailableError, data_dir, load_directory
from ecgwatch.datasets.download import download_files, download_zip_members
from ecgwatch.datasets.mnist import load_split


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture
def no_data_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.delenv("ECGWATCH_DATA_DIR", raising=False)
    monkeypatch.setenv("ECGWATCH_CACHE_DIR", str(cache))
    return cache


def test_ecg5000_archive_is_downloaded_verified_and_cached(http_root, no_data_env, data_root: Path) -> None:
    root, base = http_root
    with zipfile.ZipFile(root / "ECG5000.zip", "w") as archive:
        for split in ("TRAIN", "TEST"):
            archive.write(data_root / "ecg5000" / f"ECG5000_{split}.txt", f"ECG5000_{split}.txt")
    folder = data_dir("ecg5000", url=base + "ECG5000.zip")
    assert folder == no_data_env / "ecg5000"
    assert len(load_directory(folder)) == 5000
    (root / "ECG5000.zip").unlink()  # a second call must use the cache, not the network
    assert data_dir("ecg5000", url=base + "ECG5000.zip") == folder


def test_tampered_archive_is_rejected_and_nothing_is_cached(http_root, no_data_env, data_root: Path) -> None:
    root, base = http_root
    with zipfile.ZipFile(root / "ECG5000.zip", "w") as archive:
        archive.writestr("ECG5000_TRAIN.txt", (data_root / "ecg5000" / "ECG5000_TRAIN.txt").read_bytes()[:-10])
        archive.write(data_root / "ecg5000" / "ECG5000_TEST.txt", "ECG5000_TEST.txt")
    with pytest.raises(DataUnavailableError, match=r"checksum mismatch for ECG5000_TRAIN\.txt"):
        data_dir("ecg5000", url=base + "ECG5000.zip")
    assert not (no_data_env / "ecg5000" / "ECG5000_TRAIN.txt").exists()


def test_per_file_download_and_missing_file(http_root, tmp_path: Path) -> None:
    root, base = http_root
    (root / "a.bin").write_bytes(b"hello")
    checksums = {"a.bin": hashlib.sha256(b"hello").hexdigest()}
    target = download_files(base, tmp_path / "out", checksums)
    assert (target / "a.bin").read_bytes() == b"hello"
    with pytest.raises(DataUnavailableError, match=r"could not download .*missing.bin"):
        download_files(base, tmp_path / "out2", {"missing.bin": "0" * 64})


def test_not_a_zip(http_root, tmp_path: Path) -> None:
    root, base = http_root
    (root / "bad.zip").write_bytes(b"<html>rate limited</html>")
    with pytest.raises(DataUnavailableError, match="not a zip archive"):
        download_zip_members(base + "bad.zip", tmp_path / "x", {"ECG5000_TRAIN.txt": "0" * 64})


def test_explicit_directory_must_exist(tmp_path: Path) -> None:
    with pytest.raises(DataUnavailableError, match="does not exist"):
        data_dir("ecg5000", tmp_path / "nope")


def test_mnist_download_is_checksummed(http_root, no_data_env, data_root: Path, monkeypatch) -> None:
    root, base = http_root
    for path in (data_root / "mnist").iterdir():
        shutil.copy(path, root / path.name)
    folder = data_dir("mnist", url=base)
    assert len(load_split(folder, "test")) == 10000
    bad = no_data_env / "other"
    monkeypatch.setenv("ECGWATCH_CACHE_DIR", str(bad))
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(b"tampered")
    with pytest.raises(DataUnavailableError, match=r"checksum mismatch for t10k-labels-idx1-ubyte\.gz"):
        data_dir("mnist", url=base)
    assert not (bad / "mnist" / "t10k-labels-idx1-ubyte.gz").exists()


def test_a_transient_server_error_is_retried(tmp_path: Path) -> None:
    """A 503 on the first try (an overloaded mirror) is retried; the file arrives verified."""
    calls: list[str] = []

    class Flaky(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            calls.append(self.path)
            if len(calls) == 1:
                self.send_error(503)
                return
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        target = download_files(base, tmp_path / "out", {"a.bin": hashlib.sha256(b"hello").hexdigest()})
    finally:
        server.shutdown()
        server.server_close()
    assert (target / "a.bin").read_bytes() == b"hello"
    assert calls == ["/a.bin", "/a.bin"]
    assert sorted(p.name for p in target.iterdir()) == ["a.bin"], "no temporary file left behind"
