"""How deeply JSON nests, measured without recursion: the cap every untrusted JSON input passes.

Python's `json` parser, the pickling of a Celery worker's pool and most code that walks a value
recurse once per level, so a document nested a few thousand levels deep raises RecursionError
wherever it lands (the main process of a worker dies on it). Both measures here are iterative and
bounded by `limit`, so they can never raise RecursionError themselves: the raw scan runs BEFORE
`json.loads`, the walk on values built some other way (forms, builders).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# The outermost object or array is level 1: `{"a": {"b": 1}}` is 2 levels deep.
MAX_JSON_DEPTH = 32

# A JSON string (escapes included); an unterminated one runs to the end, so that brackets in it
# are never counted.
_STRING_B = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_STRING_S = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET_B = re.compile(rb"[^\[\]{}]+")
_NOT_BRACKET_S = re.compile(r"[^\[\]{}]+")
_INNERMOST = re.compile(r"[\[{][\]}]")


class TooDeep(ValueError):
    """JSON nested deeper than the cap."""

    def __init__(self, depth: int, limit: int) -> None:
        super().__init__(f"JSON is nested more than {limit} levels deep")
        self.depth = depth
        self.limit = limit


def raw_depth(raw: bytes | str, *, limit: int = MAX_JSON_DEPTH) -> int:
    """The nesting depth of JSON text, or `limit + 1` for anything deeper than `limit`.

    Brackets inside strings do not count. Malformed text (unbalanced brackets) is measured by its
    deepest prefix, which is what a recursive parser would reach before failing.
    """
    if isinstance(raw, bytes):
        brackets = _NOT_BRACKET_B.sub(b"", _STRING_B.sub(b"", raw)).decode("ascii")
    else:
        brackets = _NOT_BRACKET_S.sub("", _STRING_S.sub("", raw))
    # Fast path, at C speed: peel the innermost pairs off, one level per pass.
    depth = 0
    peeled = brackets
    while peeled and depth <= limit:
        inner = _INNERMOST.sub("", peeled)
        if len(inner) == len(peeled):
            break  # unbalanced: counted exactly below
        peeled, depth = inner, depth + 1
    if not peeled:
        return depth
    # Unbalanced, or deeper than the limit: count open brackets along the text, stopping early.
    depth = deepest = 0
    for char in brackets:
        if char in "[{":
            depth += 1
            if depth > limit:
                return limit + 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def value_depth(value: Any, *, limit: int = MAX_JSON_DEPTH) -> int:
    """The nesting depth of a parsed JSON-like value (dicts, lists, tuples), iteratively, or
    `limit + 1` for anything deeper than `limit`. A scalar is 0 levels deep."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            return limit + 1
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def check_raw(raw: bytes | str, *, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise TooDeep when JSON text nests deeper than `limit`."""
    depth = raw_depth(raw, limit=limit)
    if depth > limit:
        raise TooDeep(depth, limit)


def check_value(value: Any, *, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise TooDeep when a value nests deeper than `limit`."""
    depth = value_depth(value, limit=limit)
    if depth > limit:
        raise TooDeep(depth, limit)
