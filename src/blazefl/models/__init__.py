"""Reference models and a `ModelSelector` that builds them by name."""

from blazefl import _exports
from blazefl.models._build import build_model
from blazefl.models._cifar import CifarCNN, ResNet18
from blazefl.models._leaf import BagOfWordsClassifier, LeafCharLSTM, LeafFEMNISTCNN
from blazefl.models._zoo import CNN, CNNBN, MLP, MODEL_NAMES, ModelZoo

__all__ = [
    "BagOfWordsClassifier",
    "LeafCharLSTM",
    "LeafFEMNISTCNN",
    "CNN",
    "CNNBN",
    "CifarCNN",
    "MLP",
    "MODEL_NAMES",
    "ModelZoo",
    "ResNet18",
    "build_model",
]

_exports.publish(globals())
