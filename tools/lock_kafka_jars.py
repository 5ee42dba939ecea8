"""Regenerate ``riverflow/broker/kafka-jars.lock`` from ``riverflow/broker/pom.xml``.

A maintainer's tool (it needs Maven; riverflow itself does not): Maven resolves the pom's runtime
classpath, and each jar is written to the lock with its size and SHA-256. Each jar's SHA-1 is
also checked against the ``.sha1`` file Maven Central publishes beside it, so a lock is never
made from a corrupted local repository.

    python tools/lock_kafka_jars.py    # after changing a version in pom.xml
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

BROKER = Path(__file__).resolve().parent.parent / "riverflow" / "broker"
sys.path.insert(0, str(BROKER.parent.parent))

from riverflow.kafka_jars import LOCK, MAVEN_CENTRAL, Jar  # noqa: E402


def resolve() -> list[tuple[Jar, Path]]:
    """Every runtime jar of the pom, with its file in the local Maven repository."""
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "deps.txt"
        subprocess.run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(BROKER / "pom.xml"),
                "dependency:list",
                "-DincludeScope=runtime",
                "-DoutputAbsoluteArtifactFilename=true",
                f"-DoutputFile={listing}",
            ],
            check=True,
        )
        lines = listing.read_text().splitlines()
    jars = []
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) != 6 or parts[2] != "jar":  # group:artifact:jar:version:scope:path
            continue
        group, artifact, _, version, _, path = parts
        data = Path(path).read_bytes()
        jar = Jar(group, artifact, version, len(data), hashlib.sha256(data).hexdigest())
        published = urllib.request.urlopen(jar.url(MAVEN_CENTRAL) + ".sha1", timeout=30).read()
        if published.decode().split()[0] != hashlib.sha1(data).hexdigest():
            raise SystemExit(f"{path} differs from Maven Central's {jar.url(MAVEN_CENTRAL)}")
        jars.append((jar, Path(path)))
    return sorted(jars, key=lambda j: (j[0].group, j[0].artifact))


def main() -> None:
    jars = [jar for jar, _ in resolve()]
    header = (
        "# Every jar on the runtime classpath of riverflow/broker/pom.xml (Apache Kafka's broker\n"
        "# and tools): group:artifact:version, size in bytes, SHA-256. riverflow downloads them\n"
        "# from Maven Central and refuses any that differs. Made by tools/lock_kafka_jars.py.\n"
    )
    LOCK.write_text(header + "".join(f"{j.line()}\n" for j in jars))
    print(f"{LOCK}: {len(jars)} jars, {sum(j.size for j in jars) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
