"""ALLNet and the one way to load and run a trained model.

- :mod:`~allnet_core.model.architecture`: :func:`build_allnet`, the network of Table 2 of
  Sampathila et al. (Healthcare 2022).
- :mod:`~allnet_core.model.files`: :func:`find_model_file`, the model file of a path or
  of a training run folder.
- :mod:`~allnet_core.model.loading`: :func:`load_model`, the safe loader (no ``Lambda``
  layers, ``safe_mode=True``, input and output checked against the class names).
- :mod:`~allnet_core.model.predict`: :class:`Predictor` and :func:`predict_p_all`, the
  predictor that reads P(positive) from the positive class's column and applies the model
  card's calibration and out-of-scope reference.
- :mod:`~allnet_core.model.card`: the model card beside a model file (:func:`read_card`,
  :func:`write_card`) and its verdict (:func:`assess`: headline and warnings).
- :mod:`~allnet_core.model.calibration`: temperature scaling (:func:`fit_temperature`),
  expected calibration error, reliability bins.
- :mod:`~allnet_core.model.scope`: the out-of-scope reference (:func:`fit_scope`).
- :mod:`~allnet_core.model.features`: the features the classifier head sees.

Keras is imported only when a model is built or loaded.
"""

from allnet_core.model.architecture import (
    CLASS_NAMES,
    PAPER_INPUT_SHAPE,
    PAPER_PARAMETERS,
    build_allnet,
)
from allnet_core.model.calibration import (
    Calibration,
    expected_calibration_error,
    fit_temperature,
)
from allnet_core.model.card import ModelCard, assess, read_card, write_card
from allnet_core.model.files import find_model_file
from allnet_core.model.loading import (
    LoadedModel,
    check_model,
    load_model,
    read_keras_config,
    run_class_names,
)
from allnet_core.model.predict import (
    DEFAULT_BATCH,
    Predictor,
    check_batch_size,
    predict_features,
    predict_p_all,
)
from allnet_core.model.scope import ScopeReference, fit_scope

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_BATCH",
    "PAPER_INPUT_SHAPE",
    "PAPER_PARAMETERS",
    "Calibration",
    "LoadedModel",
    "ModelCard",
    "Predictor",
    "ScopeReference",
    "assess",
    "build_allnet",
    "check_batch_size",
    "check_model",
    "expected_calibration_error",
    "find_model_file",
    "fit_scope",
    "fit_temperature",
    "load_model",
    "predict_features",
    "predict_p_all",
    "read_card",
    "read_keras_config",
    "run_class_names",
    "write_card",
]
