"""How the API reads JSON: one set of bounds for every JSON body, the WebSocket's frames and JSON in form fields.

A body nested deeper than ``AIHUB["JSON_MAX_DEPTH"]`` is refused as unparseable (400): the stdlib parser raises
RecursionError on ~1,000 levels, and a body just under that would still overflow the stack of whatever walks it
next (validation, rendering, the database adapter). A NUL (``\\u0000``) in any string is refused as a validation
error naming where it is: PostgreSQL stores NUL in neither text nor jsonb (SQLite does), so without this the same
request was a 400 on one database and a 500 on the other.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import IO, Any

from django.core.validators import ProhibitNullCharactersValidator
from django.http import QueryDict
from rest_framework import parsers
from rest_framework.exceptions import ErrorDetail, ParseError, ValidationError

from aihub.conf import aihub_settings

NULL_CHARACTER_MESSAGE = str(ProhibitNullCharactersValidator.message)
NULL_CHARACTER_CODE = ProhibitNullCharactersValidator.code


class JSONTooDeep(ValueError):
    def __init__(self) -> None:
        super().__init__(f"nested deeper than {aihub_settings.JSON_MAX_DEPTH} levels")


class NullCharacter(ValueError):
    """A NUL in a string; ``field`` is where, as the problem's ``errors`` name fields (``content[0].text``)."""

    def __init__(self, field: str) -> None:
        super().__init__(f"Null characters are not allowed in {field or 'the body'}")
        self.field = field


def _child_path(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def check_json(value: Any) -> None:
    """Raise JSONTooDeep or NullCharacter for a parsed JSON value that breaks the bounds; a loop, not recursion,
    since the point is values too deep to recurse over."""
    max_depth = int(aihub_settings.JSON_MAX_DEPTH)
    pending: list[tuple[Any, str, int]] = [(value, "", 0)]
    while pending:
        item, path, depth = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise NullCharacter(path)
            continue
        if isinstance(item, dict):
            children: list[tuple[str | int, Any]] = []
            for key, child in item.items():
                if "\x00" in key:
                    raise NullCharacter(_child_path(path, key.replace("\x00", "\\u0000")))
                children.append((key, child))
        elif isinstance(item, list):
            children = list(enumerate(item))
        else:
            continue
        if depth >= max_depth:
            raise JSONTooDeep()
        pending.extend((child, _child_path(path, key), depth + 1) for key, child in reversed(children))


def load_json(data: str | bytes | bytearray) -> Any:
    """``json.loads`` within the bounds: ValueError (JSONDecodeError, JSONTooDeep or NullCharacter) otherwise."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise JSONTooDeep() from None
    check_json(value)
    return value


def null_character_error(exc: NullCharacter) -> ValidationError:
    return ValidationError({exc.field: [ErrorDetail(NULL_CHARACTER_MESSAGE, code=NULL_CHARACTER_CODE)]})


def check_query(query: QueryDict) -> None:
    """A NUL in a query parameter is a 400 naming it, for the reason it is in a body: the filters that pass it
    on to the database would fail there on PostgreSQL."""
    for key, values in query.lists():
        if "\x00" in key or any("\x00" in value for value in values):
            raise null_character_error(NullCharacter(key.replace("\x00", "\\u0000")))


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser within the bounds above (REST_FRAMEWORK's DEFAULT_PARSER_CLASSES)."""

    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON parse error - {JSONTooDeep()}") from None
        try:
            check_json(data)
        except JSONTooDeep as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        except NullCharacter as exc:
            raise null_character_error(exc) from None
        return data
