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
    Mask,
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
    "Mask",
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

# --- optax's building blocks ---
from jopt.transforms._factored import FactoredState, scale_by_factored_rms
from jopt.transforms._filters import (
    MaskedState,
    ZeroNansState,
    adaptive_grad_clip,
    centralize,
    keep_params_nonnegative,
    masked,
    zero_nans,
)
from jopt.transforms._moments import (
    ScaleByAdanState,
    ScaleByBeliefState,
    ScaleByEmaState,
    ScaleByYogiState,
    scale_by_adan,
    scale_by_belief,
    scale_by_ema,
    scale_by_yogi,
)
from jopt.transforms._per_leaf import (
    ScaleByNovogradState,
    ScaleBySM3State,
    clip_by_block_rms,
    scale_by_novograd,
    scale_by_param_block_norm,
    scale_by_param_block_rms,
    scale_by_polyak,
    scale_by_sm3,
)
from jopt.transforms._steps import (
    ScaleByOptimisticGradientState,
    ScaleByRpropState,
    scale_by_optimistic_gradient,
    scale_by_rprop,
)

__all__ += [
    "FactoredState",
    "MaskedState",
    "ScaleByAdanState",
    "ScaleByBeliefState",
    "ScaleByEmaState",
    "ScaleByNovogradState",
    "ScaleByOptimisticGradientState",
    "ScaleByRpropState",
    "ScaleBySM3State",
    "ScaleByYogiState",
    "ZeroNansState",
    "adaptive_grad_clip",
    "centralize",
    "clip_by_block_rms",
    "keep_params_nonnegative",
    "masked",
    "scale_by_adan",
    "scale_by_belief",
    "scale_by_ema",
    "scale_by_factored_rms",
    "scale_by_novograd",
    "scale_by_optimistic_gradient",
    "scale_by_param_block_norm",
    "scale_by_param_block_rms",
    "scale_by_polyak",
    "scale_by_rprop",
    "scale_by_sm3",
    "scale_by_yogi",
    "zero_nans",
]
# --- /optax catalogue ---

# --- plateau, contrib blocks, line searches ---
from jopt.transforms._contrib import (  # noqa: E402
    ScaleByAdemamixState,
    scale_by_ademamix,
    scale_by_adopt,
)
from jopt.transforms._lbfgs import ScaleByLBFGSState, scale_by_lbfgs  # noqa: E402
from jopt.transforms._linesearch import (  # noqa: E402
    LinesearchInfo,
    ScaleByLinesearchState,
    scale_by_backtracking_linesearch,
    scale_by_zoom_linesearch,
    value_and_grad_from_state,
)
from jopt.transforms._muon import (  # noqa: E402
    MuonDimensionNumbers,
    MuonState,
    orthogonalize_via_newton_schulz,
    resolve_dimension_numbers,
    scale_by_muon,
    scale_by_shape,
)
from jopt.transforms._plateau import (  # noqa: E402
    ReduceOnPlateauState,
    observe_plateau,
    reduce_on_plateau,
)

__all__ += [
    "LinesearchInfo",
    "MuonDimensionNumbers",
    "MuonState",
    "ReduceOnPlateauState",
    "ScaleByAdemamixState",
    "ScaleByLBFGSState",
    "ScaleByLinesearchState",
    "observe_plateau",
    "orthogonalize_via_newton_schulz",
    "reduce_on_plateau",
    "resolve_dimension_numbers",
    "scale_by_ademamix",
    "scale_by_adopt",
    "scale_by_backtracking_linesearch",
    "scale_by_lbfgs",
    "scale_by_muon",
    "scale_by_shape",
    "scale_by_zoom_linesearch",
    "value_and_grad_from_state",
]
