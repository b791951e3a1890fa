"""Building blocks: one factory and one state NamedTuple each."""

from jopt.transforms._adam import ScaleByAdamState, scale_by_adam
from jopt.transforms._adam_variants import (
    ScaleByAdamaxState,
    ScaleByRAdamState,
    scale_by_adamax,
    scale_by_radam,
)
from jopt.transforms._clipping import clip, clip_by_global_norm, scale_by_trust_ratio
from jopt.transforms._noise import AddNoiseState, add_noise
from jopt.transforms._regularization import (
    AddDecayedWeightsState,
    L1ProximalState,
    add_decayed_weights,
    add_l1,
    add_l2,
    l1_proximal,
)
from jopt.transforms._rms import (
    ScaleByAdadeltaState,
    ScaleByRmsState,
    ScaleByRssState,
    scale_by_adadelta,
    scale_by_rms,
    scale_by_rss,
)
from jopt.transforms._scale import (
    ScaleByScheduleState,
    scale,
    scale_by_learning_rate,
    scale_by_schedule,
)
from jopt.transforms._sign import ScaleByLionState, scale_by_lion, scale_by_sign
from jopt.transforms._trace import TraceState, trace

__all__ = [
    "AddDecayedWeightsState",
    "AddNoiseState",
    "L1ProximalState",
    "ScaleByAdadeltaState",
    "ScaleByAdamState",
    "ScaleByAdamaxState",
    "ScaleByLionState",
    "ScaleByRAdamState",
    "ScaleByRmsState",
    "ScaleByRssState",
    "ScaleByScheduleState",
    "TraceState",
    "add_decayed_weights",
    "add_l1",
    "add_l2",
    "add_noise",
    "clip",
    "clip_by_global_norm",
    "l1_proximal",
    "scale",
    "scale_by_adadelta",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_learning_rate",
    "scale_by_lion",
    "scale_by_radam",
    "scale_by_rms",
    "scale_by_rss",
    "scale_by_schedule",
    "scale_by_sign",
    "scale_by_trust_ratio",
    "trace",
]

# --- issue 15 (H3b): plateau, contrib blocks, line searches ---
from jopt.transforms._contrib import ScaleByAdemamixState, scale_by_ademamix, scale_by_adopt
from jopt.transforms._plateau import ReduceOnPlateauState, observe_plateau, reduce_on_plateau

__all__ += [
    "ReduceOnPlateauState",
    "ScaleByAdemamixState",
    "observe_plateau",
    "reduce_on_plateau",
    "scale_by_ademamix",
    "scale_by_adopt",
]
# --- /issue 15 (H3b) ---
