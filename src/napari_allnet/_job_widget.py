"""The base of the widgets that run one background job at a time.

"Segment cells", "Classify cells" and "Train ALLNet" all start a napari ``thread_worker``
from a button, disable their buttons while it runs, may show a napari progress bar and a
Cancel button, and report a failure in the widget's status and as an error notification.
:class:`JobWidget` does that once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from magicgui.widgets import Container, Label, PushButton

from allnet_core.progress import CancelToken

if TYPE_CHECKING:
    import napari

__all__ = ["JobWidget", "full_width", "wrap_text"]


def wrap_text(*labels: Label) -> None:
    """Let long texts of these labels wrap instead of widening the dock."""
    for label in labels:
        label.native.setWordWrap(True)


def full_width(*widgets) -> None:
    """Let these widgets (already in a labelled container) span the whole row.

    magicgui gives every widget of a labelled container a label column; a status text
    with an empty label would otherwise be squeezed into the value column.
    """
    for widget in widgets:
        labeled = widget._labeled_widget()
        if labeled is not None:
            labeled._label_widget.visible = False


class JobWidget(Container):
    """A widget that runs one background job at a time.

    Subclasses set the class attributes, create their controls, register the buttons
    with :meth:`_controls`, place :attr:`status` among their widgets and start jobs with
    :meth:`_launch`.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer the widget works on.

    Attributes
    ----------
    status : magicgui.widgets.Label
        One line on what the widget does or did (wraps).
    cancel_button : magicgui.widgets.PushButton or None
        The Cancel button, if the widget has one (see :meth:`_controls`).
    """

    #: The task's name, e.g. ``"Classify cells"``; the progress bar's description.
    task = ""
    #: Start of the error notification when a job fails: ``f"{failed_prefix}: {exc}"``.
    failed_prefix = ""
    #: Start of the status after a failure; the reason follows: ``f"{failed_status}: {why}"``.
    failed_status = "Failed"
    #: Start of the status when a job cannot start; the reason follows.
    refused_status = "Cannot start"
    #: Status while a cancelled job finishes its current step.
    cancelling_status = "Cancelling..."

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        self._viewer = viewer
        self._worker = None
        self._pbar = None
        self._cancel = CancelToken()
        self._run_buttons: tuple[PushButton, ...] = ()
        self.cancel_button: PushButton | None = None
        self.status = Label(value="")
        wrap_text(self.status)

    def _controls(self, *run_buttons: PushButton, cancel: PushButton | None = None) -> None:
        """Register the buttons disabled while a job runs, and the Cancel button."""
        self._run_buttons = run_buttons
        self.cancel_button = cancel
        if cancel is not None:
            cancel.enabled = False
            cancel.changed.connect(self.cancel)

    @property
    def busy(self) -> bool:
        """True while a job runs."""
        return self._worker is not None

    # ------------------------------------------------------------------ running
    def _launch(self, func: Callable, *args: Any, returned: Callable,
                yielded: Callable | None = None, progress: int | None = None,
                cancellable: bool = False, **kwargs: Any):
        """Run ``func(*args, **kwargs)`` in a napari ``thread_worker``; return the worker.

        Parameters
        ----------
        func : callable
            The job: a function, or a generator whose yielded values go to ``yielded``.
        returned : callable
            Called in the GUI thread with the job's return value.
        yielded : callable, optional
            Called in the GUI thread with every value the job yields.
        progress : int, optional
            Show a napari progress bar with this total (0: no total yet).
        cancellable : bool
            Enable Cancel and pass the job a fresh
            :class:`~allnet_core.progress.CancelToken` as ``cancel=``.
        """
        from napari.qt.threading import create_worker
        from napari.utils import progress as napari_progress

        self._set_running(True, cancellable=cancellable)
        if progress is not None:
            self._pbar = napari_progress(total=progress, desc=self.task)
        if cancellable:
            self._cancel = CancelToken()
            kwargs["cancel"] = self._cancel
        connect = {"returned": returned, "errored": self._failed, "finished": self._done}
        if yielded is not None:
            connect["yielded"] = yielded
        self._worker = create_worker(func, *args, _connect=connect, **kwargs)
        return self._worker

    def cancel(self) -> None:
        """Ask the running job to stop at its next check."""
        if self.busy:
            self.status.value = self.cancelling_status
            if self.cancel_button is not None:
                self.cancel_button.enabled = False
            self._cancel.cancel()

    def _set_running(self, running: bool, cancellable: bool = True) -> None:
        for button in self._run_buttons:
            button.enabled = not running
        if self.cancel_button is not None:
            self.cancel_button.enabled = running and cancellable

    def _progress_to(self, n: int, total: int | None = None) -> None:
        """Move the progress bar to ``n`` (of ``total``, if given, else of its total)."""
        if self._pbar is None:
            return
        if total:
            self._pbar.total = int(total)
        target = min(int(n), self._pbar.total or int(n))
        if target != self._pbar.n:
            # napari's progress emits the value event (which moves the activity dock's
            # bar) from update(), not from setting n
            self._pbar.update(target - self._pbar.n)

    # ------------------------------------------------------------------ outcomes
    def _wording(self, text: str) -> str:
        """A message in the widget's own words (subclasses translate command-line flags)."""
        return text

    def _reason(self, problem: Exception | str) -> str:
        """``problem`` as text for the status line: the widget's words, no task prefix."""
        text = self._wording(str(problem))
        prefix = f"{self.task}: "
        return text[len(prefix):] if text.startswith(prefix) else text

    def _refuse(self, problem: Exception | str) -> None:
        """Do not start: say why in the status and as a warning notification."""
        from napari.utils.notifications import show_warning

        reason = self._reason(problem)
        self.status.value = f"{self.refused_status}: {reason}"
        show_warning(f"{self.task}: {reason}")

    def _failed(self, exc: Exception) -> None:
        from napari.utils.notifications import show_error

        reason = self._reason(exc)
        first = reason.splitlines()[0] if reason else type(exc).__name__
        self.status.value = f"{self.failed_status}: {first}"  # a log tail goes to the toast
        show_error(f"{self.failed_prefix or self.task}: {reason}")

    def _done(self) -> None:
        self._worker = None
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self._set_running(False)
