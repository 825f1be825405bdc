"""The features a classifier's head sees: the input of its last ``Dense`` layer.

For ALLNet that is the output of the second hidden dense layer (``fc2``, after its dropout,
which is the identity at inference). :func:`scoring_model` builds, from the loaded graph
itself (no ``Lambda``, nothing deserialised), a model with two outputs: the class
probabilities and those features, so one forward pass gives both.
"""

from __future__ import annotations

from allnet_core.errors import ModelError

__all__ = ["feature_layer_name", "scoring_model"]


def _last_dense(model):
    dense = [layer for layer in model.layers if type(layer).__name__ == "Dense"]
    if not dense:
        raise ModelError(f"{getattr(model, 'name', '<model>')}: the model has no Dense layer; "
                         "its features cannot be compared with the training cells'")
    return dense[-1]


def feature_layer_name(model) -> str:
    """Name of the last ``Dense`` layer, whose input are the features."""
    return str(_last_dense(model).name)


def scoring_model(model):
    """A Keras model ``x -> [probabilities, features]`` sharing ``model``'s weights.

    Raises
    ------
    ModelError
        When the model has no ``Dense`` layer or its last one is not reached from the
        model's input (e.g. a nested submodel).
    """
    from allnet_core.backend import get_keras

    keras = get_keras()
    head = _last_dense(model)
    try:
        features = head.input
        return keras.Model(model.inputs, [model.outputs[0], features],
                           name=f"{model.name}_scoring")
    except Exception as exc:  # keras raises ValueError / AttributeError for odd graphs
        raise ModelError(f"{model.name}: cannot read the features of layer {head.name!r} "
                         f"({type(exc).__name__}: {exc})") from exc
