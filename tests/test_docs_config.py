"""docs/config.md is exactly what the schema generates, and it covers every field."""

import dataclasses
import pathlib
import typing

from jopt.experiment import Config, config_reference

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "config.md"


def test_config_md_matches_the_schema():
    assert DOC.read_text(encoding="utf-8") == config_reference(), (
        'docs/config.md is stale; regenerate it with: python -c "import jopt.experiment as e; '
        "open('docs/config.md', 'w').write(e.config_reference())\""
    )


def _keys(cls, prefix=""):
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        key = f"{prefix}{f.name}"
        if f.name != "kwargs":
            yield key
        if dataclasses.is_dataclass(tp):
            yield from _keys(tp, key + ".")
        elif typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            yield from _keys(typing.get_args(tp)[0], key + ".")


def test_every_field_has_a_row_with_its_default():
    text = config_reference()
    keys = list(_keys(Config))
    assert len(keys) > 60
    for key in keys:
        assert f"| `{key}` |" in text, key
    assert "| `optimizer.learning_rate` | a number | `0.001` |" in text
    assert "| `batching.strategy` | a string | `minibatch` | `full`, `minibatch`" in text
