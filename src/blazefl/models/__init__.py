"""Reference models and a `ModelSelector` that builds them by name."""

from blazefl.models._build import build_model
from blazefl.models._zoo import CNN, MLP, MODEL_NAMES, ModelZoo

__all__ = ["CNN", "MLP", "MODEL_NAMES", "ModelZoo", "build_model"]
