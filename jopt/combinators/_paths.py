"""Parameter paths and glob-style path patterns.

A leaf's *path* is its keys joined by ``/``: ``{"params": {"Dense_0": {"kernel": w}}}`` gives
``params/Dense_0/kernel``; list and tuple positions appear as numbers, attributes by name.

A *pattern* is a glob over paths:

- ``*`` matches within one segment (no ``/``), ``?`` one character of a segment;
- ``**`` matches any number of whole segments, zero included;
- ``|`` separates alternatives: ``*/bias|*/scale``;
- a pattern is matched against the end of the path, on segment boundaries, so ``*/bias`` and
  ``bias`` match ``params/Dense_0/bias``; a leading ``/`` anchors it at the root instead.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import jax

from jopt.core import JoptError


def key_name(key: Any) -> str:
    """One path segment as a string."""
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def path_str(path: tuple) -> str:
    """A key path (from ``jax.tree_util``) as ``a/b/0/c``."""
    return "/".join(key_name(k) for k in path)


def leaf_paths(tree: Any) -> list[str]:
    """The path of every leaf of ``tree``, in flattening order."""
    return [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _segment_regex(segment: str) -> str:
    out = []
    for ch in segment:
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(ch))
    return "".join(out)


def _alternative_regex(alt: str) -> str:
    anchored = alt.startswith("/")
    segments = alt.strip("/").split("/")
    if any(s == "" for s in segments):
        raise JoptError(f"path pattern {alt!r} has an empty segment; write a/b, a/*/c or a/**")
    body = ""
    for i, seg in enumerate(segments):
        if seg == "**":
            # Any number of whole segments: "(x/)*" before a later segment, "(/x)*" at the end.
            body += "(?:[^/]+/)*" if i < len(segments) - 1 else ("(?:/?[^/]+)*" if i else ".*")
            continue
        if "**" in seg:
            raise JoptError(f"path pattern {alt!r}: '**' must be a whole segment, as in a/**/b")
        body += _segment_regex(seg) + ("/" if i < len(segments) - 1 else "")
    body = body.replace("/(?:/?", "(?:/")
    return ("^" if anchored else "^(?:.*/)?") + body + "$"


@functools.lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> re.Pattern:
    """Compile a path pattern (see the module docstring) to a regular expression."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise JoptError(f"a path pattern must be a non-empty string, got {pattern!r}")
    alts = [a.strip() for a in pattern.split("|")]
    if any(not a for a in alts):
        raise JoptError(f"path pattern {pattern!r} has an empty alternative around '|'")
    return re.compile("|".join(f"(?:{_alternative_regex(a)})" for a in alts))


def matches(pattern: str, path: str) -> bool:
    """Whether ``path`` matches ``pattern``."""
    return compile_pattern(pattern).match(path) is not None
