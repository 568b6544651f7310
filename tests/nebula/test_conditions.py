"""Conditions follow the kstatus conventions: transitions are timed, types stay unique."""

from __future__ import annotations

import datetime

from nebula.resources import conditions

T0 = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(minutes=5)


def test_setting_the_same_status_again_keeps_the_transition_time() -> None:
    first = conditions.set_condition([], type_="Ready", status="False", reason="Pulling", now=T0)
    second = conditions.set_condition(
        first, type_="Ready", status="False", reason="Pulling", message="42%", now=T1
    )

    assert len(second) == 1
    assert second[0].last_transition_time == T0
    assert second[0].message == "42%"


def test_a_status_change_moves_the_transition_time() -> None:
    first = conditions.set_condition([], type_="Ready", status="False", reason="Pulling", now=T0)
    second = conditions.set_condition(
        first, type_="Ready", status="True", reason="Present", now=T1, generation=3
    )

    assert second[0].last_transition_time == T1
    assert second[0].observed_generation == 3


def test_other_conditions_are_left_as_they_were() -> None:
    stalled = conditions.set_condition([], type_="Stalled", status="True", reason="Bad", now=T0)
    both = conditions.set_condition(stalled, type_="Ready", status="False", reason="Bad", now=T1)

    assert [c.type for c in both] == ["Stalled", "Ready"]
    assert conditions.find(both, "Stalled") == stalled[0]


def test_ready_means_a_ready_condition_that_is_true() -> None:
    ready = conditions.set_condition([], type_="Ready", status="True", reason="Synced", now=T0)

    assert conditions.is_ready(conditions.Status(conditions=ready))
    assert not conditions.is_ready(conditions.Status())
    assert not conditions.is_ready(None)
