"""Augmentation maths: shifts, flips, noise and mixup, with explicit keys."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jopt import JoptError
from jopt.data import Augment
from jopt.data import augment_batch as _augment_batch

# jitted (the Augment config and the data kind are static): one compile instead of many eager ops
augment_batch = jax.jit(_augment_batch, static_argnums=(0, 4))


def _targets(n, k=3):
    return jax.nn.one_hot(jnp.arange(n) % k, k)


def test_image_shift_moves_pixels_and_zero_fills(key):
    x = jnp.zeros((64, 5, 5)).at[:, 2, 2].set(1.0)  # one bright pixel in the centre
    out, t = augment_batch(Augment(max_shift=2), key, x, _targets(64), "image")
    out = np.asarray(out)
    assert np.allclose(out.sum((1, 2)), 1.0)  # a centred pixel never leaves a 5x5 frame
    r, c = np.divmod(out.reshape(64, -1).argmax(1), 5)
    assert np.abs(r - 2).max() <= 2 and np.abs(c - 2).max() <= 2
    assert len(set(zip(r, c, strict=True))) > 5  # shifts differ per example
    np.testing.assert_array_equal(t, _targets(64))  # labels untouched
    edge = jnp.zeros((8, 4, 4)).at[:, 0, 0].set(1.0)  # a corner pixel can be pushed out
    out2, _ = augment_batch(Augment(max_shift=1), key, edge, _targets(8), "image")
    assert float(jnp.max(out2)) <= 1.0 and float(jnp.min(out2)) >= 0.0


def test_signal_shift_is_a_zero_filled_translation(key):
    x = jnp.tile(jnp.arange(1.0, 11.0), (32, 1))
    out, _ = augment_batch(Augment(max_shift=2), key, x, _targets(32), "signal")
    for row in np.asarray(out):
        nz = np.nonzero(row)[0]
        shift = int(nz[0]) if nz[0] > 0 else -(10 - 1 - int(nz[-1]))
        assert abs(shift) <= 2
        np.testing.assert_array_equal(row, np.roll(np.pad(np.arange(1.0, 11.0), 2), shift)[2:-2])


def test_flip_mirrors_the_width_axis(key):
    x = jnp.tile(jnp.arange(12.0).reshape(3, 4), (40, 1, 1))
    out, _ = augment_batch(Augment(flip=True), key, x, _targets(40), "image")
    flipped = np.all(np.asarray(out) == np.asarray(x)[:, :, ::-1], axis=(1, 2))
    kept = np.all(np.asarray(out) == np.asarray(x), axis=(1, 2))
    assert np.all(flipped | kept) and 5 < flipped.sum() < 35


def test_noise_has_the_requested_scale(key):
    x = jnp.zeros((200, 50))
    out, _ = augment_batch(Augment(noise_std=0.3), key, x, _targets(200), "tabular")
    np.testing.assert_allclose(np.std(out), 0.3, rtol=0.05)


def test_mixup_is_one_convex_combination(key):
    x = jax.random.normal(key, (16, 4))
    t = jnp.eye(16)  # one class per example: the mixed targets are the mixing weights
    out, w = augment_batch(Augment(mixup_alpha=0.4), key, x, t, "tabular")
    w = np.asarray(w)
    np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(out, w @ np.asarray(x), rtol=1e-5, atol=1e-5)  # same pairs, same lam
    assert np.all((w > 1e-7).sum(1) <= 2)  # each example mixes with at most one partner
    lam = np.diag(w)[np.diag(w) < 1 - 1e-6]  # rows not paired with themselves
    assert len(lam) > 0 and np.allclose(lam, lam[0])  # one lambda per batch


def test_augmentation_is_a_pure_function_of_the_key(key):
    x = jax.random.normal(key, (8, 10))
    aug = Augment(noise_std=0.1, max_shift=1)
    a = augment_batch(aug, key, x, _targets(8), "signal")
    b = augment_batch(aug, key, x, _targets(8), "signal")
    c = augment_batch(aug, jax.random.fold_in(key, 1), x, _targets(8), "signal")
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.allclose(a[0], c[0])


def test_bad_augmentation_options():
    with pytest.raises(JoptError, match="max_shift must be 0, 1 or 2"):
        Augment(max_shift=3)
    with pytest.raises(JoptError, match=">= 0"):
        Augment(noise_std=-1.0)
    with pytest.raises(JoptError, match="flip needs image data"):
        Augment(flip=True).check("signal")
