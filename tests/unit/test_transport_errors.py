"""Each transport maps its client's errors to riverflow's in one place."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError
from kafka import errors as ke

from riverflow.transport import confluent, kafka_python
from riverflow.transport.errors import (
    AbortableTransactionError,
    BrokerUnavailable,
    CommitFailed,
    Fatal,
    Fenced,
    InstanceFenced,
    RecordRejected,
    RecordTooLarge,
    Timeout,
    TopicExists,
    TopicMissing,
    TransportError,
)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ke.ProducerFencedError(), Fenced),
        (ke.FencedInstanceIdError(), InstanceFenced),
        (ke.InvalidProducerEpochError(), Fenced),
        (ke.MessageSizeTooLargeError(), RecordTooLarge),
        (ke.RecordListTooLargeError(), RecordTooLarge),
        (ke.InvalidRecordError(), RecordRejected),
        (ke.CorruptRecordError(), RecordRejected),
        (ke.CommitFailedError(), CommitFailed),
        (ke.IllegalGenerationError(), CommitFailed),
        (ke.RebalanceInProgressError(), CommitFailed),
        (ke.UnknownTopicOrPartitionError(), TopicMissing),
        (ke.TopicAlreadyExistsError(), TopicExists),
        (ke.KafkaTimeoutError(), Timeout),
        (ke.RequestTimedOutError(), Timeout),
        (ke.KafkaConnectionError(), BrokerUnavailable),
    ],
)
def test_kafka_python_errors(error: Exception, kind: type[TransportError]) -> None:
    mapped = kafka_python._error(error)
    assert type(mapped) is kind
    assert mapped.code == type(error).__name__


def test_other_kafka_python_errors_keep_their_retriability() -> None:
    retriable = kafka_python._error(ke.NotLeaderForPartitionError())
    assert type(retriable) is TransportError and retriable.retriable
    assert not kafka_python._error(ke.TopicAuthorizationFailedError()).retriable


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (KafkaError(KafkaError._FENCED, fatal=True), Fenced),
        (KafkaError(KafkaError.PRODUCER_FENCED), Fenced),
        (KafkaError(KafkaError.FENCED_INSTANCE_ID, fatal=True), InstanceFenced),
        # What a fenced static member's stream says (the cause only in the text, not fatal()).
        (
            KafkaError(
                KafkaError._FATAL,
                "Fatal error: Broker: Static consumer fenced by other consumer with same "
                "group.instance.id: OffsetCommit failed: Broker: Static consumer fenced by "
                "other consumer with same group.instance.id",
            ),
            InstanceFenced,
        ),
        (KafkaError(KafkaError._FATAL, "Fatal error: Broker: Invalid session timeout"), Fatal),
        (KafkaError(KafkaError.INVALID_PRODUCER_EPOCH, fatal=True), Fenced),
        (KafkaError(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, fatal=True), Fatal),
        (
            KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, txn_requires_abort=True),
            AbortableTransactionError,
        ),
        (KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), RecordTooLarge),
        (KafkaError(KafkaError.INVALID_RECORD), RecordRejected),
        (KafkaError(KafkaError.INVALID_MSG), RecordRejected),
        (KafkaError(KafkaError.ILLEGAL_GENERATION), CommitFailed),
        (KafkaError(KafkaError._ASSIGNMENT_LOST), CommitFailed),
        (KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART), TopicMissing),
        (KafkaError(KafkaError.TOPIC_ALREADY_EXISTS), TopicExists),
        (KafkaError(KafkaError._MSG_TIMED_OUT), Timeout),
        (KafkaError(KafkaError._TIMED_OUT), Timeout),
        (KafkaError(KafkaError._ALL_BROKERS_DOWN), BrokerUnavailable),
        (KafkaError(KafkaError._TRANSPORT), BrokerUnavailable),
    ],
)
def test_confluent_errors(error: KafkaError, kind: type[TransportError]) -> None:
    mapped = confluent._error(error)
    assert type(mapped) is kind
    assert mapped.code == error.name()


def test_other_confluent_errors_keep_their_retriability() -> None:
    retriable = confluent._error(KafkaError(KafkaError.NOT_COORDINATOR, retriable=True))
    assert type(retriable) is TransportError and retriable.retriable
    assert not confluent._error(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)).retriable


def test_retriable_kinds_say_so() -> None:
    assert BrokerUnavailable("down").retriable and Timeout("slow").retriable
    assert not Fenced("taken over").retriable and isinstance(Fenced("x"), Fatal)
    assert isinstance(RecordTooLarge("big"), RecordRejected)
