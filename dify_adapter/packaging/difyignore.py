"""``.difyignore``: which files of a plugin folder stay out of its package. The syntax is gitignore's; this
module implements the part of it a plugin folder needs, with gitignore's meaning:

- blank lines and ``#`` comments are skipped; ``\\#`` and ``\\!`` start a pattern with a literal ``#``/``!``;
  trailing spaces are dropped unless escaped (``\\ ``);
- ``!pattern`` re-includes what an earlier pattern excluded; the last matching pattern decides; a file
  inside an excluded folder stays excluded whatever follows (git cannot re-include it either);
- ``pattern/`` matches folders only;
- a pattern with a ``/`` at its start or middle is relative to the plugin folder; one without matches a
  file or folder name at any depth;
- ``*`` and ``?`` match within one path segment, ``[abc]``/``[!a-z]`` one character of a class, ``**/x``
  ``x`` at any depth, ``a/**/b`` zero or more folders between, ``x/**`` everything inside ``x``;
  ``\\`` escapes the next character.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath


@dataclass(frozen=True)
class IgnoreRule:
    """One pattern line: a compiled `regex` over a path (`anchored`) or over a name, and its flags."""

    regex: re.Pattern[str]
    negated: bool
    directory_only: bool
    anchored: bool

    def matches(self, path: PurePosixPath, is_dir: bool) -> bool:
        """Does the rule match `path` (relative to the plugin folder, ``/``-separated)?"""
        if self.directory_only and not is_dir:
            return False
        return self.regex.fullmatch(path.as_posix() if self.anchored else path.name) is not None


def parse_ignore(text: str) -> list[IgnoreRule]:
    """The rules of a ``.difyignore`` file's text, in order."""
    rules = []
    for line in text.splitlines():
        pattern = _strip_trailing_spaces(line)
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        if negated:
            pattern = pattern[1:]
        directory_only = pattern.endswith("/") and not pattern.endswith("\\/")
        pattern = pattern.rstrip("/") if directory_only else pattern
        anchored = "/" in pattern
        pattern = pattern.removeprefix("/")
        if pattern:
            rules.append(IgnoreRule(re.compile(translate(pattern)), negated, directory_only, anchored))
    return rules


def _strip_trailing_spaces(line: str) -> str:
    stripped = line.rstrip(" ")
    if stripped.endswith("\\") and len(stripped) < len(line):
        return stripped + " "  # "\ " keeps one space (the escape is read by `translate`)
    return stripped


def translate(pattern: str) -> str:
    """The regular expression (for `re.fullmatch`) of one gitignore pattern without flags or slashes
    at its ends."""
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        at_segment_start = index == 0 or pattern[index - 1] == "/"
        if pattern.startswith("**/", index) and at_segment_start:
            out.append("(?:[^/]+/)*")
            index += 3
        elif pattern.startswith("**", index) and at_segment_start and index + 2 == len(pattern) and index > 0:
            out.append(".+")  # "x/**": everything inside x
            index += 2
        elif char == "*":
            while index < len(pattern) and pattern[index] == "*":
                index += 1
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
            index += 1
        elif char == "[":
            end = _class_end(pattern, index)
            if end is None:
                out.append(re.escape(char))
                index += 1
            else:
                out.append(_char_class(pattern[index + 1:end]))
                index = end + 1
        elif char == "\\" and index + 1 < len(pattern):
            out.append(re.escape(pattern[index + 1]))
            index += 2
        else:
            out.append(re.escape(char))
            index += 1
    return "".join(out)


def _class_end(pattern: str, start: int) -> int | None:
    """Index of the ``]`` closing the class opened at `start` (a ``]`` right after ``[``/``[!`` is literal)."""
    index = start + 1
    if index < len(pattern) and pattern[index] in "!^":
        index += 1
    if index < len(pattern) and pattern[index] == "]":
        index += 1
    while index < len(pattern):
        if pattern[index] == "\\":
            index += 2
            continue
        if pattern[index] == "]":
            return index
        index += 1
    return None


def _char_class(body: str) -> str:
    """A bracket expression's regex; it never matches ``/``."""
    negated = body[:1] in ("!", "^")
    parts: list[str] = []
    index = 1 if negated else 0
    while index < len(body):
        if body[index] == "\\" and index + 1 < len(body):
            parts.append(re.escape(body[index + 1]))
            index += 2
            continue
        parts.append("\\" + body[index] if body[index] in "\\^[]" else body[index])
        index += 1
    escaped = "".join(parts)
    return f"[^/{escaped}]" if negated else f"(?!/)[{escaped}]"


def ignored(path: PurePosixPath, is_dir: bool, rules: list[IgnoreRule]) -> bool:
    """Is `path` excluded? Its folders are checked first: a file inside an excluded folder is excluded."""
    return any(_decide(parent, True, rules) for parent in reversed(path.parents[:-1])) or _decide(path, is_dir, rules)


def _decide(path: PurePosixPath, is_dir: bool, rules: list[IgnoreRule]) -> bool:
    verdict = False
    for rule in rules:
        if rule.matches(path, is_dir):
            verdict = not rule.negated
    return verdict
