"""Data: built-in data sets and user-file loaders, splits, preprocessing, augmentation, batching."""

from jopt.data._augment import Augment, augment_batch
from jopt.data._batching import REMAINDERS, STRATEGIES, Batching
from jopt.data._builtin import BUILTIN
from jopt.data._dataset import Dataset, check_labels
from jopt.data._files import load_csv, load_idx, load_npz, read_idx
from jopt.data._grain import ArrayShards, GrainShards, ShardIterator, shard_range
from jopt.data._load import dataset_names, load_dataset
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
    "apply_preprocess",
    "augment_batch",
    "check_labels",
    "dataset_names",
    "fit_preprocess",
    "load_csv",
    "load_dataset",
    "load_idx",
    "load_npz",
    "read_idx",
    "shard_range",
    "split_arrays",
]
