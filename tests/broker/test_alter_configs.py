"""The AlterConfigs / IncrementalAlterConfigs rule, pure: which explicit configs a topic has
after one request's entries."""

from __future__ import annotations

import pytest

from quorumq import protocol as p
from quorumq.broker._alter_configs import altered_configs, config_delta
from quorumq.errors import InvalidConfig, InvalidRequest

DEFAULTS = {"cleanup.policy": "delete", "retention.ms": "604800000", "segment.ms": "604800000"}
KNOWN = {*DEFAULTS, "replication.strategy"}
SET, DELETE, APPEND, SUBTRACT = p.CONFIG_SET, p.CONFIG_DELETE, p.CONFIG_APPEND, p.CONFIG_SUBTRACT


def alter(current: dict[str, str], *changes: tuple[str, int, str | None], incremental: bool = True):
    return altered_configs(
        current, changes, incremental=incremental, defaults=DEFAULTS, known=KNOWN
    )


def test_alter_configs_replaces_every_override() -> None:
    current = {"retention.ms": "1000", "segment.ms": "5000"}
    assert alter(current, ("retention.ms", SET, "2000"), incremental=False) == {
        "retention.ms": "2000"
    }
    assert alter(current, incremental=False) == {}


def test_incremental_alter_changes_only_what_it_names() -> None:
    current = {"retention.ms": "1000", "segment.ms": "5000"}
    assert alter(current, ("retention.ms", SET, "2000"), ("segment.ms", DELETE, None)) == {
        "retention.ms": "2000"
    }
    assert alter(current, ("cleanup.policy", DELETE, None)) == current  # not set: no change


def test_append_and_subtract_work_on_list_configs_from_their_default() -> None:
    assert alter({}, ("cleanup.policy", APPEND, "compact")) == {"cleanup.policy": "delete,compact"}
    both = {"cleanup.policy": "delete,compact"}
    assert alter(both, ("cleanup.policy", APPEND, "compact")) == both
    assert alter(both, ("cleanup.policy", SUBTRACT, "delete")) == {"cleanup.policy": "compact"}
    with pytest.raises(InvalidConfig, match="not a list"):
        alter({}, ("retention.ms", APPEND, "5"))


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        (
            (("retention.ms", SET, "1"), ("retention.ms", DELETE, None)),
            InvalidRequest,
            "more than once",
        ),
        ((("retention.ms", SET, None),), InvalidRequest, "no value"),
        ((("retention.ms", 9, "1"),), InvalidRequest, "unknown config operation"),
        ((("log.retention.hours", SET, "1"),), InvalidConfig, "unknown topic config"),
        ((("replication.strategy", SET, "isr"),), InvalidConfig, "chosen when a topic"),
        ((("replication.strategy", DELETE, None),), InvalidConfig, "chosen when a topic"),
    ],
)
def test_bad_entries_are_refused(
    changes: tuple[tuple[str, int, str | None], ...], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        alter({"replication.strategy": "quorum"}, *changes)


def test_the_strategy_may_be_given_again_unchanged() -> None:
    current = {"replication.strategy": "quorum"}
    assert alter(current, ("replication.strategy", SET, "quorum"), ("retention.ms", SET, "1"))
    assert alter(current, ("replication.strategy", SET, "quorum"), incremental=False) == current


def test_config_delta_is_what_a_config_change_record_carries() -> None:
    before = {"retention.ms": "1", "segment.ms": "2"}
    after = {"retention.ms": "1", "cleanup.policy": "compact"}
    assert config_delta(before, after) == ({"cleanup.policy": "compact"}, ("segment.ms",))
