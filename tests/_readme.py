"""The python code blocks of a Markdown file, shared by tests/test_readme.py and tests/test_wheel.py."""

from __future__ import annotations

import re
from pathlib import Path

_BLOCK_OR_HEADING = re.compile(r"^(#{2,3} [^\n]*)$|^```python\n(.*?)^```", flags=re.M | re.S)


def python_blocks(path: Path) -> list[tuple[str, int, str]]:
    """``(section heading, first line of the code, code)`` of each python block, in file order."""
    text = path.read_text(encoding="utf-8")
    blocks, section = [], ""
    for match in _BLOCK_OR_HEADING.finditer(text):
        if match.group(1):
            section = match.group(1).lstrip("#").strip()
        else:
            line = text.count("\n", 0, match.start(2)) + 1
            blocks.append((section, line, match.group(2)))
    return blocks


def python_code(path: Path) -> list[str]:
    """The code of each python block of ``path``, in file order."""
    return [code for _, _, code in python_blocks(path)]
