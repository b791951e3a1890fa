"""Models: flax ``linear``, ``mlp`` and ``cnn``, or a user's own module, via ``make_model``."""

from jopt.models._cnn import CNN
from jopt.models._layers import ACTIVATIONS
from jopt.models._mlp import MLP, Linear
from jopt.models._registry import MODELS, make_model

__all__ = ["ACTIVATIONS", "CNN", "MLP", "MODELS", "Linear", "make_model"]
