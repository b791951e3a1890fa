"""On-the-fly augmentation of training batches, inside the jitted step, with explicit keys.

The train step calls :func:`augment_batch` on training batches only; evaluation never does, so
validation and test data are never augmented.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jopt.core.errors import JoptError


@dataclasses.dataclass(frozen=True)
class Augment:
    """Which augmentations to apply (all off by default).

    Attributes:
        noise_std: standard deviation of additive Gaussian input noise.
        max_shift: random integer shift in ``[-max_shift, max_shift]`` along each spatial axis
            (images: H and W; 1-D signals: length), zero filled. Must be 0, 1 or 2.
        flip: random horizontal flip (images only; off by default because digits are not
            mirror-symmetric: use it for data where a mirrored example keeps its label).
        mixup_alpha: mixup (Zhang et al. 2018, "mixup: Beyond Empirical Risk Minimization"):
            ``x = lam x_i + (1 - lam) x_j``, the same for the one-hot targets, with
            ``lam ~ Beta(alpha, alpha)`` once per batch and ``j`` a permutation of the batch.
    """

    noise_std: float = 0.0
    max_shift: int = 0
    flip: bool = False
    mixup_alpha: float = 0.0

    def __post_init__(self):
        if self.noise_std < 0 or self.mixup_alpha < 0:
            raise JoptError("augment noise_std and mixup_alpha must be >= 0")
        if self.max_shift not in (0, 1, 2):
            raise JoptError(f"augment max_shift must be 0, 1 or 2, got {self.max_shift}")

    @property
    def active(self) -> bool:
        return bool(self.noise_std or self.max_shift or self.flip or self.mixup_alpha)

    def check(self, kind: str) -> None:
        """Raise ``JoptError`` if an augmentation makes no sense for data of this ``kind``."""
        if self.max_shift and kind not in ("image", "signal"):
            raise JoptError(f"augment max_shift needs image or signal data, got {kind} data")
        if self.flip and kind != "image":
            raise JoptError(f"augment flip needs image data, got {kind} data")


def _spatial_axes(kind: str) -> tuple[int, ...]:
    # Axes of one example (no batch axis) that a shift moves along.
    return (0, 1) if kind == "image" else (0,)


def _shift_one(x: jax.Array, offsets: jax.Array, axes: tuple[int, ...], s: int) -> jax.Array:
    pads = [(s, s) if a in axes else (0, 0) for a in range(x.ndim)]
    padded = jnp.pad(x, pads)
    starts = [s + offsets[axes.index(a)] if a in axes else 0 for a in range(x.ndim)]
    return jax.lax.dynamic_slice(padded, starts, x.shape)


def augment_batch(
    aug: Augment, key: jax.Array, x: jax.Array, targets: jax.Array, kind: str
) -> tuple[jax.Array, jax.Array]:
    """Augment a training batch ``x`` (b, ...) and its float ``targets`` (one-hot or regression)."""
    k_noise, k_shift, k_flip, k_mix, k_perm = jax.random.split(key, 5)
    if aug.max_shift:
        axes = _spatial_axes(kind)
        offsets = jax.random.randint(
            k_shift, (x.shape[0], len(axes)), -aug.max_shift, aug.max_shift + 1
        )
        x = jax.vmap(lambda xi, oi: _shift_one(xi, oi, axes, aug.max_shift))(x, offsets)
    if aug.flip:
        flip = jax.random.bernoulli(k_flip, 0.5, (x.shape[0],))
        flip = flip.reshape((-1,) + (1,) * (x.ndim - 1))
        x = jnp.where(flip, jnp.flip(x, axis=2), x)  # axis 2 = image width
    if aug.noise_std:
        x = x + aug.noise_std * jax.random.normal(k_noise, x.shape, x.dtype)
    if aug.mixup_alpha:
        lam = jax.random.beta(k_mix, aug.mixup_alpha, aug.mixup_alpha).astype(x.dtype)
        perm = jax.random.permutation(k_perm, x.shape[0])
        x = lam * x + (1 - lam) * x[perm]
        lam_t = lam.astype(targets.dtype)
        targets = lam_t * targets + (1 - lam_t) * targets[perm]
    return x, targets
