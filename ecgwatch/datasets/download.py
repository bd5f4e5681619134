"""Fetch a data set into the user cache and verify it, for users who have no local copy.

Every file is checked against a pinned sha256 before it is used, and is moved into place only after the
check, so an interrupted or tampered download never looks like a valid data set.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from pathlib import Path

from tqdm import tqdm

from ecgwatch.datasets.errors import DataUnavailableError

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/ecgwatch`` (``~/.cache/ecgwatch``), overridable with ``ECGWATCH_CACHE_DIR``."""
    override = os.environ.get("ECGWATCH_CACHE_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ecgwatch"


CHUNK_BYTES = 1 << 20
ATTEMPTS = 3  # a dropped connection or a 5xx is retried, with 1 s then 2 s between attempts


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, target: Path, timeout: float = 60.0) -> Path:
    """Stream ``url`` into ``target`` in 1 MiB chunks (never the whole archive in memory), with a progress bar
    on a terminal, retrying transient failures; a 4xx (a wrong URL) fails at once."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            _stream(url, target, timeout)
            return target
        except urllib.error.HTTPError as exc:
            if exc.code < 500 or attempt == ATTEMPTS:
                raise DataUnavailableError(f"could not download {url}: {exc}") from exc
        except OSError as exc:
            if attempt == ATTEMPTS:
                raise DataUnavailableError(f"could not download {url} after {ATTEMPTS} attempts: {exc}") from exc
        log.warning("download failed; retrying", extra={"url": url, "attempt": attempt})
        time.sleep(2 ** (attempt - 1))
    raise AssertionError("unreachable")


def _stream(url: str, target: Path, timeout: float) -> None:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - URLs are pinned constants or test servers
        total = int(response.headers.get("Content-Length") or 0) or None
        bar = tqdm(total=total, unit="B", unit_scale=True, desc=Path(url).name, disable=not sys.stderr.isatty())
        with bar, target.open("wb") as out:
            for block in iter(lambda: response.read(CHUNK_BYTES), b""):
                out.write(block)
                bar.update(len(block))


def _verify_into(target: Path, downloaded: Path, expected_sha256: str, source: str) -> None:
    """Move ``downloaded`` to ``target`` only if its sha256 is the pinned one."""
    actual = _file_sha256(downloaded)
    if actual != expected_sha256:
        raise DataUnavailableError(
            f"checksum mismatch for {target.name} from {source}: expected sha256 {expected_sha256}, got {actual}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    downloaded.replace(target)


def is_complete(directory: Path, checksums: Mapping[str, str]) -> bool:
    return all((directory / name).is_file() for name in checksums)


def download_files(base_url: str, directory: Path, checksums: Mapping[str, str]) -> Path:
    """Download ``base_url + name`` for each name, verifying each against its sha256."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, expected in checksums.items():
        target = directory / name
        if target.is_file():
            continue
        log.info("downloading %s", base_url + name)
        with tempfile.TemporaryDirectory(dir=directory) as tmp:
            _verify_into(target, fetch(base_url + name, Path(tmp) / name), expected, base_url + name)
    return directory


def download_zip_members(url: str, directory: Path, checksums: Mapping[str, str]) -> Path:
    """Download a zip archive to a temporary file and extract the named members, each verified by sha256."""
    if is_complete(directory, checksums):
        return directory
    log.info("downloading %s", url)
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        archive_path = fetch(url, Path(tmp) / "archive.zip")
        try:
            archive = zipfile.ZipFile(archive_path)
        except zipfile.BadZipFile as exc:
            raise DataUnavailableError(f"{url} is not a zip archive: {exc}") from exc
        with archive:
            members = {Path(info.filename).name: info.filename for info in archive.infolist()}
            for name, expected in checksums.items():
                if name not in members:
                    raise DataUnavailableError(f"{url} has no member {name}")
                extracted = Path(tmp) / f"member-{name}"
                with archive.open(members[name]) as source, extracted.open("wb") as out:
                    shutil.copyfileobj(source, out, CHUNK_BYTES)
                _verify_into(directory / name, extracted, expected, url)
    return directory
