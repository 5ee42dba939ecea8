"""The local broker's jars: downloaded from Maven Central, checked against a lock, cached.

``broker/kafka-jars.lock`` pins every jar of Apache Kafka's runtime classpath by version, size and
SHA-256 (``tools/lock_kafka_jars.py`` makes it from ``broker/pom.xml``). The first start fetches
them over HTTPS, with no Maven, into ``<cache>/kafka-<version>/libs``; each jar is written under a
temporary name and renamed only once its digest matches, so an interrupted or concurrent download
never leaves a bad jar on the classpath. Later starts only read a marker.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from riverflow.errors import BrokerError

LOCK = Path(__file__).parent / "broker" / "kafka-jars.lock"
MAVEN_CENTRAL = "https://repo.maven.apache.org/maven2"
# A mirror (a company's proxy of Maven Central) is safe to use: every jar is checked by SHA-256.
REPOSITORY_ENV = "RIVERFLOW_MAVEN_REPOSITORY"
CACHE_ENV = "RIVERFLOW_CACHE_DIR"
# Each download is a fresh HTTPS connection; a few at once hide the round trips of small jars.
PARALLEL = 6
TIMEOUT_S = 30.0
CHUNK = 256 * 1024


@dataclass(frozen=True)
class Jar:
    """One pinned artifact of the lock file."""

    group: str
    artifact: str
    version: str
    size: int
    sha256: str

    @property
    def file_name(self) -> str:
        return f"{self.artifact}-{self.version}.jar"

    def url(self, repository: str) -> str:
        path = "/".join([*self.group.split("."), self.artifact, self.version, self.file_name])
        return f"{repository.rstrip('/')}/{path}"

    def line(self) -> str:
        return f"{self.group}:{self.artifact}:{self.version} {self.size} {self.sha256}"

    @classmethod
    def parse(cls, line: str) -> Jar:
        coordinates, size, sha256 = line.split()
        group, artifact, version = coordinates.split(":")
        return cls(group, artifact, version, int(size), sha256)


def locked_jars(text: str | None = None) -> list[Jar]:
    """The jars of the lock file (or of ``text`` in its format)."""
    text = LOCK.read_text() if text is None else text
    return [Jar.parse(line) for line in text.splitlines() if line.strip() and line[0] != "#"]


def kafka_version() -> str:
    """The version of Apache Kafka the lock pins (that of its ``kafka_2.13`` broker jar)."""
    return next(j.version for j in locked_jars() if j.artifact.startswith("kafka_"))


def cache_dir() -> Path:
    """``$RIVERFLOW_CACHE_DIR``, else ``$XDG_CACHE_HOME/riverflow`` (``~/.cache/riverflow``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "riverflow"


def repository() -> str:
    return os.environ.get(REPOSITORY_ENV) or MAVEN_CENTRAL


def ensure_jars(progress_to: TextIO | None = None) -> Path:
    """The folder holding every locked jar, downloading what is missing first.

    ``progress_to`` (default stderr) shows a progress bar while jars download.
    """
    text = LOCK.read_text()
    digest = hashlib.sha256(text.encode()).hexdigest()
    libs = cache_dir() / f"kafka-{kafka_version()}" / "libs"
    marker = libs / ".complete"
    if _done(marker, digest):
        return libs
    libs.mkdir(parents=True, exist_ok=True)
    with _exclusive(libs / ".lock"):  # a second process waits, then finds the jars done
        if _done(marker, digest):
            return libs
        jars = locked_jars(text)
        wanted = {j.file_name for j in jars}
        for stray in libs.glob("*.jar"):  # a jar left by an older lock must not be on the path
            if stray.name not in wanted:
                stray.unlink()
        missing = [j for j in jars if not _verified(libs / j.file_name, j)]
        if missing:
            _download(missing, libs, progress_to or sys.stderr)
        marker.write_text(digest)
    return libs


def _download(jars: list[Jar], libs: Path, out: TextIO) -> None:
    repo = repository()
    what = f"Kafka {kafka_version()} jars from {repo} into {libs}"
    bar = Progress(out, sum(j.size for j in jars), len(jars), what)
    with ThreadPoolExecutor(PARALLEL) as pool:
        futures = [pool.submit(_fetch, jar, repo, libs, bar) for jar in jars]
        try:
            for future in futures:
                future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            bar.close(ok=False)
            raise
        bar.close(ok=True)


def _fetch(jar: Jar, repo: str, libs: Path, bar: Progress) -> None:
    url = jar.url(repo)
    part = libs / f".{jar.file_name}.{os.getpid()}.part"
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(part, "wb") as f:
            while chunk := response.read(CHUNK):
                digest.update(chunk)
                f.write(chunk)
                bar.advance(len(chunk))
        if digest.hexdigest() != jar.sha256:
            raise BrokerError(
                f"{url} does not match riverflow's lock (SHA-256 {digest.hexdigest()}, expected "
                f"{jar.sha256}): refusing it. A proxy or mirrored repository may have altered it."
            )
        os.replace(part, libs / jar.file_name)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise BrokerError(
            f"could not download {url}: {reason}. The local Kafka broker's jars come from Maven "
            f"Central on first use ({len(locked_jars())} jars, cached in {libs.parent}); check the "
            f"network or proxy (HTTPS_PROXY), or set {REPOSITORY_ENV} to a Maven mirror."
        ) from None
    finally:
        part.unlink(missing_ok=True)
    bar.jar_done()


def _done(marker: Path, digest: str) -> bool:
    """The marker of a complete folder names the lock it was checked against."""
    return marker.is_file() and marker.read_text().strip() == digest


def _verified(path: Path, jar: Jar) -> bool:
    try:
        if path.stat().st_size != jar.size:
            return False
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest() == jar.sha256
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Progress:
    """Bytes and jars downloaded, as one bar redrawn in place on a terminal; elsewhere (a log
    file, CI) one line at the start and one at the end, so logs stay readable."""

    WIDTH = 30
    REDRAW_S = 0.1

    def __init__(self, out: TextIO, total_bytes: int, total_jars: int, what: str) -> None:
        self.out = out
        self.total_bytes = max(total_bytes, 1)
        self.total_jars = total_jars
        self.bytes = 0
        self.jars = 0
        self.started = time.monotonic()
        self.drawn = 0.0
        self.live = out.isatty()
        self._lock = threading.Lock()
        if not self.live:
            self._write(f"downloading {what}: {total_bytes / 1e6:.1f} MB in {total_jars} jars\n")
        else:
            self._write(f"downloading {what}\n")

    def advance(self, nbytes: int) -> None:
        with self._lock:
            self.bytes += nbytes
            self._redraw()

    def jar_done(self) -> None:
        with self._lock:
            self.jars += 1
            self._redraw(force=self.jars == self.total_jars)

    def line(self) -> str:
        done = min(self.bytes / self.total_bytes, 1.0)
        filled = int(done * self.WIDTH)
        return (
            f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {self.bytes / 1e6:5.1f}/"
            f"{self.total_bytes / 1e6:.1f} MB  {self.jars}/{self.total_jars} jars"
        )

    def close(self, ok: bool) -> None:
        elapsed = time.monotonic() - self.started
        done = f"{self.jars}/{self.total_jars} jars, {self.bytes / 1e6:.1f} MB in {elapsed:.1f} s"
        verb = "downloaded" if ok else "download failed after"
        self._write(("\r\x1b[2K" if self.live else "") + f"{verb} {done}\n")

    def _redraw(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.live and (force or now - self.drawn >= self.REDRAW_S):
            self.drawn = now
            self._write(f"\r{self.line()}")

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()
