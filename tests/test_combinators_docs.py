"""The README's combinators examples run as written."""

import pathlib
import re

import pytest

_README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _blocks():
    text = _README.read_text()
    start = text.index("## Composition beyond optax")
    end = text.index("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_readme_example_runs(index, capsys):
    exec(compile(_blocks()[index], f"README combinators example {index}", "exec"), {})
    out = capsys.readouterr().out
    if index == 0:
        assert "(3, 3)" in out
    if index == 1:
        assert "0.0001" in out and "frozen" in out
    if index == 2:
        assert out.startswith("1 False")
