"""What the policy tools read from the .polar text itself, since Polar does not tell it:
where a problem is, which resource blocks declare which permissions, which rules give them."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Severity = Literal["error", "warning"]
Location = tuple[str, int]

#: Polar's own "at line L, column C [of file F]" in its messages.
LOCATION = re.compile(r" at line (\d+), column (\d+)(?: of file ([^:\n]+))?:?")
_EXCERPT = re.compile(r"^\s*(\d{3,}): (.*)$", re.MULTILINE)
_HELP = re.compile(r"\n?\s*Get help with Oso from our engineers: \S+\s*$")
_TRACE = re.compile(r"trace \(most recent evaluation last\):.*?\n\n", re.DOTALL)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# As Polar's lexer reads the text: a comment ends at \r or \n, a backslash escapes any character
# (a newline too) in a string. Read otherwise, a string or a comment hid code from `unsafe_constructs`.
_TOKEN = re.compile(r'#[^\r\n]*|"(?:[^"\\]|\\[\s\S])*"|[A-Za-z_][A-Za-z0-9_]*|\S')


# Polar lets a policy reach Python: an inline query runs while its file loads, and a method call,
# `new` or a dunder name reaches into the application's objects (`p.__getattribute__("__init__")...`
# ran shell commands in `policy check` and in every worker). A policy reads fields of the records and
# compares them, nothing else: these are refused before Polar sees the text (`unsafe_constructs`).
_REFUSED_NAMES = {
    "new": "`new` (a policy builds no application object)",
    "debug": "`debug` (Polar's debugger would wait on the worker's standard input)",
    "print": "`print` (a policy writes nothing)",
}


@dataclass(frozen=True)
class Problem:
    severity: Severity
    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = ":".join(str(part) for part in (self.file, self.line, self.column) if part is not None)
        return f"{where + ': ' if where else ''}{self.severity}: {self.message}"


@dataclass(frozen=True)
class ResourceBlock:
    name: str
    permissions: tuple[str, ...]
    location: Location


@dataclass(frozen=True)
class _Token:
    file: str
    text: str
    line: int


@dataclass
class PolicySources:
    texts: dict[str, str]
    problems: list[Problem]

    @classmethod
    def read(cls, files: Sequence[Path]) -> PolicySources:
        texts, problems = {}, []
        if not files:
            problems.append(Problem("error", "no policy file given"))
        for path in files:
            if path.suffix != ".polar":
                problems.append(Problem("error", "a policy file ends in .polar", str(path)))
            elif not path.is_file():
                problems.append(Problem("error", "no such file", str(path)))
            else:
                try:
                    texts[str(path)] = path.read_text(encoding="utf-8")
                except UnicodeDecodeError as error:
                    problems.append(Problem("error", f"not UTF-8 text (byte {error.start})", str(path)))
        return cls(texts, problems)

    def problem(self, severity: Severity, message: str, fallback: Location | None = None) -> Problem:
        """A problem located by Polar's own "at line L, column C [of file F]", else by guessing,
        else at `fallback`; Polar's source excerpt is kept, its help link dropped."""
        # A runtime error's trace is Polar's call stack: the error itself follows it.
        message = _TRACE.sub("", _HELP.sub("", message)).rstrip()
        found = LOCATION.search(message)
        if found is None:
            file, line = self._guess(message) or fallback or (None, None)
            return Problem(severity, message, file, line)
        line, column, file = int(found[1]), int(found[2]), found[3]
        rest = message[found.end() :]
        excerpt = "\n".join(f"    {m[2]}" for m in _EXCERPT.finditer(rest))
        text = message[: found.start()].strip()
        if file is None:
            file = self._file_with_line(line, _EXCERPT.search(rest))
        return Problem(severity, f"{text}\n{excerpt}" if excerpt else text, file, line, column)

    def _file_with_line(self, line: int, excerpt: re.Match[str] | None) -> str | None:
        # Errors met while running a query give a line but no file: the file whose line reads the same.
        for file, text in self.texts.items():
            lines = text.splitlines()
            if line <= len(lines) and (excerpt is None or lines[line - 1].strip() == excerpt[2].strip()):
                return file
        return None

    def _guess(self, message: str) -> Location | None:
        # "Missing implementation for required rule has_role(...)": the block declaring roles.
        required = re.search(r"required rule (has_role|has_relation)\(", message)
        if required:
            declaration = "roles" if required[1] == "has_role" else "relations"
            for _, _, location, body in self._blocks():
                if declaration in body:
                    return location
        missing = re.search(r"has no attribute '(\w+)'", message)
        return self.find(f".{missing[1]}") if missing else None

    def find(self, needle: str) -> Location | None:
        """The first line holding `needle` outside a comment."""
        for file, text in self.texts.items():
            for number, line in enumerate(text.splitlines(), start=1):
                if needle in line.split("#", 1)[0]:
                    return file, number
        return None

    def _tokens(self) -> Iterator[_Token]:
        for file, text in self.texts.items():
            for match in _TOKEN.finditer(text):
                if not match[0].startswith("#"):
                    yield _Token(file, match[0], text.count("\n", 0, match.start()) + 1)

    def unsafe_constructs(self) -> list[Problem]:
        """What a policy may not say (`_REFUSED_NAMES`, inline queries, method calls, dunder names),
        each at its file and line. authz/read_only.py refuses them again as Polar runs them."""
        found: list[tuple[_Token, str]] = []
        tokens = list(self._tokens())
        for token, after, then in zip(tokens, [*tokens[1:], None], [*tokens[2:], None, None], strict=False):
            if token.text == "?" and after is not None and after.text == "=":
                found.append((token, "an inline query (`?=`), which Polar runs while the file loads"))
            elif token.text in _REFUSED_NAMES:
                found.append((token, _REFUSED_NAMES[token.text]))
            elif token.text.startswith("__"):
                found.append((token, f"the name {token.text!r}"))
            elif token.text == '"':  # no string Polar would read either: refused rather than guessed at
                found.append((token, "an unterminated string"))
            elif token.text == "." and after is not None and then is not None and then.text == "(":
                # whatever is before the dot: `"{0.__init__}".format(Partner)` too
                found.append((after, f"a method call (`.{after.text}(...)`)"))
        return [
            Problem("error", f"a policy reads the records' fields only: {what} is refused", token.file, token.line)
            for token, what in sorted(found, key=lambda item: (item[0].file, item[0].line))
        ]

    def attributes(self) -> Iterator[tuple[_Token, bool]]:
        """Each `x.name` in the rules: the name's token, and whether it is a method call `x.name(...)`."""
        tokens = list(self._tokens())
        for before, dot, name, after in zip(tokens, tokens[1:], tokens[2:], [*tokens[3:], None], strict=False):
            if dot.text == "." and _NAME.fullmatch(name.text) and (_NAME.fullmatch(before.text) or before.text in ")]"):
                yield name, after is not None and after.text == "("

    def strings(self) -> Iterator[_Token]:
        """Each string literal of the rules, quotes included."""
        return (token for token in self._tokens() if token.text.startswith('"'))

    def _statements(self) -> Iterator[list[_Token]]:
        """Top-level statements ending in `;` (rules and facts); blocks are left out."""
        depth, statement = 0, list[_Token]()
        for token in self._tokens():
            if token.text == "{":
                depth += 1
            elif token.text == "}":
                depth -= 1
                if depth == 0 and statement and statement[0].text in ("actor", "resource"):
                    statement = []
                    continue
            if token.text == ";" and depth == 0:
                if statement:
                    yield statement
                statement = []
                continue
            statement.append(token)

    def _blocks(self) -> Iterator[tuple[str, str, Location, list[str]]]:
        """(kind, name, location, tokens) of each `actor`/`resource` block."""
        tokens = list(self._tokens())
        for i, token in enumerate(tokens):
            if token.text in ("actor", "resource") and i + 2 < len(tokens) and tokens[i + 2].text == "{":
                depth, body = 0, []
                for inner in tokens[i + 2 :]:
                    depth += {"{": 1, "}": -1}.get(inner.text, 0)
                    if depth == 0:
                        break
                    body.append(inner.text)
                yield token.text, tokens[i + 1].text, (token.file, token.line), body[1:]

    def resource_blocks(self) -> list[ResourceBlock]:
        """Each `resource` block with the permissions it declares."""
        blocks = []
        for kind, name, location, body in self._blocks():
            if kind != "resource":
                continue
            permissions: list[str] = []
            if "permissions" in body:
                start = body.index("permissions")
                end = body.index("]", start) if "]" in body[start:] else len(body)
                permissions = [t.strip('"') for t in body[start:end] if t.startswith('"')]
            blocks.append(ResourceBlock(name, tuple(permissions), location))
        return blocks

    def permission_rules(self, resource: str, permission: str) -> list[Location]:
        """The `has_permission` rules written for `resource` that name `permission`."""
        found = []
        for statement in self._statements():
            words = [t.text for t in statement]
            if words[:2] != ["has_permission", "("] or "if" not in words:
                continue
            head = words[: words.index("if")]
            if resource in head and f'"{permission}"' in words:
                found.append((statement[0].file, statement[0].line))
        return found

    def rule_count(self) -> int:
        """Rules and facts ending in `;` outside blocks, plus shorthand rules inside them."""
        count, depth, statement = 0, 0, list[str]()
        for token in self._tokens():
            if token.text == "{":
                depth += 1
            elif token.text == "}":
                depth -= 1
            elif token.text == ";":
                if depth == 0 or (depth == 1 and "if" in statement):
                    count += 1
                statement = []
                continue
            statement.append(token.text)
        return count
