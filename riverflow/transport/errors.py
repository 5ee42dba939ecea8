"""What a Kafka operation can fail with, in riverflow's own terms.

Each transport maps its client's errors to these types in one function (``_error`` in
:mod:`riverflow.transport.kafka_python` and :mod:`riverflow.transport.confluent`), so a worker
decides what to do from the type alone: retry, abort a transaction, give up on one record, or
stop writing.
"""

from __future__ import annotations

from riverflow.errors import RiverflowError


class TransportError(RiverflowError):
    """A Kafka operation failed. ``retriable``: the same call may succeed later (a broker
    restarting, a leader moving); ``code``: the client's own name for the error, for logs."""

    retriable = False

    def __init__(self, message: str, code: str = "", retriable: bool | None = None) -> None:
        super().__init__(message)
        self.code = code
        if retriable is not None:
            self.retriable = retriable


class BrokerUnavailable(TransportError):
    """No broker answered (down, restarting, unreachable): the call may succeed later."""

    retriable = True


class Timeout(TransportError):
    """The call did not complete in time; whether it took effect is unknown."""

    retriable = True


class CommitFailed(TransportError):
    """An offset commit was refused because the group moved on (a rebalance): the partitions may
    belong to another member now, which re-reads from the last committed offsets."""


class TopicMissing(TransportError):
    """The topic or partition does not exist."""


class TopicExists(TransportError):
    """A topic to create exists already."""


class RecordRejected(TransportError):
    """Kafka refused this record for its own content: the same bytes fail the same way again,
    unlike timeouts and disconnects, which a retry outlasts."""


class RecordTooLarge(RecordRejected):
    """The record is larger than the client, the topic or the broker accepts."""


class AbortableTransactionError(TransportError):
    """The open transaction cannot commit: abort it; the producer stays usable after that."""


class Fatal(TransportError):
    """The client can do nothing more: close it (and make a new one if there is work left)."""


class InstanceFenced(Fatal):
    """Another process joined the consumer group under this member's static instance id
    (``group.instance.id``): carrying on would process its partitions twice."""


class Fenced(Fatal):
    """A newer producer with the same transactional id took over: this one must stop writing."""
