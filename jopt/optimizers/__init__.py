"""User-facing optimizers: short chains of building blocks."""

from jopt.optimizers._adam import adam, adamw, amsgrad, nadam
from jopt.optimizers._adam_variants import adamax, lamb, radam
from jopt.optimizers._lion import lion
from jopt.optimizers._rms import adadelta, adagrad, rmsprop
from jopt.optimizers._sgd import sgd

__all__ = [
    "adadelta",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "amsgrad",
    "lamb",
    "lion",
    "nadam",
    "radam",
    "rmsprop",
    "sgd",
]

# --- optax's optimizers ---
from jopt.optimizers._adaptive import adabelief, adamaxw, adan, nadamw, yogi
from jopt.optimizers._layerwise import adafactor, fromage, lars, novograd, sm3
from jopt.optimizers._steps import (
    noisy_sgd,
    optimistic_adam,
    optimistic_adam_v2,
    optimistic_gradient_descent,
    polyak_sgd,
    rprop,
    sign_sgd,
    signum,
)

__all__ += [
    "adabelief",
    "adafactor",
    "adamaxw",
    "adan",
    "fromage",
    "lars",
    "nadamw",
    "noisy_sgd",
    "novograd",
    "optimistic_adam",
    "optimistic_adam_v2",
    "optimistic_gradient_descent",
    "polyak_sgd",
    "rprop",
    "sign_sgd",
    "signum",
    "sm3",
    "yogi",
]
# --- /optax catalogue ---

# --- contrib, L-BFGS, torch/Keras extras ---
from jopt.optimizers._contrib import (  # noqa: E402
    DAdaptState,
    ademamix,
    adopt,
    dadapt_adamw,
    prodigy,
)
from jopt.optimizers._lbfgs import lbfgs  # noqa: E402
from jopt.optimizers._muon import MuonSplitState, muon  # noqa: E402
from jopt.optimizers._sam import SAMState, normalize, sam  # noqa: E402
from jopt.optimizers._sophia import (  # noqa: E402
    HutchinsonState,
    SophiaState,
    hutchinson_estimator_diag_hessian,
    scale_by_sophia,
    sophia,
)
from jopt.optimizers._torch_keras import (  # noqa: E402
    AsgdState,
    FtrlState,
    TorchRpropState,
    asgd,
    asgd_averaged_params,
    ftrl,
    torch_rprop,
)
from jopt.optimizers._wrapped import (  # noqa: E402
    MechanicState,
    ScheduleFreeState,
    mechanize,
    schedule_free,
    schedule_free_adamw,
    schedule_free_eval_params,
    schedule_free_sgd,
)

__all__ += [
    "AsgdState",
    "DAdaptState",
    "FtrlState",
    "HutchinsonState",
    "MechanicState",
    "MuonSplitState",
    "SAMState",
    "ScheduleFreeState",
    "SophiaState",
    "TorchRpropState",
    "ademamix",
    "adopt",
    "asgd",
    "asgd_averaged_params",
    "dadapt_adamw",
    "ftrl",
    "hutchinson_estimator_diag_hessian",
    "lbfgs",
    "mechanize",
    "muon",
    "normalize",
    "prodigy",
    "sam",
    "scale_by_sophia",
    "schedule_free",
    "schedule_free_adamw",
    "schedule_free_eval_params",
    "schedule_free_sgd",
    "sophia",
    "torch_rprop",
]
