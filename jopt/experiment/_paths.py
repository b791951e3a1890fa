"""Read-only checks of what a run will touch on disk, made before any data loading or
compiling: the output directory can be created and written, the data files can be read.

Nothing is left behind: a writability probe creates and removes one empty temporary
directory in the nearest existing ancestor (``os.access`` alone is wrong for root and for
read-only file systems).
"""

from __future__ import annotations

import os
import tempfile

from jopt.core.errors import JoptError

__all__ = ["DATA_FILE_OPTIONS", "check_data_files", "check_output_dir", "check_output_file"]

# data.options keys that name files the loaders read (jopt.data.load_dataset)
DATA_FILE_OPTIONS = ("path", "images", "labels", "test_images", "test_labels")


def _nearest_existing(path: str) -> str:
    cur = os.path.abspath(path)
    while not os.path.exists(cur):
        parent = os.path.dirname(cur)
        if parent == cur:
            break
        cur = parent
    return cur


def check_output_dir(key: str, path: str | None) -> None:
    """``path`` is, or can be created as, a writable directory; else a one-line JoptError
    naming ``key``."""
    if not isinstance(path, str) or not path.strip():
        raise JoptError(f"{key} is empty; give a directory such as 'runs'")
    if os.path.exists(path) and not os.path.isdir(path):
        raise JoptError(f"{key}: {path} exists and is not a directory")
    base = _nearest_existing(path)
    if not os.path.isdir(base):
        raise JoptError(f"{key}: cannot create {path}: {base} is a file, not a directory")
    _probe(key, base, "under")


def check_output_file(key: str, path: str | None) -> None:
    """``path`` names a file that can be written: its directory exists and is writable, and
    ``path`` is not a directory."""
    if not isinstance(path, str) or not path.strip():
        raise JoptError(f"{key} is empty; give a file path")
    if os.path.isdir(path):
        raise JoptError(f"{key}: {path} is a directory, not a file")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise JoptError(f"{key}: directory {os.path.dirname(path) or parent} does not exist")
    _probe(key, parent, "in")


def _check_readable(key: str, path: object) -> None:
    if not isinstance(path, str) or not path:
        raise JoptError(f"{key} must be a file path, got {path!r}")
    if not os.path.exists(path):
        raise JoptError(f"{key}: file not found: {path}")
    if not os.path.isfile(path):
        raise JoptError(f"{key}: not a file: {path}")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:
        raise JoptError(f"{key}: cannot read {path}: {e.strerror or e}") from None


def check_data_files(config) -> None:
    """Every file the data set names (``data.name`` as a path, ``data.options.path`` ...)
    exists and can be read."""
    d = config.data
    if d.name.lower().endswith((".npz", ".csv")):
        _check_readable("data.name", d.name)
    for key in DATA_FILE_OPTIONS:
        if key in d.options and d.options[key] is not None:
            _check_readable(f"data.options.{key}", d.options[key])


def _probe(key: str, directory: str, where: str) -> None:
    """Refuse in one line unless a file can be created in ``directory`` (makes and removes an
    empty temporary directory there)."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".jopt-probe-", dir=directory))
    except OSError as e:
        raise JoptError(f"{key}: cannot write {where} {directory}: {e.strerror or e}") from None
