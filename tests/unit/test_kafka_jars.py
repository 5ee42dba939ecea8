"""The jar lock and its downloader, against a throw-away HTTP repository on loopback."""

from __future__ import annotations

import hashlib
import http.server
import io
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import riverflow.kafka_jars as kj
from riverflow.errors import BrokerError

ROOT = Path(__file__).resolve().parents[2]


def test_lock_pins_the_pom_kafka_with_a_digest_per_jar() -> None:
    jars = kj.locked_jars()
    pom = (ROOT / "riverflow" / "broker" / "pom.xml").read_text()
    assert f"<kafka.version>{kj.kafka_version()}</kafka.version>" in pom
    names = {j.artifact for j in jars}
    # The broker, its tools (storage format) and the log4j binding Kafka leaves to distributions.
    assert {"kafka_2.13", "kafka-tools", "kafka-clients", "log4j-slf4j2-impl"} <= names
    assert len({j.file_name for j in jars}) == len(jars)
    assert all(re.fullmatch(r"[0-9a-f]{64}", j.sha256) and j.size > 0 for j in jars)
    # The first start downloads this much (README says "about 56 MB").
    assert 40e6 < sum(j.size for j in jars) < 80e6


def test_jar_url_follows_the_maven_layout() -> None:
    jar = kj.Jar.parse("org.apache.kafka:kafka_2.13:4.1.1 10 " + "0" * 64)
    assert jar.url("https://repo.example/m2/") == (
        "https://repo.example/m2/org/apache/kafka/kafka_2.13/4.1.1/kafka_2.13-4.1.1.jar"
    )
    assert kj.Jar.parse(jar.line()) == jar


class Repository:
    """A Maven layout served over HTTP from a folder, counting requests."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        root.mkdir()
        repo = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: object, **kwargs: object) -> None:
                super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

            def do_GET(self) -> None:
                repo.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/maven2"

    def publish(self, jar: kj.Jar, data: bytes) -> None:
        target = self.root / jar.url("maven2")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def jar_of(artifact: str, data: bytes) -> kj.Jar:
    return kj.Jar("org.example", artifact, "1.0", len(data), hashlib.sha256(data).hexdigest())


@pytest.fixture
def lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[kj.Jar, bytes]]]:
    """Two small jars in a lock of their own, and an empty cache."""
    contents = [b"kafka broker bytes" * 1000, b"tools"]
    jars = [jar_of("kafka_2.13", contents[0]), jar_of("kafka-tools", contents[1])]
    lock_file = tmp_path / "kafka-jars.lock"
    lock_file.write_text("# test lock\n" + "".join(j.line() + "\n" for j in jars))
    monkeypatch.setattr(kj, "LOCK", lock_file)
    monkeypatch.setenv(kj.CACHE_ENV, str(tmp_path / "cache"))
    yield list(zip(jars, contents, strict=True))


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Repository]:
    repository = Repository(tmp_path / "www")
    monkeypatch.setenv(kj.REPOSITORY_ENV, repository.url)
    yield repository
    repository.server.shutdown()


def test_first_use_downloads_every_jar_with_progress_then_uses_the_cache(
    lock: list[tuple[kj.Jar, bytes]], repo: Repository, tmp_path: Path
) -> None:
    for jar, data in lock:
        repo.publish(jar, data)
    out = io.StringIO()
    libs = kj.ensure_jars(out)
    assert libs == tmp_path / "cache" / "kafka-1.0" / "libs"
    for jar, data in lock:
        assert (libs / jar.file_name).read_bytes() == data
    assert "downloaded 2/2 jars" in out.getvalue()
    assert sorted(p.name for p in libs.iterdir() if p.name.endswith(".part")) == []
    asked = len(repo.requests)
    again = io.StringIO()
    assert kj.ensure_jars(again) == libs
    assert len(repo.requests) == asked and again.getvalue() == ""


def test_a_jar_that_does_not_match_the_lock_is_refused_naming_its_url(
    lock: list[tuple[kj.Jar, bytes]], repo: Repository
) -> None:
    (good, good_data), (bad, _) = lock
    repo.publish(good, good_data)
    repo.publish(bad, b"tampered")
    with pytest.raises(BrokerError, match=re.escape(bad.url(repo.url))) as caught:
        kj.ensure_jars(io.StringIO())
    assert "SHA-256" in str(caught.value)
    libs = kj.cache_dir() / "kafka-1.0" / "libs"
    assert not (libs / bad.file_name).exists()  # never on the classpath
    assert not (libs / ".complete").exists()


def test_offline_is_a_clear_error_naming_the_url(
    lock: list[tuple[kj.Jar, bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        offline = f"http://127.0.0.1:{s.getsockname()[1]}/maven2"
    monkeypatch.setenv(kj.REPOSITORY_ENV, offline)
    with pytest.raises(BrokerError, match=r"could not download http://127\.0\.0\.1:\d+/maven2/"):
        kj.ensure_jars(io.StringIO())


def test_a_partial_cache_is_completed_and_stray_jars_are_removed(
    lock: list[tuple[kj.Jar, bytes]], repo: Repository
) -> None:
    (first, first_data), (second, second_data) = lock
    libs = kj.cache_dir() / "kafka-1.0" / "libs"
    libs.mkdir(parents=True)
    (libs / first.file_name).write_bytes(first_data)  # kept: it verifies
    (libs / second.file_name).write_bytes(b"cut sho")  # an interrupted copy: fetched again
    (libs / "old-dependency-0.9.jar").write_bytes(b"x")  # left by an older lock
    repo.publish(second, second_data)
    kj.ensure_jars(io.StringIO())
    assert sorted(p.name for p in libs.glob("*.jar")) == sorted([first.file_name, second.file_name])
    assert (libs / second.file_name).read_bytes() == second_data
    assert [p for p in repo.requests if first.file_name in p] == []


def test_progress_bar_counts_bytes_and_jars() -> None:
    bar = kj.Progress(io.StringIO(), 2_000_000, 4, "jars")
    bar.advance(1_000_000)
    bar.jar_done()
    assert bar.line().endswith("1.0/2.0 MB  1/4 jars")
    assert bar.line().count("#") == kj.Progress.WIDTH // 2
