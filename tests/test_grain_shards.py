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
