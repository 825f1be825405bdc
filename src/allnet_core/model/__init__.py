"""ALLNet and the one way to load and run a trained model.

- :mod:`~allnet_core.model.architecture`: :func:`build_allnet`, the network of Table 2 of
  Sampathila et al. (Healthcare 2022).
- :mod:`~allnet_core.model.files`: :func:`find_model_file`, the model file of a path or
  of a training run folder.
- :mod:`~allnet_core.model.loading`: :func:`load_model`, the safe loader (no ``Lambda``
  layers, ``safe_mode=True``, input and output checked against the class names).
- :mod:`~allnet_core.model.predict`: :class:`Predictor` and :func:`predict_p_all`, the
  predictor that reads P(positive) from the positive class's column.

Keras is imported only when a model is built or loaded.
"""

from allnet_core.model.architecture import (
    CLASS_NAMES,
    PAPER_INPUT_SHAPE,
    PAPER_PARAMETERS,
    build_allnet,
)
from allnet_core.model.files import find_model_file
from allnet_core.model.loading import (
    LoadedModel,
    check_model,
    load_model,
    read_keras_config,
    run_class_names,
)
from allnet_core.model.predict import DEFAULT_BATCH, Predictor, check_batch_size, predict_p_all

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_BATCH",
    "PAPER_INPUT_SHAPE",
    "PAPER_PARAMETERS",
    "LoadedModel",
    "Predictor",
    "build_allnet",
    "check_batch_size",
    "check_model",
    "find_model_file",
    "load_model",
    "predict_p_all",
    "read_keras_config",
    "run_class_names",
]
