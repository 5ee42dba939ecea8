"""The snapshot follower's decisions: which snapshots an inference worker swaps in."""

from __future__ import annotations

import fractions
import logging
import os
from typing import Any

import pytest
from river import linear_model, preprocessing, tree

from riverflow.consumers.inference.model_follower import ModelFollower, ServedModel, trust_from
from riverflow.errors import ConfigError
from riverflow.online_model.snapshot import SnapshotHeader, Trust, dumps
from riverflow.settings import load_settings

KEY = b"signing-key-of-16+"


def follower(
    key: bytes | None = KEY, task: str = "classification", allow_unsigned: bool = False
) -> ModelFollower:
    initial = ServedModel(linear_model.LogisticRegression(), 0, created_ts=1_000)
    return ModelFollower("logreg", task, Trust(key, allow_unsigned), initial)


def snapshot(
    version: int,
    *,
    key: bytes | None = KEY,
    model: str = "logreg",
    task: str = "classification",
    estimator: Any = None,
    created_ts: int = 5_000,
) -> bytes:
    header = SnapshotHeader(model, version, task, created_ts=created_ts, learned_count=7 * version)
    est = estimator if estimator is not None else linear_model.LogisticRegression()
    return dumps(header, est, key=key)


def test_a_newer_signed_snapshot_is_swapped_in_with_its_header() -> None:
    f = follower()
    verdict = f.offer(snapshot(3, created_ts=42_000))
    assert verdict.action == "swap"
    assert (f.current.version, f.current.created_ts, f.current.learned_count) == (3, 42_000, 21)
    assert isinstance(f.current.model, linear_model.LogisticRegression)


def test_a_pipeline_snapshot_is_accepted() -> None:
    f = follower()
    pipeline = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    assert f.offer(snapshot(1, estimator=pipeline)).action == "swap"


@pytest.mark.parametrize("version", [2, 1, 0])
def test_a_snapshot_not_newer_is_ignored_not_rejected(version: int) -> None:
    f = follower()
    f.offer(snapshot(2))
    before = f.current
    verdict = f.offer(snapshot(version))
    assert (verdict.action, verdict.reason) == ("ignore", "not_newer")
    assert f.current is before


def test_an_old_snapshot_is_ignored_before_its_signature_is_checked() -> None:
    f = follower()
    f.offer(snapshot(5))
    assert f.offer(snapshot(4, key=b"forged")).action == "ignore"


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        (snapshot(1, key=None), "unsigned"),
        (snapshot(1, key=b"another-key-of-16+"), "bad_signature"),
        (b"definitely not a snapshot", "unreadable"),
        (snapshot(1)[:-5], "bad_signature"),  # truncated payload no longer matches its HMAC
        (snapshot(1, task="regression"), "wrong_task"),
        (snapshot(1, model="hoeffding"), "wrong_model"),
        (snapshot(1, estimator={"w": fractions.Fraction(1, 2)}), "forbidden_class"),
    ],
)
def test_bad_snapshots_are_rejected_and_the_model_kept(blob: bytes, reason: str) -> None:
    f = follower()
    kept = f.current
    verdict = f.offer(blob)
    assert (verdict.action, verdict.reason) == ("reject", reason)
    assert f.current is kept
    assert verdict.message


def test_an_estimator_that_contradicts_its_header_is_wrong_task() -> None:
    f = follower()
    verdict = f.offer(snapshot(1, estimator=tree.HoeffdingTreeRegressor()))
    assert (verdict.action, verdict.reason) == ("reject", "wrong_task")
    assert "regression" in verdict.message and f.current.version == 0


def test_a_pickle_that_is_no_estimator_is_wrong_task() -> None:
    f = follower()
    verdict = f.offer(snapshot(1, estimator={"weights": [1, 2]}))
    assert (verdict.action, verdict.reason) == ("reject", "wrong_task")


@pytest.mark.parametrize("key", [None, KEY, b"another-key-16-chars"])
def test_without_a_key_every_snapshot_is_refused_as_unsigned(key: bytes | None) -> None:
    f = follower(key=None)
    verdict = f.offer(snapshot(1, key=key))
    assert (verdict.action, verdict.reason) == ("reject", "unsigned")
    assert f.current.version == 0 and "no signing key" in verdict.message
    assert f.check(snapshot(2, key=key)) is not None


def test_with_the_opt_in_unsigned_snapshots_swap_in_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    f = follower(key=None, allow_unsigned=True)
    with caplog.at_level(logging.WARNING):
        assert f.offer(snapshot(1, key=None)).action == "swap"
        assert f.offer(snapshot(2, key=b"whatever-key-16ch")).action == "swap"
    assert f.current.version == 2
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [("logreg v1 unverified" in w, "logreg v2 unverified" in w) for w in warned] == [
        (True, False),
        (False, True),
    ]


def test_the_opt_in_still_refuses_forbidden_classes() -> None:
    f = follower(key=None, allow_unsigned=True)
    verdict = f.offer(snapshot(1, key=None, estimator={"w": fractions.Fraction(1, 2)}))
    assert (verdict.action, verdict.reason) == ("reject", "forbidden_class")


def test_a_version_refused_again_is_marked_as_a_repeat() -> None:
    f = follower()
    first = f.offer(snapshot(3, key=None))
    again = f.offer(snapshot(3, key=None))
    other = f.offer(snapshot(4, key=None))
    assert [v.reason for v in (first, again, other)] == ["unsigned"] * 3
    assert [v.repeat for v in (first, again, other)] == [False, True, False]


def test_check_verifies_without_unpickling() -> None:
    f = follower()
    assert f.check(snapshot(1)) is None
    refusal = f.check(snapshot(1, key=b"another-key-16-chars"))
    assert refusal is not None and refusal.reason == "bad_signature"
    # A forbidden class is only found by unpickling: check() lets it through, offer() does not.
    hostile = snapshot(1, estimator={"w": fractions.Fraction(1, 2)})
    assert f.check(hostile) is None and f.offer(hostile).reason == "forbidden_class"


def test_a_tombstone_keeps_the_model_and_lets_a_new_lineage_in() -> None:
    f = follower()
    f.offer(snapshot(5))
    kept = f.current
    verdict = f.offer(None)
    assert (verdict.action, verdict.reason) == ("ignore", "tombstone")
    assert f.current is kept and "serving v5" in verdict.message
    # A learner that starts over after the deletion publishes from version 1.
    assert f.offer(snapshot(1)).action == "swap"
    assert f.current.version == 1
    assert f.offer(snapshot(1)).action == "ignore"


# -- trust from the settings -----------------------------------------------------------------


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Settings from these arguments only, whatever the environment of the test run holds."""
    for name in list(os.environ):
        if name.startswith("RIVERFLOW_"):
            monkeypatch.delenv(name)
    return load_settings


def test_the_key_is_what_a_process_trusts(settings: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        trust = trust_from(settings(model_signing_key=KEY.decode()), publishes=True)
    assert trust.key == KEY and not trust.allow_unsigned
    assert caplog.records == []


def test_a_key_wins_over_the_opt_in_which_is_said_to_be_ignored(
    settings: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        trust = trust_from(
            settings(model_signing_key=KEY.decode(), allow_unsigned_snapshots=True),
            publishes=False,
        )
    assert trust.key == KEY and not trust.allow_unsigned
    assert "allow_unsigned_snapshots is ignored" in caplog.text


def test_a_short_key_is_a_configuration_error(
    settings: Any,
) -> None:
    with pytest.raises(ConfigError) as info:
        trust_from(settings(model_signing_key="short-key"), publishes=False)
    assert "at least 16" in str(info.value) and "secrets.token_hex" in str(info.value)


def test_without_a_key_the_learner_refuses_to_start(
    settings: Any,
) -> None:
    with pytest.raises(ConfigError) as info:
        trust_from(settings(), publishes=True)
    message = str(info.value)
    assert "RIVERFLOW_MODEL_SIGNING_KEY" in message
    assert "RIVERFLOW_ALLOW_UNSIGNED_SNAPSHOTS=true" in message


def test_without_a_key_inference_starts_and_warns_that_it_refuses_everything(
    settings: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        trust = trust_from(settings(), publishes=False)
    assert trust == Trust(None, False, trust.allowed)
    assert "every snapshot on models is refused" in caplog.text


@pytest.mark.parametrize("publishes", [True, False])
def test_the_opt_in_is_an_insecure_warning_at_start(
    settings: Any, publishes: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        trust = trust_from(settings(allow_unsigned_snapshots=True), publishes=publishes)
    assert trust.key is None and trust.allow_unsigned
    assert "INSECURE" in caplog.text


def test_the_factory_module_and_the_operator_modules_are_allowed(
    settings: Any,
) -> None:
    trust = trust_from(
        settings(
            model_signing_key=KEY.decode(),
            model="tests.learner_models:counting",
            snapshot_allowed_modules="mymodels, mymodels2.layers",
        ),
        publishes=False,
    )
    assert trust.allowed.modules == ("tests.learner_models", "mymodels", "mymodels2.layers")
    with pytest.raises(ConfigError):
        trust_from(settings(snapshot_allowed_modules="subprocess"), publishes=False)
