"""``jopt run`` trains packed by default; the layout never changes what a run computes or saves.

- ``optimizer.execution``: ``auto`` resolves to ``packed`` where ``jopt.fused.packed_layout``
  accepts the optimizer and to ``per_leaf`` (one logged line, recorded in summary.json)
  elsewhere; ``packed`` is then refused in one line; the retired ``optimizer.fused: true`` is
  refused with a pointer to ``execution``.
- A packed epoch equals a per-leaf epoch (<= 1e-5) on one run, on a vmapped sweep group of two
  learning rates and under ZeRO-1 (``DataParallel(zero=1)``, on this process's devices); the
  state it returns is the per-leaf state, with the same optimizer log keys and memory rows.
- Checkpoints are per leaf: a packed run resumes as a per-leaf run and the other way round,
  ending with the parameters and metrics of an uninterrupted run.

(Every shipped config packed vs per-leaf: ``tests/test_configs.py``.)
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jopt import JoptError
from jopt.bench import memory_report
from jopt.distributed import DataParallel, list_checkpoints, make_data_mesh, restore_checkpoint
from jopt.experiment import config_from_dict, setup
from jopt.experiment._artifacts import read_json, read_jsonl
from jopt.experiment._program import build_program, init_group
from jopt.experiment._runner import resume, run
from jopt.train import optimizer_logs

TINY = {
    "name": "tiny",
    "seed": 3,
    "data": {"name": "digits", "val_fraction": 0.2, "test_fraction": 0.2},
    "model": {"name": "mlp", "hidden": [16, 16]},
    "optimizer": {"name": "adam", "learning_rate": 3e-3},
    "schedule": {"name": "cosine"},
    "regularization": {"weight_decay": 0.01},  # two leaf classes: decayed and not
    "batching": {"strategy": "minibatch", "batch_size": 64},
    "train": {"epochs": 2},
    "output": {"progress": False, "plots": False},
}
TOL = 1e-5


def _cfg(tmp=None, *over):
    raw = json.loads(json.dumps(TINY))
    if tmp is not None:
        raw["output"]["runs_dir"] = str(tmp)
    return config_from_dict(raw, list(over))


@pytest.fixture(scope="module")
def tiny_setup():
    return setup(_cfg())


def _close(a, b, tol=TOL):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=tol)


def _epoch(config, s, K=1, parallel=None):
    program = build_program(config, s, K, parallel)
    state, _ = init_group(program, [config] * K, jnp.asarray(s.data.x_train[:1]), parallel)
    x, y = jnp.asarray(s.data.x_train), jnp.asarray(s.data.y_train)
    if parallel is not None:
        state = parallel.shard_state(state)
        x, y = parallel.replicate(x, y)
        epoch = parallel.jit_epoch(program.epoch_fn, state)
    else:
        epoch = jax.jit(program.epoch_fn)
    out, metrics = epoch(state, x, y)
    return program, jax.device_get(out), jax.device_get(metrics)


def test_auto_resolves_to_packed_and_matches_per_leaf(tiny_setup):
    packed, sp, mp = _epoch(_cfg(), tiny_setup)
    leafy, sl, ml = _epoch(_cfg(None, "optimizer.execution=per_leaf"), tiny_setup)
    assert packed.execution == "packed" and packed.execution_note is None
    assert len(packed.layout.groups) == 2  # decayed weights and the rest
    assert leafy.execution == "per_leaf" and leafy.layout is None
    _close((sp.params, sp.opt_state, sp.step), (sl.params, sl.opt_state, sl.step))
    for k in ("train_loss", "train_accuracy", "grad_norm"):
        np.testing.assert_allclose(mp[k], ml[k], rtol=0, atol=TOL)
    # logs, hyperparameter names and memory rows are per parameter path either way
    assert set(optimizer_logs(sp.opt_state)) == set(optimizer_logs(sl.opt_state))
    rows_p = memory_report(packed.tx, sp.params, layout=packed.layout).as_dict()
    rows_l = memory_report(leafy.tx, sl.params).as_dict()
    assert rows_p["per_slot"] == rows_l["per_slot"]


def test_vmapped_group_packed_equals_per_leaf(tiny_setup):
    lrs = ("optimizer.learning_rate=0.01",)
    a = [_cfg(), _cfg(None, *lrs)]
    leafy = "optimizer.execution=per_leaf"
    b = [_cfg(None, leafy), _cfg(None, *lrs, leafy)]
    out = []
    for configs in (a, b):
        program = build_program(configs[0], tiny_setup, 2)
        state, _ = init_group(program, configs, jnp.asarray(tiny_setup.data.x_train[:1]))
        x, y = jnp.asarray(tiny_setup.data.x_train), jnp.asarray(tiny_setup.data.y_train)
        out.append((program.execution, jax.device_get(jax.jit(program.epoch_fn)(state, x, y))))
    (ea, (sa, ma)), (eb, (sb, mb)) = out
    assert (ea, eb) == ("packed", "per_leaf")
    _close(sa.params, sb.params)
    np.testing.assert_allclose(ma["train_loss"], mb["train_loss"], rtol=0, atol=TOL)
    assert abs(float(ma["train_loss"][0] - ma["train_loss"][1])) > 1e-4  # members differ


def test_zero1_packed_equals_per_leaf(tiny_setup):
    n = len(jax.devices())
    dp = DataParallel(make_data_mesh(n), zero=1)
    s = setup(_cfg(None, f"batching.batch_size={64 * n}"))
    packed, sp, mp = _epoch(_cfg(None, f"batching.batch_size={64 * n}"), s, parallel=dp)
    _, sl, ml = _epoch(
        _cfg(None, f"batching.batch_size={64 * n}", "optimizer.execution=per_leaf"), s, parallel=dp
    )
    assert packed.execution == "packed" and packed.layout.multiple_of == n
    _close(sp.params, sl.params)
    np.testing.assert_allclose(mp["train_loss"], ml["train_loss"], rtol=0, atol=TOL)


def test_refused_optimizers_fall_back_or_refuse(tiny_setup, capsys):
    ada = _cfg(None, "optimizer.name=adafactor", "regularization.weight_decay=0")
    program = build_program(ada, tiny_setup)
    assert program.execution == "per_leaf" and program.layout is None
    note = program.execution_note
    assert note.startswith("training per leaf: ") and "\n" not in note
    assert f"tiny: {note}" in capsys.readouterr().err
    over = ("optimizer.name=adafactor", "regularization.weight_decay=0")
    strict = _cfg(None, *over, "optimizer.execution=packed")
    with pytest.raises(JoptError, match="execution: per_leaf") as e:
        build_program(strict, tiny_setup)
    assert "\n" not in str(e.value)
    with pytest.raises(JoptError, match=r"optimizer\.execution: fused") as e:
        _cfg(None, "optimizer.fused=true")
    assert "\n" not in str(e.value)
    with pytest.raises(JoptError, match=r"optimizer\.execution must be one of"):
        _cfg(None, "optimizer.execution=vectorized")


def test_summary_records_the_resolved_execution(tmp_path):
    over = ("train.epochs=1", "output.checkpoints=false", "optimizer.name=adafactor")
    d = run(_cfg(tmp_path, *over, "regularization.weight_decay=0"))
    summary = read_json(os.path.join(d, "summary.json"))
    assert summary["execution"] == "per_leaf"
    assert summary["execution_note"].startswith("training per leaf: ")


def _set_execution(run_dir, old, new):
    path = os.path.join(run_dir, "config.yaml")
    with open(path) as f:
        text = f.read()
    assert text.count(f"execution: {old}") == 1
    with open(path, "w") as f:
        f.write(text.replace(f"execution: {old}", f"execution: {new}"))


def _params(path):
    return restore_checkpoint(path, None)["state"]["params"]


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """An uninterrupted (packed) run; runs stopped after epoch 1 and resumed the other way.

    Packed and per-leaf runs agree (the tests above), so one uninterrupted run is the
    reference for both directions."""
    tmp = tmp_path_factory.mktemp("packed_resume")
    full = run(_cfg(tmp, "output.checkpoints=true"))
    out = {}
    for first, then in (("auto", "per_leaf"), ("per_leaf", "packed")):
        stopped = run(
            _cfg(tmp, f"optimizer.execution={first}", "output.checkpoints=true"), stop_after=1
        )
        _set_execution(stopped, first, then)
        out[first] = (full, resume(stopped))
    return out


@pytest.mark.parametrize("first", ["auto", "per_leaf"])
def test_resume_across_layouts(resumed, first):
    full, res = resumed[first]
    assert read_json(os.path.join(res, "summary.json"))["status"] == "completed"
    expect = "per_leaf" if first == "auto" else "packed"
    assert read_json(os.path.join(res, "summary.json"))["execution"] == expect
    ra = read_jsonl(os.path.join(full, "metrics.jsonl"))
    rb = read_jsonl(os.path.join(res, "metrics.jsonl"))
    assert [r["epoch"] for r in rb] == [1, 2]
    for a, b in zip(ra, rb, strict=True):
        for k in ("train_loss", "val_loss", "val_accuracy"):
            assert abs(a[k] - b[k]) <= TOL, (k, a[k], b[k])
    (_, pa), (_, pb) = list_checkpoints(full)[-1], list_checkpoints(res)[-1]
    _close(_params(pa), _params(pb))


def _dots(jaxpr, shape):
    """dot_general equations producing an output of ``shape``, in ``jaxpr`` and its sub-jaxprs."""
    n = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            n += sum(tuple(v.aval.shape) == shape for v in eqn.outvars)
        for p in eqn.params.values():
            for sub in p if isinstance(p, list | tuple) else (p,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    n += _dots(inner, shape)
    return n


def test_frozen_leaves_get_no_gradient_and_train_as_per_leaf(tiny_setup):
    """A frozen group's leaves are cut from a stop_gradient (their own buffer packed, the
    leaves themselves per leaf), also under the default non-finite guard, which judges a step
    by the gradients the optimizer reads: neither step has the dot_general producing the
    frozen kernel's cotangent, and both layouts give the same run, metrics included."""
    from jopt.fused import unread_buffers, unread_leaves
    from jopt.train import init_train_state, make_train_step, pack_train_state

    freeze = "optimizer.groups=[{pattern: 'dense_0/**', freeze: true}]"
    packed, sp, mp = _epoch(_cfg(None, freeze), tiny_setup)
    _, sl, ml = _epoch(_cfg(None, freeze, "optimizer.execution=per_leaf"), tiny_setup)
    assert packed.execution == "packed"
    assert len(unread_buffers(packed.tx, packed.layout)) == 1
    assert sum(unread_leaves(packed.tx, sl.params)) == 2  # dense_0's kernel and bias
    _close((sp.params, sp.opt_state), (sl.params, sl.opt_state))
    for key in ("train_loss", "grad_norm"):
        np.testing.assert_allclose(mp[key], ml[key], rtol=0, atol=TOL)
    shape = tuple(sp.params["dense_0"]["kernel"].shape[1:])  # drop the member axis
    s = tiny_setup
    x, y = jnp.asarray(s.data.x_train[:64]), jnp.asarray(s.data.y_train[:64])
    batch = (x[None], y[None], jnp.ones((1, 64)), jax.random.key(1))
    counts = {}
    for name, cfg in (("frozen", _cfg(None, freeze)), ("trained", _cfg())):
        program = build_program(cfg, s)
        state = init_train_state(s.model, program.tx, x[:1], jax.random.key(0))
        st = pack_train_state(state, program.tx, program.layout, program.layout.offsets())
        packed_step = make_train_step(s.model, program.tx, s.spec, layout=program.layout)
        leaf_step = make_train_step(s.model, program.tx, s.spec)
        counts[name] = [
            _dots(jax.make_jaxpr(packed_step)(st, *batch).jaxpr, shape),
            _dots(jax.make_jaxpr(leaf_step)(state, *batch).jaxpr, shape),
        ]
    # the trained model takes one (in, out) dot more in each layout: the kernel's gradient
    assert [t - f for t, f in zip(counts["trained"], counts["frozen"], strict=True)] == [1, 1]


@pytest.mark.parametrize("hidden", [[16, 16], [16, 16, 16]])
def test_epoch_with_offsets_as_arguments_equals_per_leaf(tiny_setup, hidden, monkeypatch):
    """``epoch_fn(state, x, y, layout.offsets())`` gives the per-leaf epoch's results, with
    the model's views as static splits (no repeated matrix shape, and the many-leaves bar
    lowered to this tiny model) and as dynamic slices at the offsets (two (16, 16) kernels:
    repeated layers, what keeps XLA:CPU's compile time near the per-leaf gradient's); the
    jaxpr shows which."""
    import jopt.fused._layout

    monkeypatch.setattr(jopt.fused._layout, "STATIC_VIEWS_MIN_LEAVES", 1)
    from jopt.train import init_train_state, make_train_epoch, make_train_step, pack_train_state

    config = _cfg(None, f"model.hidden={hidden}")
    s = tiny_setup if hidden == TINY["model"]["hidden"] else setup(config)
    program = build_program(config, s)
    assert program.layout.dynamic_views == (len(hidden) == 3)
    x, y = jnp.asarray(s.data.x_train), jnp.asarray(s.data.y_train)
    state = init_train_state(s.model, program.tx, x[:1], jax.random.key(0))
    out = []
    for layout in (program.layout, None):
        epoch = make_train_epoch(s.model, program.tx, s.spec, s.batching, layout=layout)
        offsets = layout.offsets() if layout is not None else ()
        run_epoch = jax.jit(lambda st, o, x, y, epoch=epoch: epoch(st, x, y, o or None))
        out.append(jax.device_get(run_epoch(state, offsets, x, y)))
    (sp, mp), (sl, ml) = out
    _close((sp.params, sp.opt_state, sp.step), (sl.params, sl.opt_state, sl.step))
    np.testing.assert_allclose(mp["step_loss"], ml["step_loss"], rtol=0, atol=TOL)
    # The step's views: a dynamic slice per leaf, or none (static splits).
    layout = program.layout
    step = make_train_step(s.model, program.tx, s.spec, layout=layout)
    st = pack_train_state(state, program.tx, layout, layout.offsets())
    batch = (x[None, :8], y[None, :8], jnp.ones((1, 8)), jax.random.key(1))
    views = str(jax.make_jaxpr(step)(st, *batch)).count("dynamic_slice")
    assert (views >= layout.num_leaves) if layout.dynamic_views else views == 0, views


@pytest.mark.parametrize("packed", [False, True])
def test_guard_around_the_step_equals_the_guard_as_a_transform(tiny_setup, packed):
    """``make_train_step`` puts the default non-finite guard around the update and its
    application (``jopt.update_and_apply``: one ``lax.cond``); the same guard hidden in a plain
    transformation runs as an ordinary ``tx``. Over a finite, a non-finite and a finite step,
    leaf by leaf and packed: the skipped step leaves parameters and state bitwise unchanged,
    and both end equal up to float rounding (the two compile to differently fused kernels)."""
    from jopt.combinators import SkipTransformation
    from jopt.core import GradientTransformation
    from jopt.train import init_train_state, make_train_step, pack_train_state

    s = tiny_setup
    program = build_program(_cfg(), s)
    guard = program.tx
    assert isinstance(guard, SkipTransformation)
    plain = GradientTransformation(guard.init, guard.update)
    x, y = jnp.asarray(s.data.x_train[:64]), jnp.asarray(s.data.y_train[:64])
    layout = program.layout if packed else None
    ends = []
    for tx in (guard, plain):
        st = init_train_state(s.model, tx, x[:1], jax.random.key(0))
        if packed:
            st = pack_train_state(st, tx, layout, layout.offsets())
        step = jax.jit(make_train_step(s.model, tx, s.spec, layout=layout))
        states = []
        for i in range(3):
            xb = x[None].at[0, 0, 0].set(jnp.nan) if i == 1 else x[None]
            st, _ = step(st, xb, y[None], jnp.ones((1, 64)), jax.random.key(i))
            states.append(jax.device_get(st))
        opt = [t.opt_state.inner if packed else t.opt_state for t in states]
        assert [bool(o.skipped) for o in opt] == [False, True, False]
        kept = (states[0].params, opt[0].inner_state), (states[1].params, opt[1].inner_state)
        for a, b in zip(*map(jax.tree.leaves, kept), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        ends.append((states[-1].params, states[-1].opt_state))
    assert jax.tree.structure(ends[0]) == jax.tree.structure(ends[1])
    for a, b in zip(*map(jax.tree.leaves, ends), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
