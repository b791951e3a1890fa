"""``jopt run --resume`` verifies (issue 12): kill -9 and resume is bit-exact, a corrupt newest
checkpoint falls back with a line, an edited config is refused, ``--epochs`` extends (recorded),
a missing summary is completed, a locked directory is refused, files are mode 0644."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
import yaml

from jopt import JoptError
from jopt.cli import main as cli
from jopt.distributed import list_checkpoints, restore_checkpoint, save_checkpoint
from jopt.distributed._checkpoint import _reads_joined
from jopt.experiment import config_from_dict
from jopt.experiment._artifacts import read_json, read_jsonl, strip_timing
from jopt.experiment._load import dump_config
from jopt.experiment._resume import locked, write_fingerprint
from jopt.experiment._runner import resume, run

TINY = {
    "name": "tiny",
    "seed": 1,
    "data": {"name": "digits", "val_fraction": 0.2, "test_fraction": 0.0},
    "model": {"name": "mlp", "hidden": [8]},
    "optimizer": {"name": "adam", "learning_rate": 3e-3},
    "batching": {"batch_size": 128},
    "train": {"epochs": 3, "checkpoint_every": 1},
    "output": {"progress": False, "plots": False},
}

# Runs the config in a fresh process and kills it (SIGKILL: no cleanup at all) right after
# the epoch-2 checkpoint is on disk: before the last epoch, the summary and the final save.
KILLER = """
import json, os, signal, sys
from jopt.experiment import _trainer, config_from_dict
from jopt.experiment._runner import run
orig = _trainer.GroupTrainer._checkpoint
def checkpoint(self, mb, epoch, state):
    orig(self, mb, epoch, state)
    if epoch == 2:
        os.kill(os.getpid(), signal.SIGKILL)
_trainer.GroupTrainer._checkpoint = checkpoint
run(config_from_dict(json.loads(sys.argv[1])))
"""


def _raw(tmp, **over):
    raw = json.loads(json.dumps(TINY))
    raw["output"]["runs_dir"] = str(tmp)
    for k, v in over.items():
        section, key = k.split(".")
        raw[section][key] = v
    return raw


def _yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _final_leaves(run_dir):
    _, path = list_checkpoints(run_dir)[-1]
    tree = restore_checkpoint(path, None)
    out = []
    for x in jax.tree.leaves(tree):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        out.append(np.asarray(x))
    return out


def _assert_same_run(a, b):
    assert strip_timing(read_jsonl(os.path.join(a, "metrics.jsonl"))) == strip_timing(
        read_jsonl(os.path.join(b, "metrics.jsonl"))
    )
    la, lb = _final_leaves(a), _final_leaves(b)
    assert len(la) == len(lb) > 4
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """An uninterrupted run, and one killed with SIGKILL after its epoch-2 checkpoint."""
    tmp = tmp_path_factory.mktemp("resume")
    full = run(config_from_dict(_raw(tmp / "full")))
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, json.dumps(_raw(tmp / "killed"))],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    (killed,) = [str(tmp / "killed" / d) for d in os.listdir(tmp / "killed")]
    return {"tmp": tmp, "full": full, "killed": killed}


def _copy(base, src, name):
    dst = str(base["tmp"] / name)
    shutil.copytree(base[src], dst)
    return dst


def test_kill_9_then_resume_is_bit_exact(base):
    d = _copy(base, "killed", "killed-copy")
    assert not os.path.exists(os.path.join(d, "summary.json"))  # the kill left no summary
    assert [e for e, _ in list_checkpoints(d)] == [1, 2]
    resume(d)
    assert read_json(os.path.join(d, "summary.json"))["status"] == "completed"
    _assert_same_run(base["full"], d)


def test_corrupt_newest_checkpoint_falls_back(base, capsys):
    d = _copy(base, "killed", "corrupt")
    os.unlink(os.path.join(d, "checkpoints", "epoch_000002", "_METADATA"))
    # leftovers of interrupted writes are removed by the process that holds the lock
    os.makedirs(os.path.join(d, "checkpoints", "epoch_000003.orbax-checkpoint-tmp-99"))
    open(os.path.join(d, ".tmp-abc"), "w").close()
    resume(d)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "skipped checkpoint epoch_000002" in err[0] and "_METADATA" in err[0]
    _assert_same_run(base["full"], d)  # from epoch 1 it is still the same run
    assert not [n for n in os.listdir(os.path.join(d, "checkpoints")) if "tmp" in n]
    assert not [n for n in os.listdir(d) if n.startswith(".tmp")]


def _truncate_arrays(ckpt):
    """Cut every array file of the checkpoint directory ``ckpt`` in half."""
    for root, _, files in os.walk(ckpt):
        for name in files:
            path = os.path.join(root, name)
            if "ocdbt.process_0" in root and os.path.getsize(path) > 1000:
                os.truncate(path, os.path.getsize(path) // 2)


def test_reads_pending_at_a_failed_restore_end_first():
    """orbax runs a restore in a new event loop that it closes at the first failed read;
    inside _reads_joined the other reads run to their end first."""
    done = []

    async def fail():
        raise OSError("a truncated file")

    async def read():
        await asyncio.sleep(0.01)
        done.append("read")

    async def restore():
        await asyncio.gather(fail(), read())

    before = asyncio.get_event_loop_policy()
    with _reads_joined():
        loop = asyncio.new_event_loop()  # what orbax does
        try:
            with pytest.raises(OSError, match="truncated"):
                loop.run_until_complete(restore())
        finally:
            loop.close()
    assert done == ["read"]
    assert asyncio.get_event_loop_policy() is before


def test_a_failed_restore_leaves_no_read_behind(tmp_path, monkeypatch):
    """So none is torn down later, in whatever code runs then: an "Exception ignored in" a
    read coroutine, or "Event loop is closed" in a tensorstore callback."""
    tree = {f"w{i}": np.arange(2000 * (i + 1), dtype=np.float32) for i in range(8)}
    path = save_checkpoint(tmp_path / "c", tree)
    _truncate_arrays(path)
    caught = []
    monkeypatch.setattr(sys, "unraisablehook", caught.append)
    for _ in range(3):
        with pytest.raises(Exception, match="error while reading array"):
            restore_checkpoint(path, tree)
        time.sleep(0.05)  # tensorstore's callbacks of reads still running would land now
        gc.collect()
    assert [f"{u.exc_type.__name__}: {u.exc_value}"[:200] for u in caught] == []


def test_truncated_or_missing_files_fall_back(base, capsys):
    d = _copy(base, "killed", "truncated")
    _truncate_arrays(os.path.join(d, "checkpoints", "epoch_000002"))
    resume(d)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "epoch_000002: it does not restore" in err[0]
    _assert_same_run(base["full"], d)
    # no checkpoint passes: one line naming each, before any data loading or compiling
    e = _copy(base, "killed", "all-bad")
    os.unlink(os.path.join(e, "checkpoints", "epoch_000001.json"))
    with open(os.path.join(e, "checkpoints", "epoch_000002.json"), "w") as f:
        f.write("{trunc")
    with pytest.raises(JoptError, match=r"no checkpoint of .* restores") as info:
        resume(e)
    assert "epoch_000001: its bookkeeping file .json is missing" in str(info.value)
    assert "epoch_000002: its bookkeeping file .json is unreadable" in str(info.value)


def test_edited_config_is_refused(base):
    d = _copy(base, "killed", "edited")
    path = os.path.join(d, "config.yaml")
    raw = _yaml(path)
    raw["optimizer"]["learning_rate"] = 0.1
    raw["output"]["progress"] = True  # not training-relevant: allowed
    with open(path, "w") as f:
        yaml.safe_dump(raw, f)
    with pytest.raises(JoptError, match=r"optimizer.learning_rate \(0.003 -> 0.1\)") as e:
        resume(d)
    assert "\n" not in str(e.value) and "output.progress" not in str(e.value)


def test_missing_summary_is_completed(base, capsys):
    d = _copy(base, "full", "no-summary")
    os.unlink(os.path.join(d, "summary.json"))
    resume(d)
    assert "had finished training" in capsys.readouterr().err
    s = read_json(os.path.join(d, "summary.json"))
    assert s["status"] == "completed" and s["epochs_run"] == 3
    with pytest.raises(JoptError, match="already finished all 3 epochs"):
        resume(d)


def test_lock_refuses_a_second_process(base):
    d = _copy(base, "killed", "locked")
    with locked(d), pytest.raises(JoptError, match="in use by another jopt process"):
        resume(d)
    assert not os.path.exists(os.path.join(d, "summary.json"))  # nothing was written
    assert not [n for n in os.listdir(os.path.join(d, "checkpoints")) if "tmp" in n]


def test_files_have_normal_permissions(base):
    d = base["full"]
    for root, dirs, files in os.walk(d):
        for name in files:
            mode = stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode)
            assert mode & 0o044 == 0o044, (name, oct(mode))  # group/other can read
        for name in dirs:
            assert stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode) & 0o055 == 0o055


def test_extension_is_exact_and_recorded(base, tmp_path, capsys):
    one = run(config_from_dict(_raw(tmp_path / "one", **{"train.epochs": 2})))
    # the same run as if made with a cosine schedule (config and fingerprint rewritten)
    cos = str(tmp_path / "cos")
    shutil.copytree(one, cos)
    cos_cfg = config_from_dict(
        _raw(tmp_path, **{"train.epochs": 2}) | {"schedule": {"name": "cosine"}}
    )
    with open(os.path.join(cos, "config.yaml"), "w", encoding="utf-8") as f:
        f.write(dump_config(cos_cfg))
    write_fingerprint(cos, cos_cfg)
    assert cli(["run", "--resume", one, "--epochs", "3", "--no-progress"]) == 0
    cfg = _yaml(os.path.join(one, "config.yaml"))
    assert cfg["train"]["epochs"] == 3
    ext = read_json(os.path.join(one, "fingerprint.json"))["extensions"]
    assert [(e["from_epochs"], e["to_epochs"], e["at_epoch"]) for e in ext] == [(2, 3, 2)]
    _assert_same_run(base["full"], one)  # equals a fresh 3-epoch run
    # a schedule that depends on the run's length cannot be extended exactly
    capsys.readouterr()
    assert cli(["run", "--resume", cos, "--epochs", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "depends on the run's length" in err[0]
    assert _yaml(os.path.join(cos, "config.yaml"))["train"]["epochs"] == 2
    assert read_json(os.path.join(cos, "fingerprint.json"))["extensions"] == []


def _old_fingerprint(run_dir, config, drop):
    """A fingerprint as a run made before the schema had the field ``drop`` wrote it."""
    from jopt.experiment._resume import FINGERPRINT

    write_fingerprint(run_dir, config)
    path = os.path.join(run_dir, FINGERPRINT)
    info = read_json(path)
    del info["fields"][drop]
    info["sha256"] = "0" * 64  # the old hash: it did not cover the field
    with open(path, "w") as f:
        json.dump(info, f)


def test_field_added_since_the_run_is_no_edit_at_its_default(tmp_path):
    from jopt.experiment._resume import verify

    config = config_from_dict(_raw(tmp_path))
    _old_fingerprint(str(tmp_path), config, "loss.label_smoothing")
    assert verify(str(tmp_path), config)["fields"]["optimizer.name"] == "adam"


def test_field_added_since_the_run_is_an_edit_off_its_default(tmp_path):
    from jopt.experiment._resume import verify

    config = config_from_dict(_raw(tmp_path))
    _old_fingerprint(str(tmp_path), config, "loss.label_smoothing")
    edited = config_from_dict({**_raw(tmp_path), "loss": {"label_smoothing": 0.1}})
    with pytest.raises(JoptError, match=r"loss.label_smoothing \(None -> 0.1\)") as e:
        verify(str(tmp_path), edited)
    assert "\n" not in str(e.value)
