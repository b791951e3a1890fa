"""A strict test configuration.

- warnings are errors (pyproject ``filterwarnings``);
- JAX uses strict dtype promotion, so an accidental float64/int promotion fails loudly;
- every test that asks for a key gets one from a printed seed.
"""

import jax
import pytest

jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def key(request):
    seed = abs(hash(request.node.nodeid)) % (2**31)
    print(f"[{request.node.nodeid}] PRNG seed {seed}")
    return jax.random.key(seed)
