"""``riverflow models`` against the real broker: history, list, show, export, import, delete;
rollback and pin watched in a running inference worker and learner."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from riverflow.online_model.history import history_key, parse_history_key
from riverflow.online_model.snapshot import read_header
from riverflow.transport import clients_for
from tests.integration.inference_support import produce, reading
from tests.integration.kit import Stack, Workers, wait_until
from tests.integration.learner_support import base_ts, feedback, prediction, snapshots

pytestmark = pytest.mark.integration

WRONG_KEY = "another-key-of-32-characters-..."


def live(stack: Stack, topic: str) -> dict[bytes, bytes]:
    """What compaction keeps of ``topic``: the last value per key, tombstoned keys gone."""
    kept: dict[bytes, bytes] = {}
    for r in stack.read(topic):
        if r.value is None:
            kept.pop(r.key, None)
        else:
            kept[r.key] = r.value
    return kept


def history_versions(stack: Stack, name: str) -> list[int]:
    keys = [parse_history_key(k) for k in live(stack, stack.settings.models_history_topic)]
    return sorted(v for n, v in (k for k in keys if k) if n == name)


def models(stack: Stack, *args: str, code: int = 0, **env: str) -> str:
    result = stack.run("models", *args, check=False, extra_env=env or None)
    assert result.returncode == code, f"exit {result.returncode}:\n{result.stdout}{result.stderr}"
    return result.stdout + result.stderr


def test_history_list_show_export_import_delete(stack: Any, tmp_path: Path) -> None:
    s = stack(partitions=1, model_history=3)
    for version in range(1, 5):
        out = models(s, "train", "--model", "logreg", "--from", "phishing", "--name", "m")
        assert f"published m v{version}" in out
        assert re.search(r"accuracy\s+0\.\d+", out)
    # the last 3 versions stay retrievable; v1 left the window as v4 came
    assert history_versions(s, "m") == [2, 3, 4]

    listed = models(s, "list")
    row = next(line for line in listed.splitlines() if line.startswith("m "))
    assert re.search(r"^m\s+4\s+classification\s+1,250\s", row), row
    assert "verified" in row and "v2-v4" in row

    shown = models(s, "show", "m", "--version", "2")
    assert re.search(r"^version\s+2$", shown, re.M)
    assert "LogisticRegression" in shown and "parameters" in shown
    assert "made by    riverflow models train" in shown
    assert "not kept (versions kept: v2-v4)" in models(s, "show", "m", "--version", "1", code=1)
    # a key that did not sign it: refused, as a worker refuses it
    assert "wrong signature" in models(
        s, "show", "m", code=1, RIVERFLOW_MODEL_SIGNING_KEY=WRONG_KEY
    )

    exported = tmp_path / "m3.rfsnap"
    assert "m v3" in models(s, "export", "m", "--version", "3", "-o", str(exported))
    history = live(s, s.settings.models_history_topic)
    assert exported.read_bytes() == history[history_key("m", 3)]

    out = models(s, "import", str(exported), "--name", "other")
    assert "as other v1" in out
    other = read_header(live(s, s.settings.models_topic)[b"other"])[0]
    assert (other.version, other.model, other.extra["operation"]["kind"]) == (1, "other", "import")
    assert history_versions(s, "other") == [1]

    tampered = tmp_path / "tampered.rfsnap"
    blob = bytearray(exported.read_bytes())
    blob[-10] ^= 0xFF
    tampered.write_bytes(bytes(blob))
    assert "wrong signature" in models(s, "import", str(tampered), code=1)
    # no key and no opt-in: a publishing command is a configuration error
    no_key = {"RIVERFLOW_MODEL_SIGNING_KEY": ""}
    assert "no signing key" in models(s, "import", str(exported), code=2, **no_key)
    assert history_versions(s, "other") == [1]  # nothing published by the refusals

    models(s, "rollback", "m", code=2)  # usage: --to is required
    out = models(s, "delete", "m", code=2)  # not a terminal and no --yes: says what would go
    assert "v2-v4" in out and "pass --yes" in out
    assert b"m" in live(s, s.settings.models_topic)
    out = models(s, "delete", "m", "--yes")
    assert "deleted m" in out
    assert b"m" not in live(s, s.settings.models_topic)
    assert history_versions(s, "m") == []
    assert "no model 'm'" in models(s, "show", "m", code=1)
    assert [line.split()[0] for line in models(s, "list").splitlines()[1:]] == ["other"]


def send_pairs(stack: Stack, start: int, n: int) -> None:
    """``n`` labelled predictions for the learner (ids ``start`` on)."""
    p = clients_for(stack.settings).producer()
    ts = base_ts()
    for i in range(start, start + n):
        x = {"a": float(i % 10), "b": 0.5 * (i % 7)}
        p.send(stack.settings.predictions_topic, None, prediction(f"p{i}", ts + i, x))
        p.send(stack.settings.feedback_topic, None, feedback(f"p{i}", ts + i, x["a"] >= 5))
    assert p.flush(60) == 0
    p.close(10)


def test_rollback_and_pin_in_a_running_inference_worker_and_learner(
    stack: Any, workers: Workers
) -> None:
    s = stack(partitions=1, model_history=4)
    learn_args = ["--model", "logreg", "--snapshot-every", "100", "--snapshot-interval", "600"]
    learner = workers.spawn(s, "learn", *learn_args, "--group-id", f"l-{uuid.uuid4().hex[:6]}")
    infer = workers.spawn(
        s,
        "infer",
        "--model",
        "logreg",
        "--group-id",
        f"i-{uuid.uuid4().hex[:6]}",
        "--log-level",
        "DEBUG",
    )

    def served() -> float | None:
        return infer.value("riverflow_model_version")

    for version in (1, 2, 3):
        send_pairs(s, 100 * (version - 1), 100)
        learner.wait_for(lambda pg, v=version: pg.max("riverflow_model_version") == v)
    wait_until(lambda: served() == 3, what="inference serving v3")
    assert history_versions(s, "logreg") == [1, 2, 3]

    # rollback: the operator's v4 is served, the learner adopts it and publishes it as v5
    assert "published as v4" in models(s, "rollback", "logreg", "--to", "1")
    learner.wait_for(lambda pg: pg.max("riverflow_model_version") == 5)
    assert "adopted logreg v4 (rollback to v1)" in learner.text()
    wait_until(lambda: served() == 5, what="inference serving v5")
    by_version = {snap.header.version: snap for snap in snapshots(s, "logreg")}
    weights = {v: dict(by_version[v].model["LogisticRegression"].weights) for v in (1, 3, 5)}
    assert weights[5] == weights[1] != weights[3]  # the estimator went back...
    assert by_version[5].header.positions == by_version[3].header.positions  # ...nothing else
    assert by_version[5].header.learned_count == 300
    assert history_versions(s, "logreg") == [2, 3, 4, 5]  # the last 4, whoever published them

    # pin: v2 is served whatever the learner publishes, until unpinned
    assert "pinned logreg to v2" in models(s, "pin", "logreg", "2")
    wait_until(lambda: served() == 2, what="inference serving the pinned v2")
    assert infer.value("riverflow_model_pinned") == 1
    send_pairs(s, 300, 100)
    learner.wait_for(lambda pg: pg.max("riverflow_model_version") == 6)
    wait_until(lambda: "logreg v6 held: pinned to v2" in infer.text(), what="v6 held")
    produce(s.settings, [reading(i) for i in range(20)])
    wait_until(lambda: (infer.value("riverflow_predictions") or 0) >= 20, what="20 predictions")
    assert served() == 2
    listed = models(s, "list")
    assert re.search(r"^logreg\s+6\s.*\sv2\s+v3-v6$", listed, re.M), listed

    assert "unpinned logreg" in models(s, "unpin", "logreg")
    wait_until(lambda: served() == 6, what="inference back on the latest, v6")
    assert infer.value("riverflow_model_pinned") == 0
    assert "is not pinned" in models(s, "unpin", "logreg")
    assert learner.stop() == 0 and infer.stop() == 0
