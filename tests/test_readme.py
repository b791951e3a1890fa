"""Every ```python block in README.md runs as written, with its own imports.

Each block runs in a fresh interpreter (its own namespace, its own JAX start-up: the distributed
block must come before any other JAX work) inside a temporary working directory, so files a block
writes (plots) land there. A block that fails shows its stderr tail.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
# A fence may be indented (a block inside a list item); its closing fence has the same indent.
_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```python[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.S | re.M
)
TIMEOUT_S = 300


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, dedented source) of every ```python block in ``text``."""
    blocks = []
    for m in _FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        blocks.append((line, textwrap.dedent(m.group("body"))))
    return blocks


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def test_extractor_finds_every_block():
    text = README.read_text(encoding="utf-8")
    assert len(BLOCKS) == text.count("```python") >= 12
    nested = "- item:\n\n  ```python\n  x = 1\n  ```\n"
    assert python_blocks(nested) == [(3, "x = 1\n")]


@pytest.mark.parametrize("line,source", BLOCKS, ids=[f"line{line}" for line, _ in BLOCKS])
def test_readme_block_runs(line, source, tmp_path):
    compile(source, f"README.md:{line}", "exec")  # a syntax error names the block's line
    env = dict(os.environ)
    env.pop("JAX_ENABLE_X64", None)
    proc = subprocess.run(
        [sys.executable, "-c", source],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, f"README.md block at line {line} failed:\n{proc.stderr[-3000:]}"
