"""Train a tiny ALLNet on synthetic cells and save it: ``python _make_tiny_model.py OUT``.

Run as a subprocess by the napari tests' fixture: keras must never be imported into the
napari test process (TensorFlow and a Qt OpenGL context crash together on Linux/Mesa).
"""

from __future__ import annotations

import sys


def main(out: str, size: int = 48, epochs: int = 6) -> None:
    import numpy as np

    from allnet_core.backend import get_keras
    from allnet_core.model import CLASS_NAMES, build_allnet
    from allnet_core.synthetic import synth_cells

    keras = get_keras()
    keras.utils.set_random_seed(0)
    images, labels, _ = synth_cells(48, seed=0, size=size)
    y = keras.utils.to_categorical([CLASS_NAMES.index(str(v)) for v in labels], 2)
    model = build_allnet(input_shape=(size, size, 3), dense_units=32)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(images.astype(np.float32), y, epochs=epochs, batch_size=16, verbose=0)
    model.save(out)


if __name__ == "__main__":
    main(sys.argv[1])
