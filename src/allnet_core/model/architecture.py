"""ALLNet, the convolutional network of Sampathila et al. (Healthcare 2022, Table 2).

At the paper's input size of 450x450x3 the model has 95,099,266 parameters
(95,097,474 trainable, 1,792 non-trainable batch-norm statistics):

==============================  ============  ==========
layer                           output        parameters
==============================  ============  ==========
Conv 3x3, 64, same, ReLU        450x450x64         1,792
MaxPool 3, stride 3             150x150x64
Conv 3x3, 256, same, ReLU       150x150x256      147,712
MaxPool 3, stride 3             50x50x256
Conv 3x3, 384, same, ReLU       50x50x384        885,120
BatchNorm                       50x50x384          1,536
MaxPool 3, stride 3, same       17x17x384
Dropout (``conv_dropout``)
Conv 3x3, 512, same, ReLU       17x17x512      1,769,984
BatchNorm                       17x17x512          2,048
MaxPool 3, stride 3, same       6x6x512
Dropout (``conv_dropout``)
Flatten                         18,432
Dense 4096, ReLU + Dropout      4,096         75,501,568
Dense 4096, ReLU + Dropout      4,096         16,781,312
Dense 2, softmax                2                  8,194
==============================  ============  ==========

The paper does not give dropout rates. We use 0.25 after the convolutional blocks and 0.5
after the dense layers (the classic AlexNet/VGG choices for a network of this shape); both
are arguments. The softmax is a separate float32 layer so that mixed precision keeps the
output probabilities in float32.
"""

from __future__ import annotations

from allnet_core.backend import get_keras
from allnet_core.classes import CLASS_NAMES

__all__ = ["CLASS_NAMES", "PAPER_INPUT_SHAPE", "PAPER_PARAMETERS", "build_allnet"]

PAPER_INPUT_SHAPE = (450, 450, 3)
PAPER_PARAMETERS = 95_099_266


def build_allnet(
    input_shape: tuple[int, int, int] = PAPER_INPUT_SHAPE,
    num_classes: int = 2,
    conv_dropout: float = 0.25,
    dense_dropout: float = 0.5,
    dense_units: int = 4096,
    name: str = "allnet",
):
    """Build ALLNet as in Table 2 of the paper.

    Parameters
    ----------
    input_shape : tuple of int
        ``(height, width, 3)``. The paper uses 450x450x3; smaller sizes (e.g. 96 or 150)
        serve quick runs and tests. Must be at least 9x9.
    num_classes : int
        Width of the softmax output (2: HEM, ALL; see
        :data:`allnet_core.classes.CLASS_NAMES`).
    conv_dropout, dense_dropout : float
        Dropout rates after the last two convolutional blocks and after each hidden dense
        layer (the paper gives none; see the module docstring).
    dense_units : int
        Width of the two hidden dense layers (4096 in the paper).
    name : str
        Model name.

    Returns
    -------
    keras.Model
        Uncompiled functional model taking ``uint8``-range ``float32`` images
        (0-255; it rescales internally) and returning class probabilities.

    Examples
    --------
    >>> model = build_allnet()  # doctest: +SKIP
    >>> model.count_params()  # doctest: +SKIP
    95099266
    """
    h, w, c = (int(v) for v in input_shape)
    if c != 3:
        raise ValueError(f"ALLNet takes RGB input (3 channels), got input_shape={input_shape}")
    if h < 9 or w < 9:
        raise ValueError(f"input size must be at least 9x9, got {h}x{w}")
    for label, rate in (("conv_dropout", conv_dropout), ("dense_dropout", dense_dropout)):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"{label} must be in [0, 1), got {rate}")
    keras = get_keras()
    layers = keras.layers

    inputs = keras.Input(shape=(h, w, 3), name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    x = layers.Conv2D(64, 3, padding="same", activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(3, strides=3, name="pool1")(x)
    x = layers.Conv2D(256, 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(3, strides=3, name="pool2")(x)
    x = layers.Conv2D(384, 3, padding="same", activation="relu", name="conv3")(x)
    x = layers.BatchNormalization(name="bn3")(x)
    x = layers.MaxPooling2D(3, strides=3, padding="same", name="pool3")(x)
    x = layers.Dropout(conv_dropout, name="drop3")(x)
    x = layers.Conv2D(512, 3, padding="same", activation="relu", name="conv4")(x)
    x = layers.BatchNormalization(name="bn4")(x)
    x = layers.MaxPooling2D(3, strides=3, padding="same", name="pool4")(x)
    x = layers.Dropout(conv_dropout, name="drop4")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense_units, activation="relu", name="fc1")(x)
    x = layers.Dropout(dense_dropout, name="drop_fc1")(x)
    x = layers.Dense(dense_units, activation="relu", name="fc2")(x)
    x = layers.Dropout(dense_dropout, name="drop_fc2")(x)
    x = layers.Dense(num_classes, name="logits")(x)
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)
