"""Sharded on-disk data through Grain: a directory of ``.npy`` / ``.npz`` shards, not loaded whole.

Layout (files sorted by name form one record sequence):

- ``<stem>.npz`` holding arrays ``x`` and ``y`` (jopt's user-file convention). Written with
  ``np.savez`` (stored, not compressed) both arrays are memory-mapped in place; a compressed
  member (``np.savez_compressed``) is decompressed whole on first touch and kept.
- ``<stem>.x.npy`` + ``<stem>.y.npy``: memory-mapped.
- ``<stem>.array_record``: an ArrayRecord file (Grain's record format; the optional
  ``array_record`` package), one example per record, each record the bytes of an ``.npz``
  holding ``x`` and ``y`` (:func:`write_array_record` writes one).

Each process of a multi-process run takes a contiguous slice of the record sequence,
``[i*N//P, (i+1)*N//P)``, so it opens only the files that overlap its slice. Within its slice it
shuffles every epoch with the seed ``(seed, epoch)``: the order is repeatable and changes from
epoch to epoch, and every example of the slice is seen exactly once per epoch. Batches never
cross an epoch boundary. With ``drop_remainder=True`` (the default) every process takes the
same ``steps_per_epoch = (N // P) // batch_size`` batches (lock-step for data parallelism);
``drop_remainder=False`` keeps the last partial batch and is refused when the processes would
take different step counts.

The iterator's state is a small JSON-able dict ``{"epoch", "next_index"}`` (Grain's own
``get_state`` within the epoch): put it in a checkpoint and a restored iterator continues at the
same example. Grain is an optional dependency (``pip install 'jopt[grain]'``).
"""

from __future__ import annotations

import bisect
import io
import os
import threading
import zipfile
from collections.abc import Iterator
from typing import Any

import numpy as np

from jopt.core.errors import JoptError

__all__ = [
    "ArrayShards",
    "GrainShards",
    "ShardIterator",
    "read_array_record",
    "shard_range",
    "write_array_record",
]

_MISSING = "sharded data needs the optional grain package: pip install 'jopt[grain]'"
_NO_AR = "*.array_record shards need the optional array_record package: pip install 'jopt[grain]'"


def _array_record() -> Any:
    try:
        from array_record.python import array_record_module
    except ImportError:
        raise JoptError(_NO_AR) from None
    return array_record_module


def _record_bytes(x: np.ndarray, y: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, x=np.asarray(x), y=np.asarray(y))
    return buf.getvalue()


def _parse_record(raw: bytes, path: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            return z["x"], z["y"]
    except (KeyError, ValueError, OSError, zipfile.BadZipFile):
        raise JoptError(f"{path}: a record is not an .npz holding 'x' and 'y'") from None


def write_array_record(path: str, x: np.ndarray, y: np.ndarray) -> None:
    """Write examples ``x[i], y[i]`` to an ArrayRecord file, one record each (an ``.npz`` of
    ``x`` and ``y``; group size 1, so every record is read on its own)."""
    x, y = np.asarray(x), np.asarray(y)
    if x.shape[:1] != y.shape[:1]:
        raise JoptError(f"x and y need the same leading length (got {x.shape} and {y.shape})")
    w = _array_record().ArrayRecordWriter(str(path), "group_size:1")
    try:
        for i in range(len(x)):
            w.write(_record_bytes(x[i], y[i]))
    finally:
        w.close()


def read_array_record(path: str) -> tuple[np.ndarray, np.ndarray]:
    """All of an ArrayRecord file written by :func:`write_array_record`, as ``(x, y)``."""
    r = _array_record().ArrayRecordReader(str(path))
    try:
        pairs = [_parse_record(b, str(path)) for b in r.read_all()]
    finally:
        r.close()
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def _grain() -> Any:
    try:
        import grain
    except ImportError:
        raise JoptError(_MISSING) from None
    return grain


def shard_range(num_records: int, process_index: int, process_count: int) -> tuple[int, int]:
    """The contiguous ``[start, stop)`` of ``num_records`` that process ``i`` of ``P`` reads."""
    if process_count < 1 or not 0 <= process_index < process_count:
        raise JoptError(
            f"process_index {process_index} is not in [0, process_count={process_count})"
        )
    return (
        process_index * num_records // process_count,
        (process_index + 1) * num_records // process_count,
    )


def _npz_member(path: str, name: str, header_only: bool) -> np.ndarray | tuple:
    """Array ``name`` of an .npz: memory-mapped if stored, loaded if compressed; with
    ``header_only`` just ``(shape, dtype)``."""
    with zipfile.ZipFile(path) as zf:
        try:
            info = zf.getinfo(name + ".npy")
        except KeyError:
            raise JoptError(f"{path} has no array '{name}' (a shard needs 'x' and 'y')") from None
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read(f)
            header_len = f.tell()
        if header_only:
            return shape, dtype
        if info.compress_type != zipfile.ZIP_STORED or dtype.hasobject:
            with np.load(path, allow_pickle=False) as z:
                return z[name]
    with open(path, "rb") as raw:  # stored member: find its data in the file and map it
        raw.seek(info.header_offset + 26)
        name_len, extra_len = np.frombuffer(raw.read(4), "<u2")
    offset = info.header_offset + 30 + int(name_len) + int(extra_len) + header_len
    order = "F" if fortran else "C"
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)


class ArrayShards:
    """A Grain random-access source over a directory of shards: ``len`` and ``[i] -> {"x", "y"}``.

    Files are opened lazily (only headers are read to count records); :attr:`opened` lists the
    files a process has read data from.
    """

    def __init__(self, directory: str) -> None:
        if not os.path.isdir(directory):
            raise JoptError(f"sharded data directory not found: {directory}")
        names = sorted(os.listdir(directory))
        self.files: list[tuple[str, str, str | None]] = []  # (kind, x path, y path)
        for n in names:
            p = os.path.join(directory, n)
            if n.endswith(".npz"):
                self.files.append(("npz", p, None))
            elif n.endswith(".array_record"):
                self.files.append(("ar", p, None))
            elif n.endswith(".x.npy"):
                y = p[: -len(".x.npy")] + ".y.npy"
                if not os.path.exists(y):
                    raise JoptError(f"{p} has no matching {os.path.basename(y)}")
                self.files.append(("npy", p, y))
        if not self.files:
            raise JoptError(f"{directory} holds no .npz, .x.npy/.y.npy or .array_record shards")
        lengths = [self._length(f) for f in self.files]
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(int).tolist()
        self._arrays: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.opened: list[str] = []
        self._lock = threading.Lock()

    def _length(self, f: tuple[str, str, str | None]) -> int:
        kind, x, y = f
        if kind == "ar":
            r = _array_record().ArrayRecordReader(x, "readahead_buffer_size:0")
            try:
                return int(r.num_records())
            finally:
                r.close()
        if kind == "npz":
            (xs, _), (ys, _) = _npz_member(x, "x", True), _npz_member(x, "y", True)
        else:
            xs, ys = np.load(x, mmap_mode="r").shape, np.load(y, mmap_mode="r").shape
        if not xs or not ys or xs[0] != ys[0]:
            raise JoptError(f"{x}: x and y need the same leading length (got {xs} and {ys})")
        return int(xs[0])

    def _open(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:  # Grain reads ahead on threads: open (decompress) each file once
            if k not in self._arrays:
                kind, x, y = self.files[k]
                if kind == "ar":
                    reader = _array_record().ArrayRecordReader(x, "readahead_buffer_size:0")
                    self._arrays[k] = (reader, None)
                elif kind == "npz":
                    self._arrays[k] = (_npz_member(x, "x", False), _npz_member(x, "y", False))
                else:
                    self._arrays[k] = (np.load(x, mmap_mode="r"), np.load(y, mmap_mode="r"))
                self.opened.append(x)
            return self._arrays[k]

    def __len__(self) -> int:
        return self.offsets[-1]

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = bisect.bisect_right(self.offsets, i) - 1
        x, y = self._open(k)
        j = i - self.offsets[k]
        if y is None:  # an ArrayRecord reader (thread-safe reads)
            xr, yr = _parse_record(x.read([j])[0], self.files[k][1])
            return {"x": xr, "y": yr}
        return {"x": np.asarray(x[j]), "y": np.asarray(y[j])}


class GrainShards:
    """This process's view of a sharded directory: shuffled, batched epochs through Grain.

    ``process_index`` / ``process_count`` default to JAX's. ``epoch(e)`` is epoch ``e`` as a
    Grain ``MapDataset`` of batches ``{"x": (B, ...), "y": (B, ...)}``; :meth:`iterator` runs
    epochs back to back with a resumable state.
    """

    def __init__(
        self,
        directory: str,
        *,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        drop_remainder: bool = True,
        process_index: int | None = None,
        process_count: int | None = None,
    ) -> None:
        if process_index is None or process_count is None:
            import jax

            process_index = jax.process_index() if process_index is None else process_index
            process_count = jax.process_count() if process_count is None else process_count
        if int(batch_size) < 1:
            raise JoptError(f"batch_size must be >= 1, got {batch_size}")
        self.source = ArrayShards(directory)
        self.batch_size, self.seed, self.shuffle = int(batch_size), int(seed), bool(shuffle)
        self.drop_remainder = bool(drop_remainder)
        n, p = len(self.source), int(process_count)
        self.start, self.stop = shard_range(n, int(process_index), p)
        if drop_remainder:
            self.steps_per_epoch = (n // p) // self.batch_size
        else:
            counts = {-(-(b - a) // self.batch_size) for a, b in
                      (shard_range(n, i, p) for i in range(p))}  # fmt: skip
            if len(counts) > 1:
                raise JoptError(
                    f"drop_remainder=False: {n} records over {p} processes give different "
                    f"batch counts per process {sorted(counts)}; use drop_remainder=True"
                )
            self.steps_per_epoch = counts.pop()
        if self.steps_per_epoch < 1:
            raise JoptError(
                f"batch_size {batch_size} is larger than this process's "
                f"{(n // p)} records (of {n} over {p} processes)"
            )

    @property
    def num_records(self) -> int:
        """Records of this process's shard."""
        return self.stop - self.start

    def epoch_seed(self, epoch: int) -> int:
        return int(np.random.SeedSequence([self.seed, int(epoch)]).generate_state(1)[0] >> 1)

    def epoch(self, epoch: int) -> Any:
        grain = _grain()
        ds = grain.MapDataset.source(self.source)[self.start : self.stop]
        if self.shuffle:
            ds = ds.shuffle(seed=self.epoch_seed(epoch))
        ds = ds.batch(self.batch_size, drop_remainder=self.drop_remainder)
        return ds[: self.steps_per_epoch]

    def iterator(self, state: dict | None = None) -> ShardIterator:
        it = ShardIterator(self)
        if state is not None:
            it.set_state(state)
        return it


class ShardIterator(Iterator):
    """Batches of epoch after epoch; ``get_state()`` / ``set_state()`` resume mid-epoch."""

    def __init__(self, shards: GrainShards) -> None:
        self.shards = shards
        self._start(0)

    def _start(self, epoch: int, grain_state: dict | None = None) -> None:
        self.epoch = epoch
        self._it = iter(self.shards.epoch(epoch).to_iter_dataset())
        if grain_state is not None:
            self._it.set_state(grain_state)

    def __next__(self) -> dict[str, np.ndarray]:
        try:
            return next(self._it)
        except StopIteration:
            self._start(self.epoch + 1)
            return next(self._it)

    def get_state(self) -> dict:
        """A JSON-able dict: the epoch and Grain's position within it."""
        return {"epoch": self.epoch, **dict(self._it.get_state())}

    def set_state(self, state: dict) -> None:
        state = dict(state)
        try:
            epoch = int(state.pop("epoch"))
        except (KeyError, TypeError, ValueError):
            raise JoptError(f"not a sharded-data iterator state: {state}") from None
        self._start(epoch, state)
