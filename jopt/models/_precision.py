"""The precision policy: which dtype parameters, activations and matmuls use.

A :class:`Precision` is a small frozen value that models, train steps and (later) the
``train.precision`` config field all read. It only *describes* the choice; the helpers that
apply it to a loss or a step live in :mod:`jopt.train` (``precision_loss``,
``under_matmul_precision``, ``precision_optimizer``).

=============== ================ ================ ================ =========================
policy          parameters       compute/activ.   gradients        optimizer state
=============== ================ ================ ================ =========================
``float32``     float32          float32          float32          float32
``bf16_mixed``  float32 (master) bfloat16         float32          float32
``bf16``        bfloat16         bfloat16         bfloat16         float32 unless ``state_dtype``
=============== ================ ================ ================ =========================

Losses and metrics are computed in float32 under every policy. Batch-norm running statistics
stay float32 (flax keeps them so). The matmul precision is ``highest`` for ``float32`` unless
``matmul_precision`` says otherwise (on GPUs ``default`` lets float32 matmuls run as TF32), and
``default`` for the bfloat16 policies, whose matmuls take bfloat16 operands anyway.

References: Micikevicius et al. 2018, "Mixed Precision Training"; Keras ``mixed_bfloat16``;
flax ``dtype``/``param_dtype``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jopt.core.errors import JoptError

PRECISIONS = ("float32", "bf16_mixed", "bf16")
"""The allowed policy names."""
MATMUL_PRECISIONS = ("default", "high", "highest")
"""The allowed ``matmul_precision`` values (``jax.default_matmul_precision`` names)."""

_PARAM = {"float32": jnp.float32, "bf16_mixed": jnp.float32, "bf16": jnp.bfloat16}
_COMPUTE = {"float32": jnp.float32, "bf16_mixed": jnp.bfloat16, "bf16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class Precision:
    """A precision policy.

    Attributes:
        policy: ``"float32"``, ``"bf16_mixed"`` or ``"bf16"`` (see the module table).
        matmul_precision: ``"default"``, ``"high"``, ``"highest"`` or ``None`` (the policy's
            own: ``highest`` for float32, ``default`` for the bfloat16 policies).
        state_dtype: storage dtype of the optimizer's moment and accumulator slots, applied by
            ``jopt.with_precision``; ``None`` keeps the optimizer's own choice (float32 in jopt,
            also for bfloat16 parameters).

    Example:
        >>> from jopt.models import Precision
        >>> p = Precision("bf16_mixed")
        >>> p.param_dtype, p.compute_dtype, p.matmul
        (dtype('float32'), dtype(bfloat16), 'default')
    """

    policy: str = "float32"
    matmul_precision: str | None = None
    state_dtype: Any = None

    def __post_init__(self):
        if self.policy not in PRECISIONS:
            raise JoptError(f"unknown precision {self.policy!r}; allowed: {', '.join(PRECISIONS)}")
        if self.matmul_precision is not None and self.matmul_precision not in MATMUL_PRECISIONS:
            raise JoptError(
                f"unknown matmul_precision {self.matmul_precision!r}; allowed: "
                f"{', '.join(MATMUL_PRECISIONS)}"
            )
        if self.state_dtype is not None:
            try:
                dt = jnp.dtype(self.state_dtype)
            except TypeError:
                raise JoptError(f"state_dtype {self.state_dtype!r} is not a dtype") from None
            if not jnp.issubdtype(dt, jnp.floating):
                raise JoptError(f"state_dtype must be a floating dtype, got {dt}")
            object.__setattr__(self, "state_dtype", dt)

    @property
    def param_dtype(self) -> jnp.dtype:
        """The dtype of the (master) parameters the optimizer updates."""
        return jnp.dtype(_PARAM[self.policy])

    @property
    def compute_dtype(self) -> jnp.dtype:
        """The dtype of activations and of the parameters as the forward pass reads them."""
        return jnp.dtype(_COMPUTE[self.policy])

    @property
    def loss_dtype(self) -> jnp.dtype:
        """Losses and metrics: float32 under every policy."""
        return jnp.dtype(jnp.float32)

    @property
    def matmul(self) -> str:
        """The resolved matmul precision."""
        if self.matmul_precision is not None:
            return self.matmul_precision
        return "highest" if self.policy == "float32" else "default"

    @property
    def mixed(self) -> bool:
        """Whether the forward pass reads parameters in a narrower dtype than they are stored."""
        return self.compute_dtype != self.param_dtype

    def model_kwargs(self) -> dict[str, Any]:
        """``{"dtype": ..., "param_dtype": ...}``: the flax fields a model takes for this policy."""
        return {"dtype": self.compute_dtype, "param_dtype": self.param_dtype}

    def describe(self) -> dict[str, str]:
        """The resolved choice as plain strings (for a run's summary or a benchmark report)."""
        return {
            "precision": self.policy,
            "matmul_precision": self.matmul,
            "param_dtype": str(self.param_dtype),
            "compute_dtype": str(self.compute_dtype),
            "state_dtype": "optimizer" if self.state_dtype is None else str(self.state_dtype),
        }


def precision_policy(
    precision: str | Precision | None = None,
    matmul_precision: str | None = None,
    *,
    state_dtype: Any = None,
) -> Precision:
    """A :class:`Precision` from a name (``None`` means ``float32``) or an existing policy.

    ``matmul_precision`` / ``state_dtype``, when given, override the policy's own. Bad names
    raise a one-line :class:`jopt.JoptError`.
    """
    if isinstance(precision, Precision):
        p = precision
        if matmul_precision is not None:
            p = dataclasses.replace(p, matmul_precision=matmul_precision)
        if state_dtype is not None:
            p = dataclasses.replace(p, state_dtype=state_dtype)
        return p
    if precision is not None and not isinstance(precision, str):
        raise JoptError(f"precision must be a name or a Precision, got {precision!r}")
    return Precision(precision or "float32", matmul_precision, state_dtype)


def cast_floating(tree: Any, dtype: Any) -> Any:
    """``tree`` with its real floating leaves cast to ``dtype`` (integer, bool and complex leaves
    unchanged, so labels and counters pass through). The cast's gradient casts back, so a
    gradient taken through it has the original (master) dtype."""
    dtype = jnp.dtype(dtype)

    def cast(a):
        if hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.floating) and a.dtype != dtype:
            return a.astype(dtype)
        return a

    return jax.tree.map(cast, tree)


def module_dtype_fields(model: Any) -> bool:
    """Whether a flax module takes the policy as fields (``dtype`` and ``param_dtype``)."""
    fields = getattr(type(model), "__dataclass_fields__", {})
    return "dtype" in fields and "param_dtype" in fields


class CastModel:
    """A flax module without ``dtype``/``param_dtype`` fields, run under a policy by casting.

    ``init`` stores the parameters in ``param_dtype``; ``apply`` reads them, and the floating
    inputs, in ``compute_dtype``. Other collections (batch statistics) are passed unchanged, so
    they stay float32. It offers the ``init``/``apply`` pair the train step uses, nothing else;
    the wrapped module is ``.module``.
    """

    def __init__(self, module: Any, precision: Precision):
        self.module = module
        self.precision = precision

    def init(self, rngs: Any, *args: Any, **kwargs: Any) -> Any:
        variables = dict(self.module.init(rngs, *args, **kwargs))
        if "params" in variables:
            variables["params"] = cast_floating(variables["params"], self.precision.param_dtype)
        return variables

    def apply(self, variables: Any, *args: Any, **kwargs: Any) -> Any:
        variables = dict(variables)
        if "params" in variables:
            variables["params"] = cast_floating(variables["params"], self.precision.compute_dtype)
        args = cast_floating(args, self.precision.compute_dtype)
        return self.module.apply(variables, *args, **kwargs)

    def __repr__(self) -> str:
        return f"CastModel({self.module!r}, {self.precision.policy!r})"


def model_with_precision(model: Any, precision: str | Precision) -> Any:
    """``model`` under ``precision``: cloned with the policy's ``dtype``/``param_dtype`` when it
    has both fields (every built-in model and most flax modules), else wrapped in a
    :class:`CastModel` that casts parameters and inputs (float32: returned unchanged)."""
    precision = precision_policy(precision)
    if module_dtype_fields(model):
        return model.clone(**precision.model_kwargs())
    if precision.policy == "float32":
        return model
    return CastModel(model, precision)
