"""Permission rules: ``aihub.<level>.<resource>[.<id>...]``.

``level`` is ``user`` (see and use) or ``admin`` (create, change, delete). In a rule, ``*`` matches exactly one
segment and ``>`` matches the rest (zero or more segments), so ``aihub.user.agents.>`` covers the agents
collection and every agent in it, and ``aihub.user.agents.*`` every single agent but not the collection.
An admin rule implies the user rule of the same resource.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum

ROOT = "aihub"
_SEGMENT = re.compile(r"^[A-Za-z0-9_\-:]+$")


class Level(StrEnum):
    USER = "user"
    ADMIN = "admin"


def permission(level: Level | str, resource: str, *ids: str) -> str:
    """The permission name a check asks for, e.g. ``aihub.user.agents.support-bot``."""
    return ".".join([ROOT, str(Level(level)), resource, *(str(i) for i in ids)])


def validate_rule(rule: str) -> str:
    """Return ``rule`` when well formed, else raise ValueError saying what is wrong."""
    if not isinstance(rule, str) or not rule:
        raise ValueError("A rule is a non-empty string.")
    segments = rule.split(".")
    if segments[0] != ROOT:
        raise ValueError(f"Rule {rule!r} must start with '{ROOT}.'.")
    if len(segments) < 2:
        raise ValueError(f"Rule {rule!r} must name a level ('user' or 'admin').")
    for position, segment in enumerate(segments[1:], start=1):
        if segment == ">":
            if position != len(segments) - 1:
                raise ValueError(f"Rule {rule!r}: '>' may only be the last segment.")
        elif segment == "*":
            continue
        elif position == 1 and segment not in (Level.USER, Level.ADMIN):
            raise ValueError(f"Rule {rule!r}: the level must be 'user', 'admin', '*' or '>'.")
        elif not _SEGMENT.match(segment):
            raise ValueError(f"Rule {rule!r}: segment {segment!r} is not allowed.")
    return rule


def rule_matches(rule: str, name: str) -> bool:
    """Whether one rule matches one permission name, wildcards applied (no admin-implies-user here)."""
    rule_segments = rule.split(".")
    name_segments = name.split(".")
    for position, segment in enumerate(rule_segments):
        if segment == ">":
            return True
        if position >= len(name_segments):
            return False
        if segment != "*" and segment != name_segments[position]:
            return False
    return len(rule_segments) == len(name_segments)


def _names_granting(name: str) -> tuple[str, ...]:
    """The permission names any of which grants ``name``: an admin name also grants its user name."""
    segments = name.split(".")
    if len(segments) >= 2 and segments[1] == Level.USER:
        return (name, ".".join([segments[0], Level.ADMIN, *segments[2:]]))
    return (name,)


def rules_grant(rules: Iterable[str], name: str) -> bool:
    candidates = _names_granting(name)
    return any(rule_matches(rule, candidate) for rule in rules for candidate in candidates)


def is_granted(name: str, *, rules: Iterable[str], ceiling: Iterable[str] = ()) -> bool:
    """The one permission decision: some rule grants ``name`` and, when the tenant has a ceiling, so does it."""
    ceiling = list(ceiling)
    if not rules_grant(rules, name):
        return False
    return not ceiling or rules_grant(ceiling, name)


def granted_ids(
    level: Level | str, resource: str, *, rules: Iterable[str], ceiling: Iterable[str] = ()
) -> set[str] | None:
    """The ids of ``resource`` these rules grant at ``level``: None means every id, else the explicit ones.

    Selectors use this to filter a queryset in SQL instead of checking rows one by one.
    """
    rules, ceiling = list(rules), list(ceiling)
    probe = permission(level, resource, "\x00")
    if is_granted(probe, rules=rules, ceiling=ceiling):
        return None  # a wildcard covers any id
    candidates: set[str] = set()
    for rule in [*rules, *ceiling]:
        segments = rule.split(".")
        if len(segments) == 5 and segments[4] == ">":
            segments = segments[:4]
        if len(segments) == 4 and segments[3] not in ("*", ">"):
            candidates.add(segments[3])
    return {i for i in candidates if is_granted(permission(level, resource, i), rules=rules, ceiling=ceiling)}


def rule_covers(grantor: str, rule: str) -> bool:
    """Whether ``grantor`` grants everything ``rule`` could grant (so its holder may hand ``rule`` out)."""
    grantor_segments, rule_segments = grantor.split("."), rule.split(".")
    if len(rule_segments) >= 2 and len(grantor_segments) >= 2 and grantor_segments[1] == Level.ADMIN:
        rule_segments = (
            [rule_segments[0], Level.ADMIN, *rule_segments[2:]]
            if rule_segments[1]
            in (
                Level.USER,
                Level.ADMIN,
            )
            else rule_segments
        )
    for position, segment in enumerate(grantor_segments):
        if segment == ">":
            return True
        if position >= len(rule_segments) or rule_segments[position] == ">":
            return False
        if segment != "*" and segment != rule_segments[position]:
            return False
    return len(grantor_segments) == len(rule_segments)


def rules_cover(grantor_rules: Iterable[str], rules: Iterable[str]) -> bool:
    grantor_rules = list(grantor_rules)
    return all(any(rule_covers(g, rule) for g in grantor_rules) for rule in rules)
