"""Scale-out on ``jax.sharding``: data parallelism, ZeRO-1, multi-host start-up, checkpoints.

The experiment runner calls :func:`setup` with the config's ``distributed`` section and gets a
:class:`DataParallel`, which places the train state, splits batches and jits the training
engine's pure step/epoch functions with in/out shardings. See ``docs/distributed.md``.
"""

from jopt.distributed._bench import bench_data_parallel
from jopt.distributed._checkpoint import (
    epoch_checkpoint_path,
    list_checkpoints,
    restore_checkpoint,
    save_checkpoint,
    step_checkpoint_path,
)
from jopt.distributed._config import DATA_AXIS, DistributedSpec, parse_distributed
from jopt.distributed._data_parallel import DataParallel, ShardedStep, from_spec, setup
from jopt.distributed._engine import ShardedModel, check_batching, place_dataset
from jopt.distributed._mesh import (
    batch_sharding,
    make_data_mesh,
    replicated_sharding,
    request_cpu_devices,
)
from jopt.distributed._multihost import (
    check_divisible,
    global_array,
    initialize,
    is_main_process,
    process_rows,
)
from jopt.distributed._zero import (
    bytes_per_device,
    zero1,
    zero1_coverage,
    zero1_sharding,
    zero1_shardings,
)

__all__ = [
    "DATA_AXIS",
    "DataParallel",
    "DistributedSpec",
    "ShardedModel",
    "ShardedStep",
    "batch_sharding",
    "bench_data_parallel",
    "bytes_per_device",
    "check_batching",
    "check_divisible",
    "epoch_checkpoint_path",
    "from_spec",
    "global_array",
    "initialize",
    "is_main_process",
    "list_checkpoints",
    "make_data_mesh",
    "parse_distributed",
    "place_dataset",
    "process_rows",
    "replicated_sharding",
    "request_cpu_devices",
    "restore_checkpoint",
    "save_checkpoint",
    "setup",
    "step_checkpoint_path",
    "zero1",
    "zero1_coverage",
    "zero1_sharding",
    "zero1_shardings",
]
