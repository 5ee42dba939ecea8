"""`riverflow up` signs its runs: a random key kept private in its state directory."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from riverflow.errors import ConfigError
from riverflow.up import signing_key, with_signing_key


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_first_run_makes_a_private_random_key_and_later_runs_reuse_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "riverflow" / "signing.key"
    key = signing_key(path)
    assert len(key) == 64 and int(key, 16) >= 0
    assert mode(path) == 0o600
    assert signing_key(path) == key
    assert signing_key(tmp_path / "other.key") != key


def test_a_key_file_others_can_read_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    key = signing_key(path)
    path.chmod(0o644)
    assert signing_key(path) == key
    assert mode(path) == 0o600


def test_an_unusable_key_file_says_to_delete_it(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    path.write_text("\n")
    with pytest.raises(ConfigError) as info:
        signing_key(path)
    assert str(path) in str(info.value) and "delete it" in str(info.value)


def test_the_children_get_the_kept_key_unless_the_user_set_one(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    env = {"PATH": "/bin"}
    given = with_signing_key(env, path)
    assert given == {"PATH": "/bin", "RIVERFLOW_MODEL_SIGNING_KEY": signing_key(path)}
    assert env == {"PATH": "/bin"}
    mine = {"RIVERFLOW_MODEL_SIGNING_KEY": "the user's own key, long enough"}
    assert with_signing_key(mine, tmp_path / "unused.key") is mine
    assert not (tmp_path / "unused.key").exists()
