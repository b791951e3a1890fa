"""jopt: a JAX functional optimization toolkit.

Everything public is importable from here: ``jopt.adam``, ``jopt.chain``,
``jopt.schedules.cosine_decay`` and so on.
"""

# This module only re-exports, one block per area: the imports are unused on purpose, and the
# blocks are ordered by area, not alphabetically.
# ruff: noqa: F401, I001

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

# optimizers
from jopt.optimizers import (
    adadelta,
    adagrad,
    adam,
    adamax,
    adamw,
    amsgrad,
    lamb,
    lion,
    nadam,
    radam,
    rmsprop,
    sgd,
)

# transforms
from jopt.transforms import (
    AddDecayedWeightsState,
    AddNoiseState,
    L1ProximalState,
    ScaleByAdadeltaState,
    ScaleByAdamaxState,
    ScaleByAdamState,
    ScaleByLionState,
    ScaleByRAdamState,
    ScaleByRmsState,
    ScaleByRssState,
    ScaleByScheduleState,
    TraceState,
    add_decayed_weights,
    add_l1,
    add_l2,
    add_noise,
    clip,
    clip_by_global_norm,
    l1_proximal,
    scale,
    scale_by_adadelta,
    scale_by_adam,
    scale_by_adamax,
    scale_by_learning_rate,
    scale_by_lion,
    scale_by_radam,
    scale_by_rms,
    scale_by_rss,
    scale_by_schedule,
    scale_by_sign,
    scale_by_trust_ratio,
    trace,
)

# combinators
from jopt.combinators import (
    AccumulateState,
    GroupsState,
    GroupsTransformation,
    HparamsState,
    HparamsTransformation,
    LookaheadSlowState,
    NonFiniteError,
    NormsState,
    ParamEmaState,
    SkipState,
    SkipTransformation,
    TapState,
    accumulate,
    check_state,
    coverage,
    describe,
    ema_params,
    get_hparams,
    groups,
    metrics,
    reset,
    set_hparams,
    skip_nonfinite,
    tap,
    update_and_apply,
    with_hparams,
    with_lookahead,
    with_norms,
    with_param_ema,
    with_precision,
)

# fused execution and benchmarks
# ``jopt.fused`` is the package (``jopt.fused.packed_train_step``...); ``jopt.fuse(tx)`` is
# the tree-form wrapper (state packed, parameters a tree).
from jopt import fused
from jopt.fused import FusedState, PackLayout, fuse, pack, pack_layout, per_leaf
from jopt.bench import memory_report

# numerics
# ``jopt.numerics``: curvature, grad_check, landscapes, test problems, lr finder.
from jopt import numerics

# contrib optimizers, plateau, L-BFGS, torch/Keras extras
from jopt.transforms import (
    LinesearchInfo,
    ReduceOnPlateauState,
    ScaleByAdemamixState,
    ScaleByLBFGSState,
    ScaleByLinesearchState,
    MuonDimensionNumbers,
    MuonState,
    scale_by_muon,
    scale_by_backtracking_linesearch,
    scale_by_lbfgs,
    scale_by_zoom_linesearch,
    value_and_grad_from_state,
    observe_plateau,
    reduce_on_plateau,
    scale_by_ademamix,
    scale_by_adopt,
)
from jopt.optimizers import (
    AsgdState,
    DAdaptState,
    FtrlState,
    SAMState,
    TorchRpropState,
    asgd,
    asgd_averaged_params,
    ftrl,
    torch_rprop,
    MechanicState,
    MuonSplitState,
    HutchinsonState,
    SophiaState,
    hutchinson_estimator_diag_hessian,
    scale_by_sophia,
    sophia,
    ScheduleFreeState,
    adopt,
    ademamix,
    dadapt_adamw,
    lbfgs,
    mechanize,
    muon,
    normalize,
    prodigy,
    sam,
    schedule_free,
    schedule_free_adamw,
    schedule_free_eval_params,
    schedule_free_sgd,
)

# optax's catalogue: optimizers, building blocks, optax transform names
from jopt.optimizers import (
    adabelief,
    adafactor,
    adamaxw,
    adan,
    fromage,
    lars,
    nadamw,
    noisy_sgd,
    novograd,
    optimistic_adam,
    optimistic_adam_v2,
    optimistic_gradient_descent,
    polyak_sgd,
    rprop,
    sign_sgd,
    signum,
    sm3,
    yogi,
)
from jopt.transforms import (
    FactoredState,
    MaskedState,
    ScaleByAdanState,
    ScaleByBeliefState,
    ScaleByEmaState,
    ScaleByNovogradState,
    ScaleByOptimisticGradientState,
    ScaleByRpropState,
    ScaleBySM3State,
    ScaleByYogiState,
    ZeroNansState,
    adaptive_grad_clip,
    centralize,
    clip_by_block_rms,
    keep_params_nonnegative,
    masked,
    scale_by_adan,
    scale_by_belief,
    scale_by_ema,
    scale_by_factored_rms,
    scale_by_novograd,
    scale_by_optimistic_gradient,
    scale_by_param_block_norm,
    scale_by_param_block_rms,
    scale_by_polyak,
    scale_by_rprop,
    scale_by_sm3,
    scale_by_yogi,
    zero_nans,
)
from jopt.schedules import (
    constant_schedule,
    cosine_decay_schedule,
    cosine_onecycle_schedule,
    linear_onecycle_schedule,
    linear_schedule,
    piecewise_constant_schedule,
    piecewise_interpolate_schedule,
    polynomial_schedule,
    sgdr_schedule,
    warmup_constant_schedule,
    warmup_cosine_decay_schedule,
    warmup_exponential_decay_schedule,
)
from jopt.combinators import MultiSteps, apply_if_finite, freeze, multi_transform, partition

from jopt._version import __version__

__all__ = sorted(name for name in dir() if not name.startswith("_"))  # every name above
