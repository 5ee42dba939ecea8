"""When to give up on a record whose output Kafka keeps refusing."""

from __future__ import annotations

from kafka.errors import MessageSizeTooLargeError

from riverflow.consumers.inference.refusals import MAX_ATTEMPTS, Refusals
from riverflow.transport import TopicPartition
from tests.unit.kafka_fakes import Record

R5, R6, OTHER = Record("r", 0, 5, b""), Record("r", 0, 6, b""), Record("r", 1, 5, b"")


def test_a_record_is_given_up_after_the_attempts_then_bare_if_refused_again() -> None:
    refusals = Refusals()
    assert not refusals
    for _ in range(MAX_ATTEMPTS - 1):
        refusals.refused(R5, MessageSizeTooLargeError("1.5 MB"))
    assert refusals.give_up(R5) is None and refusals.alone(R5)
    refusals.refused(R5, MessageSizeTooLargeError("1.5 MB"))
    give_up = refusals.give_up(R5)
    assert give_up is not None and not give_up.bare
    assert (give_up.error.reason, give_up.error.stage) == ("undeliverable", "produce")
    assert "3 times: MessageSizeTooLargeError" in str(give_up.error)
    refusals.refused(R5, MessageSizeTooLargeError("its dead letter too"))
    again = refusals.give_up(R5)
    assert again is not None and again.bare
    assert refusals.give_up(R6) is None and not refusals.alone(R6)


def test_suspects_are_sent_alone_but_never_given_up() -> None:
    refusals = Refusals()
    refusals.suspect([R5, R6])
    assert refusals and refusals.alone(R5) and refusals.alone(R6)
    assert refusals.give_up(R5) is None


def test_a_committed_batch_settles_its_records_and_a_revoked_partition_forgets() -> None:
    refusals = Refusals()
    refusals.suspect([R5, R6, OTHER])
    refusals.refused(R6, MessageSizeTooLargeError())
    refusals.settle({TopicPartition("r", 0): 6})
    assert not refusals.alone(R5) and refusals.alone(R6) and refusals.alone(OTHER)
    refusals.forget([TopicPartition("r", 0), TopicPartition("r", 1)])
    assert not refusals
