"""Data: built-in data sets and user-file loaders, splits, preprocessing, augmentation, batching."""

from jopt.data._augment import Augment, augment_batch
from jopt.data._batching import REMAINDERS, STRATEGIES, Batching
from jopt.data._builtin import BUILTIN
from jopt.data._dataset import Dataset, check_labels
from jopt.data._files import load_csv, load_idx, load_npz, read_idx
from jopt.data._grain import (
    ArrayShards,
    GrainShards,
    ShardIterator,
    read_array_record,
    shard_range,
    write_array_record,
)
from jopt.data._load import dataset_names, load_dataset
from jopt.data._sharded import ShardedData, eval_batches, load_shards
from jopt.data._split import PREPROCESS, apply_preprocess, fit_preprocess, split_arrays

__all__ = [
    "BUILTIN",
    "PREPROCESS",
    "REMAINDERS",
    "STRATEGIES",
    "ArrayShards",
    "Augment",
    "Batching",
    "Dataset",
    "GrainShards",
    "ShardIterator",
    "ShardedData",
    "apply_preprocess",
    "augment_batch",
    "check_labels",
    "dataset_names",
    "eval_batches",
    "fit_preprocess",
    "load_csv",
    "load_dataset",
    "load_idx",
    "load_npz",
    "load_shards",
    "read_array_record",
    "read_idx",
    "shard_range",
    "split_arrays",
    "write_array_record",
]
