"""What ``jopt run --resume`` checks before it trusts a run directory.

* **Fingerprint.** ``fingerprint.json`` holds a SHA-256 of the resolved config's
  training-relevant fields (everything except ``name``, ``output``, ``sweep``, ``diagnostics``
  and ``train.checkpoint_every[_steps]``: what names, logs or saves a run, not what it computes) and
  the fields themselves, so a refusal lists which ones changed.
* **Extension.** ``--epochs N`` raises ``train.epochs`` explicitly: ``config.yaml`` and the
  fingerprint are rewritten and an ``extensions`` record is appended, so the config still
  reproduces the run. It is refused where the longer run would not equal a fresh run of ``N``
  epochs (a schedule whose values over the steps already taken depend on the run's length).
* **Lock.** ``.lock`` is held (``fcntl.flock``, released by the kernel when the process dies,
  even by ``kill -9``) while a process trains in the directory; a second run or resume of it
  is refused with one line.
* **Orphans.** Temporary files of an interrupted write (``.tmp-*``, orbax's
  ``*.orbax-checkpoint-tmp-*``) are removed by the process holding the lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from typing import Any

import numpy as np

from jopt.core.errors import JoptError
from jopt.experiment import _artifacts as art
from jopt.experiment._schema import Config, to_dict

FINGERPRINT = "fingerprint.json"
_NO_DEFAULT = object()
LOCK = ".lock"
# sections and fields that name, log or save a run but do not change what it computes
_NOT_TRAINING = (
    "name",
    "output",
    "sweep",
    "diagnostics",
    "train.checkpoint_every",
    "train.checkpoint_every_steps",
)


def _flatten(raw: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(raw, dict) and raw:
        out: dict[str, Any] = {}
        for k, v in raw.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: raw}


def training_fields(config: Config) -> dict[str, Any]:
    """The config's training-relevant fields, ``{dotted key: value}`` (JSON values)."""
    flat = _flatten(json.loads(json.dumps(to_dict(config), default=str)))
    if flat.get("optimizer.execution") in ("auto", "packed", "per_leaf"):
        # packed and per-leaf runs checkpoint the same per-leaf state: either resumes the
        # other (only the tree-form ``fused`` keeps a different state)
        flat["optimizer.execution"] = "per_leaf"
    return {
        k: v
        for k, v in sorted(flat.items())
        if not any(k == n or k.startswith(n + ".") for n in _NOT_TRAINING)
    }


def fingerprint(config: Config) -> str:
    text = json.dumps(training_fields(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def write_fingerprint(run_dir: str, config: Config, extensions: list | None = None) -> None:
    art.write_json(
        os.path.join(run_dir, FINGERPRINT),
        {
            "sha256": fingerprint(config),
            "fields": training_fields(config),
            "extensions": list(extensions or []),
        },
    )


def read_fingerprint(run_dir: str) -> dict | None:
    path = os.path.join(run_dir, FINGERPRINT)
    if not os.path.exists(path):
        return None
    try:
        info = art.read_json(path)
        if not isinstance(info, dict) or "sha256" not in info:
            raise ValueError("no sha256")
        return info
    except (OSError, ValueError) as e:
        raise JoptError(f"{path} is unreadable ({e}); the run cannot be verified") from None


def verify(run_dir: str, config: Config) -> dict | None:
    """Refuse (one line) a ``config.yaml`` whose training-relevant fields differ from the
    fingerprint's; return the fingerprint record (``None`` for a directory written before
    fingerprints existed). A field the fingerprint lacks (added to the schema since) whose
    value is the schema's default is no edit."""
    info = read_fingerprint(run_dir)
    if info is None or info["sha256"] == fingerprint(config):
        return info
    old, new = info.get("fields", {}), training_fields(config)
    changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if "fields" in info:
        # a field added to the schema after the run started is no edit at its default
        changed = [k for k in changed if k in old or new[k] != _schema_default(config, k)]
        if not changed:
            return info
    shown = ", ".join(f"{k} ({old.get(k)!r} -> {new.get(k)!r})" for k in changed[:6])
    more = f" and {len(changed) - 6} more" if len(changed) > 6 else ""
    extend = " (extend the epochs with --epochs N)" if changed == ["train.epochs"] else ""
    raise JoptError(
        f"{run_dir}/config.yaml was edited after the run started: {shown or 'fields'}{more}; "
        f"resume refuses a changed config{extend}, start a new run instead"
    )


def _schema_default(config: Config, key: str) -> Any:
    """The schema's default of the dotted field ``key`` (as JSON), or a sentinel that equals
    no value where the field has none (a required field, a key inside a free-form dict)."""
    *path, name = key.split(".")
    obj: Any = config
    for p in path:
        obj = getattr(obj, p, None)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            if f.name != name:
                continue
            if f.default is not dataclasses.MISSING:
                value = f.default
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
            else:
                break
            return json.loads(json.dumps(value, default=str))
    return _NO_DEFAULT


def check_extension(config: Config, new_epochs: int, done_steps: int, spe: int) -> None:
    """Refuse ``--epochs new_epochs`` where the extended run would differ from a fresh run of
    that length over the ``done_steps`` already taken (the schedule depends on the length)."""
    from jopt.experiment._build import schedule_multiplier

    if config.train.steps is not None:
        raise JoptError("--epochs cannot extend a run that sets train.steps")
    if new_epochs <= config.train.epochs:
        raise JoptError(
            f"--epochs {new_epochs} does not extend the run (it has train.epochs="
            f"{config.train.epochs})"
        )
    old = schedule_multiplier(config, config.train.epochs * spe, spe)
    new = schedule_multiplier(config, new_epochs * spe, spe)
    if old is None and new is None:
        return
    steps = np.arange(max(done_steps, 1), dtype=np.int32)
    a = np.ones(len(steps)) if old is None else np.asarray([float(old(s)) for s in steps])
    b = np.ones(len(steps)) if new is None else np.asarray([float(new(s)) for s in steps])
    if not np.array_equal(a, b):
        raise JoptError(
            f"--epochs cannot extend this run exactly: schedule {config.schedule.name!r} "
            "depends on the run's length, so the steps already taken would differ from a "
            f"run of {new_epochs} epochs; start a new run"
        )


def record_extension(run_dir: str, config: Config, old_epochs: int, at_epoch: int) -> None:
    """Rewrite ``config.yaml`` and the fingerprint for the extended ``config``, appending an
    ``extensions`` record."""
    from jopt.experiment._load import dump_config

    info = read_fingerprint(run_dir) or {}
    ext = list(info.get("extensions", []))
    ext.append(
        {
            "from_epochs": old_epochs,
            "to_epochs": config.train.epochs,
            "at_epoch": at_epoch,
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
    )
    art.atomic_write(os.path.join(run_dir, "config.yaml"), dump_config(config))
    write_fingerprint(run_dir, config, ext)


@contextlib.contextmanager
def locked(run_dir: str, enabled: bool = True) -> Iterator[None]:
    """Hold ``run_dir/.lock`` (an exclusive ``flock``) for the block; refuse if another
    process holds it."""
    if not enabled:
        yield
        return
    import fcntl

    path = os.path.join(run_dir, LOCK)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise JoptError(
                f"{run_dir} is in use by another jopt process (lock {path}); wait for it to finish"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def remove_orphans(run_dir: str) -> list[str]:
    """Delete leftovers of interrupted writes (call with the lock held); return their names."""
    gone = []
    for parent in (run_dir, os.path.join(run_dir, "checkpoints"), os.path.join(run_dir, "plots")):
        if not os.path.isdir(parent):
            continue
        for name in os.listdir(parent):
            if (
                name.startswith(".tmp-")
                or ".orbax-checkpoint-tmp" in name
                or name.endswith(".tmp.png")
            ):
                path = os.path.join(parent, name)
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                gone.append(name)
    return gone


def checkpoint_problem(path: str) -> str | None:
    """Why the checkpoint directory ``path`` cannot be trusted before restoring it (missing
    or unreadable bookkeeping file, missing orbax metadata), else None."""
    try:
        book = art.read_json(path + ".json")
    except FileNotFoundError:
        return "its bookkeeping file .json is missing"
    except (OSError, ValueError) as e:
        return f"its bookkeeping file .json is unreadable ({str(e).splitlines()[0]})"
    if not isinstance(book, dict) or not isinstance(book.get("last_epoch"), int):
        return "its bookkeeping file .json has no last_epoch"
    if not os.path.exists(os.path.join(path, "_METADATA")):
        return "orbax's _METADATA file is missing"
    return None


def summary_complete(run_dir: str, config: Config) -> bool:
    """Whether ``summary.json`` says the run ended and the plots it needs are there."""
    try:
        summary = art.read_json(os.path.join(run_dir, "summary.json"))
    except (OSError, ValueError):
        return False
    if not isinstance(summary, dict) or summary.get("status") not in ("completed", "diverged"):
        return False
    if config.output.plots:
        return os.path.exists(os.path.join(run_dir, "plots", "loss.png"))
    return True
