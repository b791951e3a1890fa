"""Every ```python block in README.md runs as written, with its own imports.

All blocks run in ONE fresh interpreter (one JAX start-up instead of thirteen), each in its own
empty namespace, in README order, inside a temporary working directory so files a block writes
(plots) land there. Nothing a block needs can come from an earlier block's namespace; a block
that fails reports its README line and traceback.
"""

from __future__ import annotations

import json
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
TIMEOUT_S = 600


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


_DRIVER = """
import json, sys, traceback
blocks = json.load(sys.stdin)
results = {}
for line, source in blocks:
    try:
        exec(compile(source, f"README.md:{line}", "exec"), {"__name__": "__main__"})
        results[str(line)] = None
    except BaseException:
        results[str(line)] = traceback.format_exc()[-3000:]
print("RESULTS" + json.dumps(results))
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    env = dict(os.environ)
    env.pop("JAX_ENABLE_X64", None)
    # XLA's backend (LLVM) optimisations off: compiling is most of the blocks' cost; the code
    # that runs is the README's, as written.
    env["XLA_FLAGS"] = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER],
        input=json.dumps(BLOCKS),
        cwd=tmp_path_factory.mktemp("readme"),
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    marker = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS")]
    assert proc.returncode == 0 and marker, proc.stderr[-3000:]
    return json.loads(marker[-1][len("RESULTS") :])


@pytest.mark.parametrize("line,source", BLOCKS, ids=[f"line{line}" for line, _ in BLOCKS])
def test_readme_block_runs(line, source, results):
    compile(source, f"README.md:{line}", "exec")  # a syntax error names the block's line
    error = results[str(line)]
    assert error is None, f"README.md block at line {line} failed:\n{error}"
