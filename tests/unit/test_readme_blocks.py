"""The README's blocks are all marked for its test (tests/integration/test_readme.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.readme_blocks import blocks

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_command_block_is_marked_and_every_skip_says_why() -> None:
    found = blocks(README)
    unmarked = [str(b) for b in found if b.lang in ("sh", "bash", "console") and not b.marked]
    assert unmarked == [], "mark these README blocks (tests/readme_blocks.py says how)"
    assert [str(b) for b in found if b.skip is not None and len(b.skip) < 10] == []
    assert sum(b.marked and b.skip is None and b.file is None for b in found) >= 5


def test_marks_are_parsed_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        "<!-- readme-test: broker; ctrl-c when /up/; expect /a b/ -->\n```sh\nrun\n```\n\n"
        "  <!-- readme-test: skip: no; really -->\n  ```sh\n  indented\n  ```\n"
    )
    first, second = blocks(readme)
    assert (first.broker, first.body, first.line) == (True, "run\n", 2)
    assert first.interrupt is not None and first.interrupt.pattern == "up"
    assert [p.pattern for p in first.expect] == ["a b"]
    assert (second.skip, second.body) == ("no, really", "indented\n")
    readme.write_text("<!-- readme-test: sometimes -->\n```sh\nx\n```\n")
    with pytest.raises(ValueError, match="unknown readme-test option"):
        blocks(readme)
