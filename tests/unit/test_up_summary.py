"""The served-model line of `riverflow up`'s summary: which version served most predictions and
how far the served model trails the learner."""

from __future__ import annotations

from riverflow.scrape import Page
from riverflow.up import ServedVersions, _served


def lag_page(counts: dict[str, int]) -> Page:
    """A learner page whose served_version_lag histogram holds these cumulative counts."""
    lines = ["# TYPE riverflow_served_version_lag histogram"]
    lines += [f'riverflow_served_version_lag_bucket{{le="{le}"}} {n}' for le, n in counts.items()]
    return Page.parse("\n".join(lines) + "\n")


def test_predictions_count_for_the_version_served_at_each_scrape() -> None:
    tally = ServedVersions()
    tally.add("w0", 100, 0)
    tally.add("w1", 50, 0)
    tally.add("w0", 130, 1)  # 30 more, now on version 1
    tally.add("w1", 60, None)  # a page without a version counts nothing
    tally.add("w1", 80, 1)  # 20 more since 60
    assert tally.counts == {0: 150, 1: 50}
    assert tally.most() == (0, 0.75)


def test_a_restarted_worker_counts_from_zero() -> None:
    tally = ServedVersions()
    tally.add("w0", 500, 2)
    tally.add("w0", 40, 3)  # restarted: its counter fell
    assert tally.counts == {2: 500, 3: 40}


def test_no_predictions_yet() -> None:
    assert ServedVersions().most() is None
    assert "no predictions yet" in _served(None, Page())


def test_the_line_names_the_version_its_share_and_the_median_lag() -> None:
    page = lag_page({"0.0": 10, "1.0": 70, "2.0": 100, "+Inf": 100})
    line = " ".join(_served((4, 0.62), page).split())
    assert line == "v4 for 62% of predictions; trails the learner by 1 version (median)"
    page = lag_page({"0.0": 0, "1.0": 10, "2.0": 100, "+Inf": 100})
    assert "by 2 versions (median)" in _served((0, 1.0), page)
    # No joined prediction yet: the learner has no lag to tell.
    assert "by - (median)" in _served((0, 1.0), lag_page({"0.0": 0, "+Inf": 0}))
