"""What runs on the Dask workers: the model loaded once per worker, and the batch task.

Imported by the workers (and lazily by :mod:`allnet_core.inference.distributed`), never by
``import allnet_core``: it imports ``distributed`` at the top.
"""

from __future__ import annotations

from distributed import WorkerPlugin, get_worker

__all__ = ["ClassifierPlugin", "classify_batch"]


class ClassifierPlugin(WorkerPlugin):
    """Loads the :class:`~allnet_core.inference.Classifier` once when a worker starts.

    The scheduler keeps the plugin and sets it up on every worker that joins later,
    including one that a nanny starts in place of a worker that died. Registering it again
    under the same name (a second run with the same model) loads nothing again.

    Attributes
    ----------
    classifier : Classifier
        The loaded model (after :meth:`setup`).
    loads : int
        How many times this worker loaded the model (1).
    """

    idempotent = True

    def __init__(self, model_path: str, class_names=None, positive_class=None):
        self.model_path = str(model_path)
        self.class_names = class_names
        self.positive_class = positive_class
        self.classifier = None
        self.loads = 0

    def setup(self, worker) -> None:
        from allnet_core.inference.classifier import Classifier

        kwargs = {"class_names": self.class_names}
        if self.positive_class is not None:
            kwargs["positive_class"] = self.positive_class
        self.classifier = Classifier.load(self.model_path, **kwargs)
        self.loads += 1


def classify_batch(plugin_name: str, items: list, options: dict):
    """A Dask task: classify a batch of images with the worker's resident model.

    Returns ``(cells, images)`` as :func:`allnet_core.inference._run.run_items`.
    """
    from allnet_core.inference._run import run_items

    plugin = get_worker().plugins[plugin_name]
    return run_items(plugin.classifier, items, **options)
