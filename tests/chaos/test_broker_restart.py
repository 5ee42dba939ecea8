"""The broker SIGKILLed mid-stream and restarted on the same port and data directory, under two
inference workers sharing one group, the learner and the simulator.

Every reading sent is predicted, every label learned once, every process rides it out (no exit,
connected again, a /metrics page that parses) and stops cleanly afterwards.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.chaos.support import assert_alive, sample, strict_page
from tests.integration.inference_support import (
    committed_total,
    event_ids,
    group,
    infer_args,
    read_all,
)
from tests.integration.kit import Workers, make_stack, read_topic, wait_until
from tests.integration.learner_support import Learners, snapshots
from tests.integration.outage_support import OwnBroker

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

OUTAGE_S = 10.0
RATE = 100  # readings/s, each labelled a second later
COUNT = 3000  # sending before, during and well after the outage
CONNECTED = "riverflow_kafka_connected"


def test_every_process_rides_out_a_broker_sigkill_and_nothing_is_lost_or_learned_twice(
    own_broker: OwnBroker, workers: Workers, learners: Learners, tmp_path: Path
) -> None:
    s = make_stack(own_broker.bootstrap, partitions=4, snapshot_interval_s=1)
    g = group()
    infer = [workers.spawn(s, *infer_args(g)) for _ in range(2)]
    learner = learners.start(s, group_id=f"chaos-learn-{g}")
    learner.wait_active(timeout=120)
    for w in infer:  # two partitions each: the group has settled
        w.wait_for(lambda pg: len(pg.select("riverflow_consumer_lag")) == 2, timeout=90)
    every = [*infer, learner]
    simulate = workers.spawn(
        s,
        *("simulate", "--rate", str(RATE), "--count", str(COUNT)),
        *("--label-delay", "1", "--seed", "5"),
        metrics=False,
    )
    wait_until(
        lambda: (
            sum(w.value("riverflow_predictions") or 0 for w in infer) >= 500
            and (learner.value("riverflow_learned") or 0) > 0
        ),
        timeout=90,
        what="predictions and learning under way",
    )

    own_broker.kill()
    killed = time.monotonic()
    wait_until(lambda: all(w.value(CONNECTED) == 0 for w in every), timeout=30, what="outage seen")
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - killed)))  # the outage itself
    assert_alive(*every, simulate)
    own_broker.start()

    assert simulate.proc.wait(timeout=180) == 0, simulate.text()[-3000:]
    assert f"sent {COUNT:,} readings and {COUNT:,} labels" in simulate.text()
    learner.wait_for(lambda pg: sample(pg, "riverflow_learned") == COUNT, timeout=120)
    wait_until(
        lambda: committed_total(s.settings, g) == COUNT, timeout=120, what="readings committed"
    )
    assert_alive(*every)
    for w in every:
        assert sample(strict_page(w), CONNECTED) == 1
    assert [w.stop() for w in every] == [0, 0, 0]

    sent = event_ids(read_topic(s.settings, s.settings.readings_topic, expect=COUNT))
    assert len(sent) == COUNT and set(sent.values()) == {1}
    predicted = event_ids(read_all(s.settings, s.settings.predictions_topic))
    assert set(predicted) == set(sent)  # each at least once
    assert snapshots(s, "logreg")[-1].header.learned_count == COUNT  # each label once
    repeated = sum(predicted.values()) - COUNT
    print(
        f"\nbroker down {OUTAGE_S:.0f}s: {COUNT} readings predicted ({repeated} repeated), "
        f"{COUNT} labels learned once"
    )
