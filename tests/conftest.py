"""A strict test configuration.

- warnings are errors (pyproject ``filterwarnings``);
- JAX uses strict dtype promotion, so an accidental float64/int promotion fails loudly;
- every test that asks for a key gets one from a printed seed;
- one suite run shares a persistent XLA compilation cache (a fresh temporary directory per run,
  inherited by the xdist workers and by the subprocesses tests start), so the many tests that
  compile the same small programs compile them once. A cache hit loads the very executable a
  compile would have produced, so results are unchanged; nothing is kept between runs.
"""

import os
import shutil
import tempfile

import jax
import pytest

_CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"
_OWN_CACHE = None
if not os.environ.get(_CACHE_ENV):  # the controller (or a plain run) makes it; workers inherit it
    _OWN_CACHE = tempfile.mkdtemp(prefix="jopt-tests-xla-cache-")
    os.environ[_CACHE_ENV] = _OWN_CACHE
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
jax.config.update("jax_compilation_cache_dir", os.environ[_CACHE_ENV])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_numpy_dtype_promotion", "strict")


def pytest_unconfigure(config):
    if _OWN_CACHE is not None and not hasattr(config, "workerinput"):
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


@pytest.fixture
def key(request):
    seed = abs(hash(request.node.nodeid)) % (2**31)
    print(f"[{request.node.nodeid}] PRNG seed {seed}")
    return jax.random.key(seed)
