"""optax.contrib optimizers: ADOPT, AdEMAMix, Prodigy and D-Adaptation AdamW."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.typing

from jopt.core import (
    GradientTransformation,
    JoptError,
    ScalarOrSchedule,
    abs_sq,
    chain,
    inexact,
    inexact_dtype,
    map_elementwise,
    safe_increment,
    state_dtype,
    zeros_like,
)
from jopt.transforms import (
    Mask,
    add_decayed_weights,
    scale_by_ademamix,
    scale_by_adopt,
    scale_by_learning_rate,
)


def adopt(
    learning_rate: ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.9999,
    eps: jax.typing.ArrayLike = 1e-6,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[jax.Array], jax.Array] = lambda x: x**0.25,
) -> GradientTransformation:
    """ADOPT (Taniguchi et al. 2024, "ADOPT: Modified Adam Can Converge with Any beta_2"):
    :func:`jopt.transforms.scale_by_adopt` then ``-learning_rate``. The second moment of the
    previous step normalises the gradient before the momentum:

    .. math::

        m_t = \\beta_1 m_{t-1} + (1-\\beta_1)\\,\\mathrm{clip}\\!\\left(
            \\frac{g_t}{\\max(\\sqrt{v_{t-1}}, \\epsilon)}\\right), \\quad
        v_t = \\beta_2 v_{t-1} + (1-\\beta_2) g_t^2, \\quad
        \\theta_t = \\theta_{t-1} - \\eta\\, m_t

    Same arguments and defaults as ``optax.contrib.adopt``.

    Args:
        learning_rate: step size :math:`\\eta` (a number or a schedule).
        b1: momentum decay :math:`\\beta_1`.
        b2: second-moment decay :math:`\\beta_2`.
        eps: floor :math:`\\epsilon` of :math:`\\sqrt{v}`.
        mu_dtype: dtype of the momentum (default: the parameters').
        nesterov: Nesterov momentum.
        use_clipping: clip the normalised gradient to :math:`\\pm` ``clip_value_fn(t)``.
        clip_value_fn: the clipping bound as a function of the step (optax's ``t ** 0.25``).

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.adopt(1e-3)
        >>> state = tx.init({"w": jnp.ones(3)})
    """
    return chain(
        scale_by_adopt(
            b1,
            b2,
            eps,
            mu_dtype,
            nesterov=nesterov,
            use_clipping=use_clipping,
            clip_value_fn=clip_value_fn,
        ),
        scale_by_learning_rate(learning_rate),
    )


def ademamix(
    learning_rate: ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    b3: ScalarOrSchedule = 0.9999,
    alpha: ScalarOrSchedule = 5.0,
    eps: jax.typing.ArrayLike = 1e-8,
    eps_root: jax.typing.ArrayLike = 0.0,
    mu_dtype: Any = None,
    weight_decay: jax.typing.ArrayLike = 0.0,
    mask: Mask = None,
) -> GradientTransformation:
    """AdEMAMix (Pagliardini et al. 2024, "The AdEMAMix Optimizer: Better, Faster, Older"):
    :func:`jopt.transforms.scale_by_ademamix`, decoupled weight decay, then ``-learning_rate``.
    A fast and a slow gradient EMA share Adam's denominator:

    .. math::

        \\theta_t = \\theta_{t-1} - \\eta\\left(\\frac{\\hat m^{(1)}_t + \\alpha\\, m^{(2)}_t}
            {\\sqrt{\\hat v_t + \\epsilon_{root}} + \\epsilon} + \\lambda \\theta_{t-1}\\right)

    (:math:`m^{(1)}` with :math:`\\beta_1`, bias-corrected; :math:`m^{(2)}` with
    :math:`\\beta_3`, not corrected). Same arguments and defaults as
    ``optax.contrib.ademamix`` (note ``alpha=5`` here, 6 in the building block, as in optax).

    Args:
        learning_rate: step size :math:`\\eta` (a number or a schedule).
        b1: fast EMA decay :math:`\\beta_1`.
        b2: second-moment decay :math:`\\beta_2`.
        b3: slow EMA decay :math:`\\beta_3` (a number or a schedule).
        alpha: weight :math:`\\alpha` of the slow EMA (a number or a schedule).
        eps: :math:`\\epsilon` outside the square root.
        eps_root: :math:`\\epsilon_{root}` inside it.
        mu_dtype: dtype of the EMAs (default: the parameters').
        weight_decay: decoupled weight decay :math:`\\lambda`.
        mask: which parameters decay (a tree of bools or a function of the params).

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.ademamix(1e-3)
        >>> state = tx.init({"w": jnp.ones(3)})
    """
    return chain(
        scale_by_ademamix(b1, b2, b3, alpha, eps, eps_root, mu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


class DAdaptState(NamedTuple):
    """State of :func:`prodigy` and :func:`dadapt_adamw` (the D-Adaptation family).

    Attributes:
        exp_avg: EMA of the (scaled) gradient.
        exp_avg_sq: EMA of the squared (scaled) gradient.
        grad_sum: the weighted gradient sum :math:`s_t` whose L1 norm bounds the distance.
        params0: the initial parameters :math:`x_0` (Prodigy); an empty tuple for D-Adapt.
        estim_lr: the distance estimate :math:`d_t` (float32 scalar, non-decreasing).
        numerator_weighted: the weighted numerator of the estimate (float32 scalar).
        count: int32 steps taken (saturating).
    """

    exp_avg: Any
    exp_avg_sq: Any
    grad_sum: Any
    params0: Any
    estim_lr: jax.Array
    numerator_weighted: jax.Array
    count: jax.Array


def _vdot(a: Any, b: Any) -> jax.Array:
    # optax.tree.vdot's reduction; the real part (C^n as R^2n) keeps the estimate real.
    leaves = jax.tree.leaves(map_elementwise(lambda x, y: jnp.real(jnp.vdot(x, y)), a, b))
    return sum(leaves, jnp.zeros([], jnp.float32))


def _l1(tree: Any) -> jax.Array:
    return sum(jax.tree.leaves(map_elementwise(lambda x: jnp.sum(jnp.abs(x)), tree)), 0.0)


def _dadapt_init(params: Any, estim_lr0: Any, keep_params0: bool) -> DAdaptState:
    # A copy, never the parameters' own buffer (a jitted step donates both).
    p0 = (
        map_elementwise(lambda p: jnp.array(p, dtype=state_dtype(p), copy=True), params)
        if keep_params0
        else ()
    )
    return DAdaptState(
        exp_avg=zeros_like(params),
        exp_avg_sq=zeros_like(params, real=True),
        grad_sum=zeros_like(params),
        params0=p0,
        estim_lr=jnp.asarray(estim_lr0, jnp.float32),
        numerator_weighted=jnp.zeros([], jnp.float32),
        count=jnp.zeros([], jnp.int32),
    )


def _bias_correction(beta1: Any, beta2: Any, count: jax.Array) -> jax.Array:
    # sqrt(1 - b2^t) / (1 - b1^t) with an integer power, exactly as optax computes it.
    with jax.numpy_dtype_promotion("standard"):
        b1t = jnp.asarray(beta1, jnp.float32) ** count
        b2t = jnp.asarray(beta2, jnp.float32) ** count
    return (1 - b2t) ** 0.5 / (1 - b1t)


def _as(x: Any, like: jax.Array) -> jax.Array:
    # A real scalar or array in the dtype of ``like`` (complex parameters under strict
    # promotion).
    return jnp.asarray(x).astype(jnp.asarray(like).dtype)


def _wsq(c: Any, x: jax.Array) -> jax.Array:
    # c * |x|^2, with optax's rounding order ((c * x) * x) for real x.
    return c * abs_sq(x) if jnp.iscomplexobj(x) else c * x * x


def _need_params(params: Any, name: str) -> None:
    if params is None:
        raise JoptError(f"{name}: update needs params")


def prodigy(
    learning_rate: ScalarOrSchedule = 1.0,
    betas: tuple[jax.typing.ArrayLike, jax.typing.ArrayLike] = (0.9, 0.999),
    beta3: jax.typing.ArrayLike | None = None,
    eps: jax.typing.ArrayLike = 1e-8,
    estim_lr0: jax.typing.ArrayLike = 1e-6,
    estim_lr_coef: jax.typing.ArrayLike = 1.0,
    weight_decay: jax.typing.ArrayLike = 0.0,
    safeguard_warmup: bool = False,
) -> GradientTransformation:
    """Prodigy (Mishchenko & Defazio 2024, "Prodigy: An Expeditiously Adaptive Parameter-Free
    Learner"): Adam on :math:`d_t g_t` whose step size :math:`d_t` estimates the distance to
    the solution.

    .. math::

        m_t = \\beta_1 m_{t-1} + (1-\\beta_1) d_t g_t, \\quad
        v_t = \\beta_2 v_{t-1} + (1-\\beta_2) d_t^2 g_t^2, \\quad
        \\lambda_t = \\eta_t d_t \\sqrt{1-\\beta_2^t}/(1-\\beta_1^t),

        r_t = \\beta_3 r_{t-1} + \\frac{d_t}{d_0}\\lambda_t \\langle g_t, x_0 - x_t\\rangle,
        \\quad s_t = \\beta_3 s_{t-1} + \\frac{\\lambda_t}{d_0} d_t g_t, \\quad
        d_{t+1} = \\max(d_t, c\\, r_t / \\lVert s_t\\rVert_1),

        x_{t+1} = x_t - \\lambda_t \\left(\\frac{m_t}{\\sqrt{v_t} + d_{t+1}\\epsilon}
            + \\text{wd}\\; x_t\\right).

    The learning rate is built in (the returned update is the full step). ``params`` are
    required. Same arguments and defaults as ``optax.contrib.prodigy``.

    Args:
        learning_rate: the multiplier :math:`\\eta_t` of the estimated step (1: none).
        betas: :math:`(\\beta_1, \\beta_2)`.
        beta3: :math:`\\beta_3` (``None``: :math:`\\sqrt{\\beta_2}`).
        eps: :math:`\\epsilon`.
        estim_lr0: the initial estimate :math:`d_0`.
        estim_lr_coef: :math:`c`.
        weight_decay: wd, decoupled (scaled by :math:`\\lambda_t`).
        safeguard_warmup: remove the learning rate from the denominator of the estimate
            (optax's option; for warm-up schedules).

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.prodigy()
        >>> p = {"w": jnp.ones(3)}
        >>> u, s = tx.update(p, tx.init(p), p)
    """
    beta1, beta2 = betas
    beta3_ = beta2**0.5 if beta3 is None else beta3

    def init_fn(params):
        return _dadapt_init(params, estim_lr0, keep_params0=True)

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        _need_params(params, "prodigy")
        count = safe_increment(state.count)
        sched = learning_rate(state.count) if callable(learning_rate) else learning_rate
        d = state.estim_lr
        bc = _bias_correction(beta1, beta2, count)
        dlr = (d * sched * bc).astype(jnp.float32)
        g32 = map_elementwise(lambda g, s: inexact(g).astype(s.dtype), updates, state.exp_avg)
        diff = map_elementwise(lambda p0, p: p0 - p.astype(p0.dtype), state.params0, params)
        numer_acc = _vdot(g32, diff)
        gs_scale = d if safeguard_warmup else dlr

        def moments(g, ea, eas, s):
            dg = _as(d, g) * g
            ea = beta1 * ea + (1 - beta1) * dg
            eas = beta2 * eas + _wsq(1 - beta2, dg)
            s = beta3_ * s + _as(gs_scale, dg) * dg / estim_lr0
            return ea, eas, s

        ea, eas, gsum = map_elementwise(
            moments, g32, state.exp_avg, state.exp_avg_sq, state.grad_sum, n_out=3
        )
        numer = beta3_ * state.numerator_weighted + d / estim_lr0 * dlr * numer_acc
        # A zero gradient sum (zero gradients so far) leaves d unchanged instead of 0/0 = nan.
        l1 = _l1(gsum)
        d_new = jnp.where(l1 > 0, jnp.maximum(d, estim_lr_coef * numer / l1), d)

        def step(ea, eas, p):
            pf = p.astype(ea.dtype)
            # optax scales eps by the *updated* estimate.
            den = _as(jnp.sqrt(eas) + d_new * eps, ea)
            lr_ = _as(dlr, ea)
            return (-weight_decay * lr_ * pf - lr_ * ea / den).astype(inexact_dtype(p))

        out = map_elementwise(step, ea, eas, params)
        return out, DAdaptState(ea, eas, gsum, state.params0, d_new, numer, count)

    return GradientTransformation(init_fn, update_fn)


def dadapt_adamw(
    learning_rate: ScalarOrSchedule = 1.0,
    betas: tuple[jax.typing.ArrayLike, jax.typing.ArrayLike] = (0.9, 0.999),
    eps: jax.typing.ArrayLike = 1e-8,
    estim_lr0: jax.typing.ArrayLike = 1e-6,
    weight_decay: jax.typing.ArrayLike = 0.0,
) -> GradientTransformation:
    """D-Adaptation AdamW (Defazio & Mishchenko 2023, "Learning-Rate-Free Learning by
    D-Adaptation"), with :math:`\\sqrt{\\beta_2}` as the averaging rate of the estimate:

    .. math::

        \\lambda_t = \\eta_t d_t \\sqrt{1-\\beta_2^t}/(1-\\beta_1^t), \\quad
        r_t = \\sqrt{\\beta_2} r_{t-1} + (1-\\sqrt{\\beta_2}) \\lambda_t
            \\langle g_t, s_{t-1}/(\\sqrt{v_{t-1}}+\\epsilon)\\rangle,

        m_t = \\beta_1 m_{t-1} + (1-\\beta_1)\\lambda_t g_t, \\quad
        s_t = \\sqrt{\\beta_2} s_{t-1} + (1-\\sqrt{\\beta_2})\\lambda_t g_t, \\quad
        d_{t+1} = \\max\\!\\left(d_t, \\frac{r_t}{(1-\\sqrt{\\beta_2})\\lVert s_t\\rVert_1}\\right),

        x_{t+1} = x_t - m_t/(\\sqrt{v_t} + \\epsilon) - \\text{wd}\\,\\lambda_t x_t.

    The learning rate is built in; ``params`` are required. Same arguments and defaults as
    ``optax.contrib.dadapt_adamw``.

    Args:
        learning_rate: the multiplier :math:`\\eta_t` of the estimated step (1: none).
        betas: :math:`(\\beta_1, \\beta_2)`.
        eps: :math:`\\epsilon`.
        estim_lr0: the initial estimate :math:`d_0`.
        weight_decay: wd, decoupled (scaled by :math:`\\lambda_t`).

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.dadapt_adamw()
        >>> p = {"w": jnp.ones(3)}
        >>> u, s = tx.update(p, tx.init(p), p)
    """
    beta1, beta2 = betas
    sb2 = beta2**0.5

    def init_fn(params):
        return _dadapt_init(params, estim_lr0, keep_params0=False)

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        _need_params(params, "dadapt_adamw")
        count = safe_increment(state.count)
        sched = learning_rate(state.count) if callable(learning_rate) else learning_rate
        bc = _bias_correction(beta1, beta2, count)
        dlr = (state.estim_lr * sched * bc).astype(jnp.float32)
        g32 = map_elementwise(lambda g, s: inexact(g).astype(s.dtype), updates, state.exp_avg)
        s_w = map_elementwise(
            lambda s, v: s / _as(jnp.sqrt(v) + eps, s), state.grad_sum, state.exp_avg_sq
        )
        numer_acc = _vdot(g32, s_w)

        def moments(g, ea, eas, s):
            lr_ = _as(dlr, g)
            ea = beta1 * ea + (1 - beta1) * lr_ * g
            eas = beta2 * eas + _wsq(1 - beta2, g)
            s = sb2 * s + (1 - sb2) * lr_ * g
            return ea, eas, s

        ea, eas, gsum = map_elementwise(
            moments, g32, state.exp_avg, state.exp_avg_sq, state.grad_sum, n_out=3
        )
        numer = sb2 * state.numerator_weighted + (1 - sb2) * dlr * numer_acc
        l1 = _l1(gsum)  # zero (zero gradients so far): keep d rather than 0/0 = nan
        d_hat = jnp.maximum(state.estim_lr, numer / ((1 - sb2) * l1))
        d_new = jnp.where(l1 > 0, d_hat, state.estim_lr)

        def step(ea, eas, p):
            pf = p.astype(ea.dtype)
            den = _as(jnp.sqrt(eas) + eps, ea)
            return (-weight_decay * _as(dlr, ea) * pf - ea / den).astype(inexact_dtype(p))

        out = map_elementwise(step, ea, eas, params)
        return out, DAdaptState(ea, eas, gsum, (), d_new, numer, count)

    return GradientTransformation(init_fn, update_fn)
