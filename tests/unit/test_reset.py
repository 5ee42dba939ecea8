"""Which topics and groups `riverflow reset` chooses."""

from __future__ import annotations

from riverflow.reset import plan
from riverflow.settings import Settings


def test_reset_plans_the_configured_topics_and_their_groups() -> None:
    s = Settings(models_topic="models-a", group_id="mine")
    p = plan(
        s,
        ["sensor-readings", "models-a", "models", "orders"],
        {
            "riverflow-infer-logreg": {"sensor-readings"},  # offsets on our topics
            "dashboards": {"predictions", "orders"},  # any group reading our topics
            "riverflow-learn-arf": set(),  # learner groups commit nothing
            "mine": set(),  # the configured group id
            "riverflow-infer-other": {"readings-b"},  # another deployment's topics only
            "riverflow-learn-other": {"orders"},
            "billing": {"orders"},
            "unrelated-empty": set(),
        },
    )
    assert p.topics == ["sensor-readings", "models-a"]  # only those that exist, in order
    assert p.groups == ["dashboards", "mine", "riverflow-infer-logreg", "riverflow-learn-arf"]
    assert p.lines()[0] == "  topic  sensor-readings" and p.lines()[-1].startswith("  group")


def test_nothing_to_reset_on_a_broker_without_riverflow() -> None:
    p = plan(Settings(), ["orders"], {"billing": {"orders"}})
    assert p.topics == [] and p.groups == []
