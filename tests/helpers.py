"""Shared test helpers."""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path

import jax

ROOT = Path(__file__).resolve().parents[1]


def subprocess_env(xla_flags: str | None = None, **extra: str) -> dict[str, str]:
    """The environment for a jopt subprocess on CPU: the repository on ``PYTHONPATH``, and
    ``XLA_FLAGS`` set to ``xla_flags`` (``None``: removed, so the parent's flags do not leak)."""
    env = dict(os.environ)
    if xla_flags is None:
        env.pop("XLA_FLAGS", None)
    else:
        env["XLA_FLAGS"] = xla_flags
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    env.update(extra)
    return env


def free_port() -> int | None:
    """A free TCP port on localhost (a coordinator's), or None where sockets are not allowed."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    except OSError:
        return None


class TraceCounter:
    """Wrap a function and count how many times JAX traces it.

    >>> counter = TraceCounter(step); f = jax.jit(counter); f(x); f(x); assert counter.count == 1
    """

    def __init__(self, fn):
        self.fn = fn
        self.count = 0
        functools.update_wrapper(self, fn)

    def __call__(self, *args, **kwargs):
        self.count += 1
        return self.fn(*args, **kwargs)


def tree_max_rel_err(a, b) -> float:
    """The largest elementwise relative error ``|a-b| / max(|b|, tiny)`` over two trees."""
    import jax.numpy as jnp

    errs = jax.tree.map(lambda x, y: jnp.max(jnp.abs(x - y) / jnp.maximum(jnp.abs(y), 1e-12)), a, b)
    return float(max(jax.tree.leaves(errs), default=0.0))
