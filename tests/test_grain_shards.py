"""Grain-sharded on-disk data (jopt.data.GrainShards): 2 simulated processes read disjoint
halves that together hold every example once per epoch; shuffles repeat by seed; a saved
iterator state continues at the same example."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jopt import JoptError
from jopt.data import ArrayShards, GrainShards, shard_range

pytest.importorskip("grain")

N, B = 40, 4


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """40 records in 4 files of every kind: stored npz (memory-mapped), compressed npz,
    an .x.npy/.y.npy pair, and a second stored npz; y is the record's global index."""
    d = tmp_path_factory.mktemp("shards")
    x = np.arange(N * 3, dtype=np.float32).reshape(N, 3)
    y = np.arange(N, dtype=np.int32)
    np.savez(d / "a.npz", x=x[:10], y=y[:10])
    np.savez_compressed(d / "b.npz", x=x[10:20], y=y[10:20])
    np.save(d / "c.x.npy", x[20:30])
    np.save(d / "c.y.npy", y[20:30])
    np.savez(d / "d.npz", x=x[30:], y=y[30:])
    return str(d)


def _epoch_ids(g, epoch):
    return [int(i) for batch in g.epoch(epoch) for i in batch["y"]]


def test_source_reads_every_kind(shards):
    src = ArrayShards(shards)
    assert len(src) == N and src.offsets == [0, 10, 20, 30, 40]
    for i in (0, 9, 10, 19, 25, 39):
        rec = src[i]
        assert int(rec["y"]) == i and rec["x"].tolist() == [3 * i, 3 * i + 1, 3 * i + 2]
    assert type(src._open(0)[0]) is np.memmap  # a stored npz member is mapped, not read
    with pytest.raises(IndexError):
        src[N]


def test_two_processes_see_disjoint_halves_every_example_once(shards):
    procs = [GrainShards(shards, batch_size=B, seed=7, process_index=i, process_count=2)
             for i in range(2)]  # fmt: skip
    assert [(g.start, g.stop) for g in procs] == [(0, 20), (20, 40)]
    assert all(g.steps_per_epoch == 5 for g in procs)
    for epoch in (0, 1):
        ids = [_epoch_ids(g, epoch) for g in procs]
        assert sorted(ids[0]) == list(range(20)) and sorted(ids[1]) == list(range(20, 40))
        assert sorted(ids[0] + ids[1]) == list(range(N))  # every example exactly once
    # each process opened only the files overlapping its half
    assert sorted(f.rsplit("/", 1)[-1] for f in procs[0].source.opened) == ["a.npz", "b.npz"]
    assert sorted(f.rsplit("/", 1)[-1] for f in procs[1].source.opened) == ["c.x.npy", "d.npz"]


def test_shuffle_repeats_by_seed_and_changes_per_epoch(shards):
    def make(seed, shuffle=True):
        return GrainShards(shards, batch_size=B, seed=seed, shuffle=shuffle,
                           process_index=1, process_count=2)  # fmt: skip

    a, b, c = make(3), make(3), make(4)
    assert _epoch_ids(a, 0) == _epoch_ids(b, 0)
    assert _epoch_ids(a, 0) != _epoch_ids(a, 1)  # a new order every epoch
    assert _epoch_ids(a, 0) != _epoch_ids(c, 0)  # another seed, another order
    assert _epoch_ids(make(3, shuffle=False), 0) == list(range(20, 40))


def test_resume_mid_epoch_continues_at_the_same_example(shards):
    g = GrainShards(shards, batch_size=B, seed=1, process_index=0, process_count=2)
    it = g.iterator()
    for _ in range(7):  # one full epoch (5 batches) and 2 batches into the next
        next(it)
    state = json.loads(json.dumps(it.get_state()))  # what a checkpoint stores
    assert state["epoch"] == 1
    expected = [next(it)["y"].tolist() for _ in range(6)]  # crosses into epoch 2
    # a fresh process (new source, new iterator) restored from the state
    g2 = GrainShards(shards, batch_size=B, seed=1, process_index=0, process_count=2)
    resumed = g2.iterator(state)
    assert [next(resumed)["y"].tolist() for _ in range(6)] == expected
    epoch1 = _epoch_ids(g, 1)
    rest_of_epoch1 = [i for batch in expected[:3] for i in batch]
    assert rest_of_epoch1 == epoch1[2 * B :]  # in order


def test_refusals(shards, tmp_path):
    with pytest.raises(JoptError, match="not found"):
        GrainShards(str(tmp_path / "nope"), batch_size=2, process_index=0, process_count=1)
    with pytest.raises(JoptError, match=r"no \.npz"):
        GrainShards(str(tmp_path), batch_size=2, process_index=0, process_count=1)
    with pytest.raises(JoptError, match="process_index 2 is not in"):
        shard_range(10, 2, 2)
    with pytest.raises(JoptError, match="larger than this process's 13 records"):
        GrainShards(shards, batch_size=14, process_index=0, process_count=3)
    with pytest.raises(JoptError, match="different batch counts"):
        GrainShards(shards, batch_size=13, drop_remainder=False, process_index=0, process_count=3)
    np.savez(tmp_path / "bad.npz", x=np.zeros((3, 2)), y=np.zeros(2))
    with pytest.raises(JoptError, match="same leading length"):
        ArrayShards(str(tmp_path))
    np.savez(tmp_path / "bad.npz", x=np.zeros((3, 2)))
    with pytest.raises(JoptError, match="no array 'y'"):
        ArrayShards(str(tmp_path))
    with pytest.raises(JoptError, match="not a sharded-data iterator state"):
        GrainShards(shards, batch_size=B, process_index=0, process_count=1).iterator({})


# --- ArrayRecord, load_shards, evaluation chunks, the streamed epoch ----------------------------

F = 8  # features


def _write_tabular(d, n, start=0, seed=0):
    """n records of 8 features whose first column is the record's id; labels from column 1."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, F)).astype(np.float32)
    x[:, 0] = np.arange(start, start + n)
    y = (x[:, 1] > 0).astype(np.int32)
    d.mkdir(parents=True, exist_ok=True)
    half = n // 2
    np.savez(d / "a.npz", x=x[:half], y=y[:half])
    np.save(d / "b.x.npy", x[half:])
    np.save(d / "b.y.npy", y[half:])
    return x, y


def test_array_record_shards(tmp_path):
    pytest.importorskip("array_record")
    from jopt.data import read_array_record, write_array_record

    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    y = np.arange(10, dtype=np.int32)
    write_array_record(str(tmp_path / "a.array_record"), x[:6], y[:6])
    write_array_record(str(tmp_path / "b.array_record"), x[6:], y[6:])
    rx, ry = read_array_record(str(tmp_path / "a.array_record"))
    np.testing.assert_array_equal(rx, x[:6])
    np.testing.assert_array_equal(ry, y[:6])
    src = ArrayShards(str(tmp_path))
    assert len(src) == 10 and src.offsets == [0, 6, 10]
    assert src[7]["x"].tolist() == x[7].tolist() and int(src[7]["y"]) == 7
    g = GrainShards(str(tmp_path), batch_size=5, seed=3, process_index=1, process_count=2)
    assert sorted(_epoch_ids(g, 0)) == [5, 6, 7, 8, 9]
    from jopt.data import load_shards

    with pytest.raises(JoptError, match="give the class count"):
        load_shards(str(tmp_path))
    assert load_shards(str(tmp_path), num_classes=10, kind="tabular").input_shape == (3,)


def test_load_shards_and_eval_chunks(tmp_path):
    from jopt.data import eval_batches, load_shards

    _write_tabular(tmp_path / "train", 40)
    _write_tabular(tmp_path / "val", 13, start=1000, seed=1)
    data = load_shards(str(tmp_path / "train"), val=str(tmp_path / "val"))
    got = (data.num_classes, data.input_shape, data.kind, data.num_train)
    assert got == (2, (F,), "tabular", 40)
    assert data.sample.shape == (1, F) and data.splits() == {"val": str(tmp_path / "val")}
    with pytest.raises(JoptError, match="not held in memory"):
        _ = data.x_train
    # 13 records over 2 processes in chunks of 4: 2 chunks each, padded, every record once
    seen = []
    for pi in range(2):
        chunks = list(eval_batches(str(tmp_path / "val"), 4, process_index=pi, process_count=2))
        assert len(chunks) == 2 and all(c["x"].shape == (4, F) for c in chunks)
        seen += [int(i) for c in chunks for i, w in zip(c["x"][:, 0], c["w"], strict=True) if w]
    assert sorted(seen) == list(range(1000, 1013))
    with pytest.raises(JoptError, match=r"data\.options\.kind"):
        np.savez(tmp_path / "img.npz", x=np.zeros((4, 2, 2)), y=np.zeros(4, np.int32))
        d = tmp_path / "imgs"
        d.mkdir()
        (tmp_path / "img.npz").rename(d / "img.npz")
        load_shards(str(d))


@pytest.fixture(scope="module")
def stream_case(tmp_path_factory):
    """96 records (6 steps of 16), a 2-class MLP, Adam; one jitted stream step for all tests."""
    import jax

    import jopt
    from jopt.models import make_model
    from jopt.train import LossSpec, make_stream_step

    d = tmp_path_factory.mktemp("stream")
    x, y = _write_tabular(d / "train", 96)
    model = make_model("mlp", num_outputs=2, hidden=[8])
    tx = jopt.adam(1e-2)
    spec = LossSpec(num_classes=2)
    step = jax.jit(make_stream_step(model, tx, spec), donate_argnums=0)
    return {"dir": str(d / "train"), "x": x, "y": y, "model": model, "tx": tx, "spec": spec,
            "step": step}  # fmt: skip


def _stream(case, shuffle=True, on_step=None):
    import jax.numpy as jnp

    from jopt.train import StreamEpoch

    g = GrainShards(case["dir"], batch_size=16, seed=5, shuffle=shuffle, process_index=0,
                    process_count=1)  # fmt: skip
    put = lambda b: (jnp.asarray(b["x"]), jnp.asarray(b["y"]))  # noqa: E731
    return StreamEpoch(case["step"], g, put, classification=True, on_step=on_step)


def _init(case):
    import jax

    from jopt.train import init_train_state

    return init_train_state(case["model"], case["tx"], case["x"][:1], jax.random.key(0))


def test_stream_epoch_equals_the_scan_epoch_on_the_same_order(stream_case):
    """Unshuffled shards and an unshuffled scan epoch take the same batches: same params and
    the same epoch metrics, bit for bit (no dropout, so the keys do not matter)."""
    import jax
    import jax.numpy as jnp

    from jopt.data import Batching
    from jopt.train import make_train_epoch

    c = stream_case
    plain = Batching("minibatch", 16, shuffle=False)
    epoch = jax.jit(make_train_epoch(c["model"], c["tx"], c["spec"], plain))
    s1, m1 = epoch(_init(c), jnp.asarray(c["x"]), jnp.asarray(c["y"]))
    s2, m2 = _stream(c, shuffle=False)(_init(c))
    for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert sorted(m1) == sorted(m2)
    for k in m1:
        np.testing.assert_array_equal(np.asarray(m1[k]), np.asarray(m2[k]))
    assert int(s2.step) == 6


def test_stream_epoch_resumes_mid_epoch_bit_exact(stream_case):
    """A position saved after step 3 of epoch 2 (JSON) and the state then: a fresh StreamEpoch
    continues at the same example; epoch 2's record and the params equal the uninterrupted."""
    import jax

    c = stream_case
    saved = {}

    def on_step(state, epoch, position):
        if epoch == 2 and position == 3:
            saved["state"] = jax.device_get(state)
            saved["pos"] = json.loads(json.dumps(se.position_state()))

    se = _stream(c, on_step=on_step)
    st, _ = se(_init(c))
    st, m_full = se(st)
    full = jax.device_get(st)
    assert saved["pos"]["data"] == {"epoch": 1, "next_index": 3}
    again = _stream(c)
    again.resume(1, saved["pos"])
    st2, m2 = again(saved["state"])
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(jax.device_get(st2)), strict=True):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for k in m_full:
        np.testing.assert_array_equal(np.asarray(m_full[k]), np.asarray(m2[k]))
    with pytest.raises(JoptError, match="does not follow"):
        _stream(c).resume(1, {**saved["pos"], "data": {"epoch": 1, "next_index": 2}})
