from __future__ import annotations

import pytest

from aihub.access.rules import granted_ids, is_granted, rule_covers, rule_matches, validate_rule


@pytest.mark.parametrize(
    ("rule", "name", "expected"),
    [
        ("aihub.user.agents", "aihub.user.agents", True),
        ("aihub.user.agents", "aihub.user.agents.bot", False),
        ("aihub.user.agents.bot", "aihub.user.agents", False),
        ("aihub.user.agents.*", "aihub.user.agents.bot", True),
        ("aihub.user.agents.*", "aihub.user.agents", False),
        ("aihub.user.agents.*", "aihub.user.agents.bot.tools", False),
        ("aihub.user.agents.>", "aihub.user.agents", True),
        ("aihub.user.agents.>", "aihub.user.agents.bot", True),
        ("aihub.user.agents.>", "aihub.user.agents.bot.tools.clock", True),
        ("aihub.user.>", "aihub.user.threads.9f1c", True),
        ("aihub.>", "aihub.admin.roles", True),
        ("aihub.*.agents", "aihub.admin.agents", True),
        ("aihub.user.*.bot", "aihub.user.agents.bot", True),
        ("aihub.user.*.bot", "aihub.user.agents.other", False),
        ("aihub.user.agents.bot", "aihub.user.agents.bot", True),
        ("aihub.user.agents.bot", "aihub.user.agents.bots", False),
        ("aihub.admin.agents.>", "aihub.user.agents.bot", False),  # implication is is_granted's job
    ],
)
def test_rule_matching_follows_the_wildcard_table(rule: str, name: str, expected: bool) -> None:
    assert rule_matches(rule, name) is expected


@pytest.mark.parametrize(
    ("rules", "name", "expected"),
    [
        (["aihub.admin.agents.>"], "aihub.user.agents.bot", True),
        (["aihub.admin.>"], "aihub.user.threads", True),
        (["aihub.user.agents.>"], "aihub.admin.agents.bot", False),
        (["aihub.user.>"], "aihub.admin.roles", False),
        ([], "aihub.user.agents", False),
        (["aihub.user.threads.>", "aihub.user.agents.bot"], "aihub.user.agents.bot", True),
        (["aihub.user.threads.>", "aihub.user.agents.bot"], "aihub.user.agents.other", False),
    ],
)
def test_an_admin_rule_implies_the_user_rule_but_not_the_reverse(rules: list[str], name: str, expected: bool) -> None:
    assert is_granted(name, rules=rules) is expected


@pytest.mark.parametrize(
    ("rules", "ceiling", "name", "expected"),
    [
        (["aihub.admin.>"], [], "aihub.admin.agents.bot", True),
        (["aihub.admin.>"], ["aihub.user.>"], "aihub.admin.agents.bot", False),
        (["aihub.admin.>"], ["aihub.user.>"], "aihub.user.agents.bot", True),
        (["aihub.admin.>"], ["aihub.admin.agents.>"], "aihub.admin.agents.bot", True),
        (["aihub.admin.>"], ["aihub.admin.agents.>"], "aihub.user.collections.docs", False),
        (["aihub.user.agents.bot"], ["aihub.>"], "aihub.user.agents.bot", True),
    ],
)
def test_a_tenant_ceiling_caps_what_roles_grant(
    rules: list[str], ceiling: list[str], name: str, expected: bool
) -> None:
    assert is_granted(name, rules=rules, ceiling=ceiling) is expected


def test_granted_ids_is_none_when_a_wildcard_covers_every_id() -> None:
    assert granted_ids("user", "agents", rules=["aihub.user.agents.*"]) is None
    assert granted_ids("user", "agents", rules=["aihub.admin.>"]) is None


def test_granted_ids_lists_the_explicit_ids_otherwise() -> None:
    rules = ["aihub.user.agents.bot", "aihub.admin.agents.helper.>", "aihub.user.threads.>"]
    assert granted_ids("user", "agents", rules=rules) == {"bot", "helper"}
    assert granted_ids("admin", "agents", rules=rules) == {"helper"}
    assert granted_ids("user", "collections", rules=rules) == set()


def test_granted_ids_respects_the_ceiling() -> None:
    assert granted_ids("user", "agents", rules=["aihub.user.>"], ceiling=["aihub.user.agents.bot"]) == {"bot"}


@pytest.mark.parametrize(
    "rule",
    [
        "",
        "agents.user",
        "aihub",
        "aihub.owner.agents",
        "aihub.user.>.x",
        "aihub.user.agents..x",
        "aihub.user.a b",
    ],
)
def test_malformed_rules_are_refused(rule: str) -> None:
    with pytest.raises(ValueError):
        validate_rule(rule)


@pytest.mark.parametrize("rule", ["aihub.>", "aihub.user.>", "aihub.*.agents.*", "aihub.admin.collections.docs"])
def test_well_formed_rules_pass(rule: str) -> None:
    assert validate_rule(rule) == rule


@pytest.mark.parametrize(
    ("grantor", "rule", "expected"),
    [
        ("aihub.admin.>", "aihub.user.agents.>", True),
        ("aihub.admin.>", "aihub.admin.>", True),
        ("aihub.user.>", "aihub.admin.agents.bot", False),
        ("aihub.admin.agents.*", "aihub.user.agents.bot", True),
        ("aihub.admin.agents.*", "aihub.user.agents.>", False),
        ("aihub.user.agents.>", "aihub.user.agents.*", True),
        ("aihub.user.agents.bot", "aihub.user.agents.*", False),
    ],
)
def test_a_grantor_only_covers_rules_within_its_own(grantor: str, rule: str, expected: bool) -> None:
    assert rule_covers(grantor, rule) is expected
