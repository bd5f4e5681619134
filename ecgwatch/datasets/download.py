"""Fetch a data set into the user cache and verify it, for users who have no local copy.

Every file is checked against a pinned sha256 before it is used, and is moved into place only after the
check, so an interrupted or tampered download never looks like a valid data set.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import urllib.request
import zipfile
from collections.abc import Mapping
from pathlib import Path

from ecgwatch.datasets.errors import DataUnavailableError

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/ecgwatch`` (``~/.cache/ecgwatch``), overridable with ``ECGWATCH_CACHE_DIR``."""
    override = os.environ.get("ECGWATCH_CACHE_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ecgwatch"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch(url: str, timeout: float = 60.0) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - URLs are pinned constants or test servers
            return bytes(response.read())
    except OSError as exc:
        raise DataUnavailableError(f"could not download {url}: {exc}") from exc


def _write_verified(target: Path, data: bytes, expected_sha256: str, source: str) -> None:
    actual = sha256_bytes(data)
    if actual != expected_sha256:
        raise DataUnavailableError(
            f"checksum mismatch for {target.name} from {source}: expected sha256 {expected_sha256}, got {actual}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        tmp.write(data)
    Path(tmp.name).replace(target)


def is_complete(directory: Path, checksums: Mapping[str, str]) -> bool:
    return all((directory / name).is_file() for name in checksums)


def download_files(base_url: str, directory: Path, checksums: Mapping[str, str]) -> Path:
    """Download ``base_url + name`` for each name, verifying each against its sha256."""
    for name, expected in checksums.items():
        target = directory / name
        if target.is_file():
            continue
        log.info("downloading %s", base_url + name)
        _write_verified(target, fetch(base_url + name), expected, base_url + name)
    return directory


def download_zip_members(url: str, directory: Path, checksums: Mapping[str, str]) -> Path:
    """Download a zip archive and extract the named members, verifying each against its sha256."""
    if is_complete(directory, checksums):
        return directory
    log.info("downloading %s", url)
    try:
        archive = zipfile.ZipFile(io.BytesIO(fetch(url)))
    except zipfile.BadZipFile as exc:
        raise DataUnavailableError(f"{url} is not a zip archive: {exc}") from exc
    members = {Path(info.filename).name: info.filename for info in archive.infolist()}
    for name, expected in checksums.items():
        if name not in members:
            raise DataUnavailableError(f"{url} has no member {name}")
        _write_verified(directory / name, archive.read(members[name]), expected, url)
    return directory
