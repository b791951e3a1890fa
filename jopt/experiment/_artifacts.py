"""Run directories and atomic file writes.

A run directory holds ``config.yaml`` (resolved), ``metrics.jsonl`` (one JSON object per
evaluated epoch), ``summary.json``, ``plots/*.png`` and ``checkpoints/``. Every file is written
to a temporary name in the same directory and moved into place with ``os.replace``, so a reader
(or a crash) never sees half a file.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import secrets
import tempfile
from typing import Any

import numpy as np

from jopt.core.errors import JoptError

# Fields that depend on the machine's speed; everything else in metrics.jsonl is deterministic.
TIMING_FIELDS = ("time", "epoch_time", "wall_time")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()
"""Files get the mode ``open`` would give them (0644 under the usual umask 022), not the
0600 of ``tempfile.mkstemp``."""


def atomic_write(path: str, data: str | bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + fsync + ``os.replace``), with normal
    permissions (:data:`FILE_MODE`)."""
    directory = os.path.dirname(os.path.abspath(path))
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def to_jsonable(value: Any) -> Any:
    """numpy / jax scalars and arrays to plain JSON values; NaN and inf become null."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "__array__") and not isinstance(value, (str, bytes)):
        arr = np.asarray(value)
        value = arr.item() if arr.ndim == 0 else arr.tolist()
        if isinstance(value, list):
            return to_jsonable(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return to_jsonable(float(value))
    return value


def write_json(path: str, obj: Any) -> None:
    atomic_write(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n")


def read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_jsonl(path: str, rows: list[dict]) -> None:
    """Rewrite the whole log atomically (logs are short: one line per evaluated epoch)."""
    atomic_write(path, "".join(json.dumps(to_jsonable(r)) + "\n" for r in rows))


def read_jsonl(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def strip_timing(rows: list[dict]) -> list[dict]:
    """Rows without the timing fields (what must match between two identical runs)."""
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in rows]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)[:60] or "run"


def make_run_dir(parent: str, name: str) -> str:
    """Create a fresh, uniquely named directory ``parent/<name>-<UTC time>-<random>``.

    ``os.makedirs(exist_ok=False)`` makes creation the arbiter: two processes that draw the
    same name cannot both succeed, and the loser draws again.
    """
    os.makedirs(parent, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    for _ in range(100):
        path = os.path.join(parent, f"{_slug(name)}-{stamp}-{secrets.token_hex(3)}")
        try:
            os.makedirs(path, exist_ok=False)
        except FileExistsError:
            continue
        return path
    raise JoptError(f"could not create a unique run directory under {parent}")  # pragma: no cover


def check_run_dir(path: str) -> None:
    """``path`` must be a run directory (for ``--resume`` and ``jopt compare``)."""
    if not os.path.isdir(path):
        raise JoptError(f"run directory not found: {path}")
    if not os.path.exists(os.path.join(path, "config.yaml")):
        raise JoptError(f"{path} is not a run directory (no config.yaml)")
