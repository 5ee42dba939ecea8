"""``riverflow reset``: delete riverflow's topics and consumer groups on the configured broker.

What goes:

- the five topics the settings name (``RIVERFLOW_*_TOPIC``), those that exist;
- every consumer group with committed offsets on one of them (inference groups, whatever their
  name), and every group named like riverflow's own (``riverflow-infer-*``, ``riverflow-learn-*``,
  ``RIVERFLOW_GROUP_ID``) that has no offsets on other topics: learner groups commit none.

A riverflow group that has offsets on other topics only belongs to another deployment on the
same broker (other topic names) and stays, as does every other application's group. Nothing is
deleted while one of these groups has members: their workers must stop first, or they would
recreate what was deleted. The signing key and local files are not touched.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from riverflow.errors import BrokerError, ConfigError
from riverflow.options import settings_from
from riverflow.settings import Settings
from riverflow.transport import Admin, clients_for
from riverflow.transport.errors import TransportError

OWN_PREFIXES = ("riverflow-infer-", "riverflow-learn-")
# Topic deletion is asynchronous: wait until the broker no longer lists them, so that a `reset`
# followed at once by `topics create` or `up` does not find topics "marked for deletion".
DELETE_TIMEOUT_S = 30.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--yes", action="store_true", help="delete without asking")


@dataclass(frozen=True)
class Plan:
    topics: list[str]
    groups: list[str]

    def lines(self) -> list[str]:
        return [f"  topic  {t}" for t in self.topics] + [f"  group  {g}" for g in self.groups]


def plan(
    settings: Settings, existing_topics: Iterable[str], group_topics: Mapping[str, set[str]]
) -> Plan:
    """What ``reset`` deletes, from the broker's topics and each group's committed topics.

    >>> from riverflow.settings import Settings
    >>> p = plan(Settings(), ["models", "other"], {
    ...     "riverflow-learn-logreg": set(), "riverflow-infer-x": {"readings-abc"},
    ...     "my-app": {"other"}, "custom": {"sensor-readings"}})
    >>> p.topics, p.groups
    (['models'], ['custom', 'riverflow-learn-logreg'])
    """
    ours = [
        settings.readings_topic,
        settings.feedback_topic,
        settings.predictions_topic,
        settings.models_topic,
        settings.models_history_topic,
        settings.dead_letters_topic,
    ]
    present = set(existing_topics)
    groups = []
    for group, topics in group_topics.items():
        named_ours = group.startswith(OWN_PREFIXES) or group == settings.group_id
        if topics & set(ours) or (named_ours and topics <= set(ours)):
            groups.append(group)
    return Plan([t for t in ours if t in present], sorted(groups))


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    client = clients_for(settings).admin()
    try:
        todo = plan(settings, client.list_topics(), _group_topics(client))
        where = settings.bootstrap_servers
        if not todo.topics and not todo.groups:
            print(f"nothing to reset on {where}: no riverflow topic or group there")
            return 0
        print(f"riverflow reset deletes on {where}:", *todo.lines(), sep="\n")
        busy = _members(client, todo.groups)
        if busy:
            raise BrokerError(
                "these groups have running members; stop riverflow's workers first (nothing was "
                "deleted): " + ", ".join(f"{g} ({n} members)" for g, n in busy.items())
            )
        if not args.yes and not _confirmed():
            print("nothing deleted")
            return 1
        _delete(client, todo)
    finally:
        client.close()
    print(f"deleted {len(todo.topics)} topics and {len(todo.groups)} consumer groups")
    return 0


def _confirmed() -> bool:
    if not sys.stdin.isatty():
        raise ConfigError("stdin is not a terminal: pass --yes to delete without asking")
    return input("delete all of this? [y/N] ").strip().lower() in ("y", "yes")


def _group_topics(client: Admin) -> dict[str, set[str]]:
    return {
        g: {tp.topic for tp in client.group_offsets(g)}
        for g in sorted(client.list_consumer_groups())
    }


def _members(client: Admin, groups: list[str]) -> dict[str, int]:
    return {g: n for g, n in client.group_members(groups).items() if n}


def _delete(client: Admin, todo: Plan) -> None:
    try:
        client.delete_consumer_groups(todo.groups)
    except TransportError as exc:
        raise BrokerError(f"could not delete consumer groups {todo.groups}: {exc}") from None
    if not todo.topics:
        return
    try:
        client.delete_topics(todo.topics)
    except TransportError as exc:
        raise BrokerError(f"could not delete topics {todo.topics}: {exc}") from None
    deadline = time.monotonic() + DELETE_TIMEOUT_S
    while set(todo.topics) & set(client.list_topics()):
        if time.monotonic() > deadline:
            raise BrokerError(f"the broker still lists {todo.topics} {DELETE_TIMEOUT_S:.0f}s later")
        time.sleep(0.2)
