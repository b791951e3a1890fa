"""Configs that name user code (issue 16.1): the examples/ package trains through the runner
(flax linen, flax NNX and equinox models, a user data function, a user loss), a sweep over 2
seeds, a bit-exact resume and a determinism check; every bad reference is one line, exit 2.

All runs share this process and are tiny (about 100 parameters, 120 examples, 2 epochs of
4 steps).
"""

from __future__ import annotations

import os
import shutil
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jopt import JoptError
from jopt.cli import main as cli
from jopt.data import load_dataset
from jopt.experiment import load_config
from jopt.experiment._artifacts import read_json, read_jsonl, strip_timing
from jopt.train import LossSpec, cross_entropy

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples")
QUIET = ["output.plots=false", "output.progress=false", "train.epochs=1"]


def _config(name: str, tmp, *more: str):
    over = [*QUIET, f"output.runs_dir={tmp}", *more]
    return load_config(os.path.join(EXAMPLES, f"{name}.yaml"), over)


def _leaves(run_dir):
    from jopt.distributed import list_checkpoints, restore_checkpoint

    _, path = list_checkpoints(run_dir)[-1]
    out = []
    for x in jax.tree.leaves(restore_checkpoint(path, None)):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        out.append(np.asarray(x))
    return out


def _same_run(a: str, b: str) -> None:
    rows_a = strip_timing(read_jsonl(os.path.join(a, "metrics.jsonl")))
    rows_b = strip_timing(read_jsonl(os.path.join(b, "metrics.jsonl")))
    assert rows_a == rows_b and len(rows_a) >= 1
    la, lb = _leaves(a), _leaves(b)
    assert len(la) == len(lb) > 4
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two epochs of each example config (checkpoint every epoch), a second identical linen
    run, and a one-epoch 2-seed sweep of the NNX config."""
    from jopt.experiment import run, sweep

    tmp = tmp_path_factory.mktemp("user_code")
    out = {"tmp": tmp}
    two = ["train.epochs=2", "train.checkpoint_every=1"]  # 4 steps an epoch
    for name in ("linen", "nnx", "equinox"):
        out[name] = run(_config(name, tmp / name, *two))
    out["linen_again"] = run(_config("linen", tmp / "again", *two))
    out["sweep"] = sweep(_config("nnx", tmp / "sweep", "sweep.seeds=2", "output.checkpoints=false"))
    return out


@pytest.mark.parametrize("name", ["linen", "nnx", "equinox"])
def test_each_example_trains(runs, name):
    summary = read_json(os.path.join(runs[name], "summary.json"))
    assert summary["status"] == "completed"
    rows = read_jsonl(os.path.join(runs[name], "metrics.jsonl"))
    assert all(np.isfinite(r["train_loss"]) and np.isfinite(r["val_loss"]) for r in rows)
    assert 0.0 <= rows[-1]["val_accuracy"] <= 1.0
    config = load_config(os.path.join(runs[name], "config.yaml"))  # finds the code again
    assert config.code_path == [os.path.abspath(EXAMPLES)]


def test_two_runs_are_identical(runs):
    _same_run(runs["linen"], runs["linen_again"])


@pytest.mark.parametrize("name", ["linen", "nnx", "equinox"])
def test_resume_is_bit_exact(runs, name):
    from jopt.experiment import resume

    d = str(runs["tmp"] / f"resumed-{name}")
    shutil.copytree(runs[name], d)
    # as if killed after the epoch-1 checkpoint: no epoch-2 checkpoint, no summary
    shutil.rmtree(os.path.join(d, "checkpoints", "epoch_000002"))
    os.unlink(os.path.join(d, "checkpoints", "epoch_000002.json"))
    os.unlink(os.path.join(d, "summary.json"))
    resume(d)
    assert read_json(os.path.join(d, "summary.json"))["status"] == "completed"
    _same_run(runs[name], d)  # NNX batch stats and RNG counts, equinox state included


def test_sweep_over_two_seeds(runs):
    losses = {}
    for root, _, files in os.walk(runs["sweep"]):
        if "metrics.jsonl" in files:
            rows = read_jsonl(os.path.join(root, "metrics.jsonl"))
            losses[os.path.basename(root)] = rows[-1]["train_loss"]
    assert len(losses) == 2, sorted(os.listdir(runs["sweep"]))
    a, b = losses.values()
    assert np.isfinite(a) and np.isfinite(b) and a != b  # the seeds build different NNX params


# -- the data and loss contracts ----------------------------------------------------------------


def test_data_function_returns_go_through_the_same_checks():
    def given(*, seed):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(20, 3))
        y = np.arange(20) % 2
        return {"x": x, "y": y, "x_val": x[:6], "y_val": y[:6], "x_test": x[:4], "y_test": y[:4]}

    ds = load_dataset(given, seed=3, val_fraction=0.5, test_fraction=0.5)
    assert ds.sizes() == {"train": 20, "val": 6, "test": 4}  # given splits: fractions unused
    assert abs(float(ds.x_train.mean())) < 1e-6  # standardized on train
    a = load_dataset(
        lambda *, seed: (np.arange(40.0).reshape(20, 2) * seed, np.arange(20) % 2),
        seed=2,
        val_fraction=0.2,
    )
    assert a.sizes() == {"train": 11, "val": 4, "test": 5} and a.task == "classification"
    bad = {
        "returned list": lambda: [1, 2],
        "unknown key(s) ['z']": lambda: {"x": np.ones((4, 2)), "y": np.zeros(4), "z": 1},
        "'x_val' and 'y_val' must come together": lambda: {
            "x": np.ones((4, 2)),
            "y": np.zeros(4),
            "x_val": np.ones((2, 2)),
        },
        "but data.task is 'classification'": lambda: {
            "x": np.ones((4, 2)),
            "y": np.zeros(4),
            "task": "regression",
        },
        "class labels must be integers": lambda: (np.ones((4, 2)), np.full(4, 0.5)),
        "raised ZeroDivisionError": lambda: 1 // 0,
    }
    for what, fn in bad.items():
        with pytest.raises(JoptError, match="data function") as info:
            load_dataset(fn, task="classification")
        assert what in str(info.value) and "\n" not in str(info.value)


def test_user_loss_is_exact_per_example():
    x = jnp.asarray([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
    y = jnp.asarray([2, 1])
    spec = LossSpec(task="classification", num_classes=3, loss="ce", loss_fn=cross_entropy)
    builtin = LossSpec(task="classification", num_classes=3)
    t = jax.nn.one_hot(y, 3, dtype=jnp.float32)
    np.testing.assert_array_equal(spec.per_example()(x, t), builtin.per_example()(x, t))
    scalar = LossSpec(task="classification", num_classes=3, loss_fn=lambda o, t: jnp.sum(o))
    with pytest.raises(JoptError, match=r"expected per-example float losses of shape \[2\]"):
        scalar.per_example()(x, t)


# -- bad references: one line, exit 2, through `jopt validate` ----------------------------------

USER = {
    "ok_mod.py": (
        "import numpy as np\n"
        "def load(*, seed, n=80):\n"
        "    return np.ones((n, 3)) * np.arange(n)[:, None], np.arange(n) % 2\n"
        "def needs(*, seed, path):\n"
        "    return load(seed=seed)\n"
        "def bad_return(*, seed):\n"
        "    return [1, 2, 3]\n"
        "def loss_one_arg(outputs):\n"
        "    return outputs\n"
        "def loss_scalar(outputs, targets):\n"
        "    return (outputs * targets).sum()\n"
        "def model_fn(width):\n"
        "    return width\n"
        "class Plain:\n"
        "    pass\n"
        "VALUE = 3\n"
        "def linen_net(num_outputs):\n"
        "    import flax.linen as nn\n"
        "    class Net(nn.Module):\n"
        "        @nn.compact\n"
        "        def __call__(self, x, train=False):\n"
        "            return nn.Dense(num_outputs)(x)\n"
        "    return Net()\n"
        "def nnx_net(input_shape, num_outputs, *, rngs):\n"
        "    from flax import nnx\n"
        "    return nnx.Linear(input_shape[0], num_outputs, rngs=rngs)\n"
    ),
    "syntax_mod.py": "def f(:\n",
    "import_mod.py": "import a_module_that_is_not_there_at_all\n",
    "raise_mod.py": "raise RuntimeError('boom at import')\n",
}
BASE = (
    "name: t\n"
    "data: {name: 'ok_mod:load'}\n"
    "model: {name: mlp}\n"
    "optimizer: {name: adam, learning_rate: 1.0e-3}\n"
    "train: {epochs: 1}\n"
    "output: {plots: false, progress: false}\n"
)
BAD = [
    (["data.name=ok_mod:load:x"], "is not a code reference"),
    (["model.name=no_such_module:Net"], "no module 'no_such_module'"),
    (["model.name=ok_mod:Nothing"], "has no attribute 'Nothing'"),
    (["model.name=ok_mod:VALUE"], "is not callable (int)"),
    (["model.name=ok_mod:Plain"], "not a flax linen, flax NNX or equinox Module"),
    (["model.name=ok_mod:model_fn"], "needs argument(s) ['width']"),
    (["model.name=ok_mod:model_fn", "model.options.depth=2"], "takes no argument(s) ['depth']"),
    (["model.name=ok_mod:model_fn", "model.hidden=[4]"], "configure the built-in models"),
    (["model.name=ok_mod:model_fn", "model.options.width=3"], "returned int, not a flax"),
    (
        ["model.name=ok_mod:model_fn", "model.options.width=3", "regularization.dropout=0.1"],
        "takes no 'dropout' argument",
    ),
    (["data.name=ok_mod:needs"], "needs argument(s) ['path']"),
    (["data.name=ok_mod:bad_return"], "data function ok_mod:bad_return returned list"),
    (["loss.name=ok_mod:loss_one_arg"], "takes 1 positional argument(s), 2 are passed"),
    (["loss.name=ok_mod:loss_scalar"], "expected per-example float losses"),
    (["loss.options.gamma=2"], "loss.options are keyword arguments of a user loss"),
    (["model.name=syntax_mod:X"], "syntax_mod.py:1: SyntaxError"),
    (["model.name=import_mod:X"], "No module named 'a_module_that_is_not_there_at_all'"),
    (["model.name=raise_mod:X"], "raise_mod.py:1: RuntimeError: boom at import"),
]


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    code = tmp_path / "code"
    code.mkdir()
    for name, text in USER.items():
        (code / name).write_text(text)
    (tmp_path / "cfg.yaml").write_text(BASE + f"code_path: ['{code}']\n")
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for name in USER:  # the next case imports afresh
        sys.modules.pop(name[:-3], None)


def test_a_good_reference_validates(user_dir, capsys):
    assert cli(["validate", "cfg.yaml"]) == 0
    assert "ok_mod:load" in capsys.readouterr().out
    for factory in ("linen_net", "nnx_net"):  # functions returning a module are models too
        assert cli(["validate", "cfg.yaml", f"model.name=ok_mod:{factory}"]) == 0
        assert f"ok_mod:{factory}" in capsys.readouterr().out


@pytest.mark.parametrize(("overrides", "pattern"), BAD, ids=[p for _, p in BAD])
def test_bad_references_are_one_line(user_dir, capsys, overrides, pattern):
    code = cli(["validate", "cfg.yaml", *overrides])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert pattern in lines[0], lines[0]


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        (["model.name=ok_mod:Nothing"], "has no attribute 'Nothing'"),
        (["data.name=ok_mod:bad_return"], "returned list"),
        (["loss.name=ok_mod:loss_scalar"], "expected per-example float losses"),
    ],
)
def test_run_refuses_before_writing(user_dir, capsys, overrides, pattern):
    before = sorted(p for p in os.listdir(user_dir))
    code = cli(["run", "cfg.yaml", *overrides, f"output.runs_dir={user_dir / 'runs'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and pattern in err[0], err
    assert sorted(os.listdir(user_dir)) == before  # no run directory, nothing half-written


def test_a_shadowed_module_is_refused(user_dir, capsys):
    assert cli(["validate", "cfg.yaml", "--quiet"]) == 0  # imports ok_mod from code/
    other = user_dir / "other"
    other.mkdir()
    (other / "ok_mod.py").write_text(USER["ok_mod.py"])
    (user_dir / "cfg2.yaml").write_text(BASE + f"code_path: ['{other}']\n")
    assert cli(["validate", "cfg2.yaml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is already imported from" in err[0], err
