"""An example package of user code that jopt configs name as ``"module:attribute"``.

``nets``: one tiny model per framework (flax linen, flax NNX, equinox); ``data``: a seeded
synthetic data function; ``losses``: a per-example focal loss. The configs next to this
package (``examples/*.yaml``) train them with ``jopt run``, ``jopt sweep`` and ``--resume``.
"""
