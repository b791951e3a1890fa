"""jopt: a JAX functional optimization toolkit.

Everything public is importable from here: ``jopt.adam``, ``jopt.chain``,
``jopt.schedules.cosine_decay`` and so on.
"""

from jopt import schedules
from jopt.core import (
    EmptyState,
    GradientTransformation,
    JoptError,
    apply_updates,
    chain,
    global_norm,
    identity,
    map_elementwise,
    named_chain,
    stateless,
)

# --- optimizers (issue 2) ---
from jopt.optimizers import adam, sgd

# --- transforms (issue 2) ---
from jopt.transforms import (
    ScaleByAdamState,
    ScaleByScheduleState,
    TraceState,
    scale,
    scale_by_adam,
    scale_by_learning_rate,
    scale_by_schedule,
    trace,
)

# --- combinators (issue 3) ---
# --- /combinators ---

# --- fused + bench (issue 6) ---
# --- /fused ---

__version__ = "0.1.0"
