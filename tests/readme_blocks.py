"""The README's fenced blocks and the marks that say how its test runs them.

A block is marked by an HTML comment on the line before its fence (invisible on GitHub):

- ``<!-- readme-test -->``: run it, in order with the others; it must exit 0.
- ``<!-- readme-test: skip: REASON -->``: not run, and the reason why (every skip has one;
  it is the rest of the comment).
- ``<!-- readme-test: file NAME -->``: the block is a file's content, written as NAME.

Options of a run, separated by ``;``: ``broker`` (a local broker runs first), ``ctrl-c when
/REGEX/`` (the command runs until stopped: Ctrl-C once its output matches), ``expect /REGEX/``
(its output must match). Every ``sh`` block has a mark, so no command escapes the test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(
    r"^(?P<indent>[ ]*)```(?P<lang>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ ]*$", re.M | re.S
)
MARK = re.compile(r"<!--\s*readme-test\s*(?::\s*(?P<options>.*?))?\s*-->")
OPTION = re.compile(r"(?P<name>skip|file|ctrl-c when|expect|broker)\s*:?\s*(?P<value>.*)", re.S)


@dataclass
class Block:
    line: int
    lang: str
    body: str
    marked: bool = False
    skip: str | None = None  # the reason
    file: str | None = None
    broker: bool = False
    interrupt: re.Pattern[str] | None = None
    expect: list[re.Pattern[str]] = field(default_factory=list)

    def __str__(self) -> str:
        return f"README.md:{self.line} ```{self.lang}"


def _regex(value: str) -> re.Pattern[str]:
    if not (value.startswith("/") and value.endswith("/") and len(value) > 2):
        raise ValueError(f"not a /regex/: {value!r}")
    return re.compile(value[1:-1])


def blocks(readme: Path) -> list[Block]:
    text = readme.read_text()
    found = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip().rsplit("\n", 1)[-1]
        indent = len(m["indent"])
        body = "\n".join(line[indent:] for line in m["body"].splitlines()) + "\n"
        block = Block(text.count("\n", 0, m.start()) + 1, m["lang"].strip(), body)
        mark = MARK.fullmatch(before.strip())
        if mark:
            block.marked = True
            options = mark["options"] or ""
            if options.startswith("skip"):  # the reason is all the rest, ";" included
                options = options.replace(";", ",")
            for option in filter(None, (o.strip() for o in options.split(";"))):
                parsed = OPTION.fullmatch(option)
                if parsed is None:
                    raise ValueError(f"{block}: unknown readme-test option {option!r}")
                name, value = parsed["name"], parsed["value"].strip()
                if name == "skip":
                    block.skip = value
                elif name == "file":
                    block.file = value
                elif name == "broker":
                    block.broker = True
                elif name == "ctrl-c when":
                    block.interrupt = _regex(value)
                else:
                    block.expect.append(_regex(value))
        found.append(block)
    return found
