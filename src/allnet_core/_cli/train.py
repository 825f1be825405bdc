"""``allnet train``, ``allnet evaluate`` and ``allnet demo``.

Only argparse and pathlib at import time; Keras loads when a command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from pathlib import Path

# TrainConfig fields settable from the command line: flag -> (field, type, help).
_CONFIG_FLAGS = (
    ("--epochs", "epochs", int, "epochs per fold (paper: 65)"),
    ("--batch-size", "batch_size", int, "global batch size (paper: 16)"),
    ("--lr", "lr", float, "Adam learning rate (paper: 1e-5)"),
    ("--folds", "folds", int, "cross-validation folds (paper: 5)"),
    ("--holdout", "holdout", float, "hold-out fraction (paper: 0.2)"),
    ("--input-size", "input_size", int, "model input side in pixels (paper: 450)"),
    ("--per-class", "per_class", int, "training images per class after balancing (paper: 6000)"),
    ("--split", "split", str, "subject (default, honest) or image (the paper's protocol)"),
    ("--seed", "seed", int, "random seed (default 0)"),
    ("--precision", "precision", str,
     "float32 (default), mixed (bfloat16 where the device supports it: CPUs, GPUs from "
     "Ampere on; else float16), mixed_float16 or mixed_bfloat16"),
    ("--dense-units", "dense_units", int, "width of the two dense layers (paper: 4096)"),
    ("--workers", "workers", int, "image-reading threads of the training feed"),
    ("--checkpoint-every", "checkpoint_every", int, "save a resumable checkpoint every N epochs"),
    ("--feed", "feed", str,
     "cached (default: each fold's augmented images built once on disk, fast) or stream "
     "(read and augment every batch from the image files, no extra disk)"),
    ("--cache-dir", "cache_dir", str,
     "folder for the image caches, kept and reused across runs (default: in the run "
     "folder, deleted when each fold is done)"),
    ("--monitor", "monitor", str,
     "val_f1 (paper) or val_loss: the validation score that picks each fold's best epoch "
     "and that early stopping and the plateau schedule watch"),
    ("--lr-schedule", "lr_schedule", str,
     "constant (paper) or plateau: halve the learning rate after --lr-patience epochs "
     "without improvement"),
    ("--lr-patience", "lr_patience", int, "epochs without improvement before halving (2)"),
    ("--early-stopping", "early_stopping", int,
     "stop a fold after N epochs without improvement, keeping its best epoch (0: off, paper)"),
    ("--stain-jitter", "stain_jitter", float,
     "scale each training image's R, G, B by random factors in [1-s, 1+s] every epoch "
     "(beyond the paper; 0: off)"),
)


def _profile_lines() -> str:
    """One line per preset of :data:`~allnet_core.training.PROFILES` (what it is for, input,
    epochs, expected time), then its values, from the table itself (imported only when
    ``train --help`` is shown)."""
    from allnet_core.training.config import PROFILES, TrainConfig
    from allnet_core.training.estimate import profile_line

    lines = ["profiles (--profile NAME; a flag given overrides the profile's value):"]
    for name in PROFILES:
        c = TrainConfig.from_profile(name)
        lines.append(f"  {profile_line(name)}")
        lines.append(f"    input {c.input_size} px, {c.epochs} epochs x {c.folds} "
                     f"folds, {c.per_class} images per class, dense {c.dense_units} (dropout "
                     f"{c.dense_dropout:g}), lr "
                     f"{c.lr:g}, batch {c.batch_size}, best epoch by {c.monitor}, lr schedule "
                     f"{c.lr_schedule}, early stopping {c.early_stopping or 'off'}, stain "
                     f"jitter {c.stain_jitter:g}, epoch flips {'on' if c.epoch_flips else 'off'}")
    return "\n".join(lines) + "\n\n"


def register(subparsers) -> None:
    """Add the ``train``, ``evaluate`` and ``demo`` commands."""
    from allnet_core._cli._help import CLASSES_HELP, HelpFormatter, examples

    class TrainHelp(HelpFormatter):
        expansions = {"<profiles>\n": _profile_lines}

    p = subparsers.add_parser(
        "train", help="train ALLNet with hold-out + k-fold cross-validation",
        description="Train ALLNet on a labelled dataset folder (C-NMC layout or class "
        "folders): a subject-grouped hold-out, k folds on the rest, a run folder with models, "
        "metrics and a Markdown report. Defaults are the paper's protocol.",
        formatter_class=TrainHelp, epilog="<profiles>\n" + examples(
            "allnet train data/C-NMC_Leukemia --out runs/paper       # the paper's protocol",
            "allnet train data/ --out runs/quick --profile quick      # minutes on a CPU",
            "allnet train cells/ --out runs/cpu --profile cpu         # real cells, CPU, < 1 h",
            "allnet train data/ --out runs/quick --resume             # continue after Ctrl-C",
            "allnet train cells/ --out runs/r1 --classes blast_cells=ALL,donor=HEM"))
    p.add_argument("data", type=Path, help="dataset folder")
    p.add_argument("--out", type=Path, required=True, help="run folder to create (or resume)")
    # Values are checked by TrainConfig (allnet_core.training.config), the one home of the
    # profiles, splits and precisions: --help stays free of the training imports.
    p.add_argument("--profile", default=None,
                   help="preset of defaults: paper (default), quick or cpu; see profiles below")
    for flag, dest, typ, text in _CONFIG_FLAGS:
        p.add_argument(flag, dest=dest, type=typ, default=None, help=text)
    p.add_argument("--classes", default=None, metavar="MAP", help=CLASSES_HELP)
    p.add_argument("--epoch-flips", dest="epoch_flips", default=None,
                   action=argparse.BooleanOptionalAction,
                   help="flip and turn every training image at random, anew every epoch "
                        "(on in the cpu profile)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last saved epoch")
    p.set_defaults(func=run_train)

    e = subparsers.add_parser(
        "evaluate", help="score a trained model on a labelled dataset",
        description="Score a model file (.keras) or a run folder's best model on a dataset; "
        "writes metrics.json, predictions.csv, per_subject.csv, confusion.png and report.md. "
        "A dataset of one class is scored too (healthy cells alone measure specificity); "
        "metrics that need both classes are then shown as n/a, with the reason.",
        formatter_class=HelpFormatter, epilog=examples(
            "allnet evaluate runs/paper test_data/ --out eval/",
            "allnet evaluate runs/paper/fold_2/model.keras donors/ --out eval_hem/"
            "   # healthy only",
            "allnet evaluate runs/paper other_set/ --out eval/ --classes blast=ALL,normal=HEM"))
    e.add_argument("model", type=Path, help="a .keras model or a training run folder")
    e.add_argument("data", type=Path, help="dataset folder")
    e.add_argument("--out", type=Path, required=True, help="output folder")
    e.add_argument("--batch-size", type=int, default=32, help="images per batch (32)")
    e.add_argument("--threshold", type=float, default=0.5, help="P(ALL) cut-off (0.5)")
    e.add_argument("--classes", default=None, metavar="MAP", help=CLASSES_HELP)
    e.set_defaults(func=run_evaluate)

    d = subparsers.add_parser(
        "demo", help="synthesize data, train (quick profile), evaluate: the whole job in minutes",
        description="Write a subject-structured synthetic C-NMC-like dataset, train ALLNet with "
        "the quick profile (or --profile cpu; subject-grouped hold-out and folds), evaluate the "
        "best model on synthetic cells of new subjects, and print where the report is.",
        formatter_class=HelpFormatter, epilog=examples(
            "allnet demo                                   # writes ./allnet-demo",
            "allnet demo --out /tmp/demo --epochs 3        # a faster, rougher run",
            "allnet demo --profile cpu                     # 128 px, ./allnet-demo-cpu",
            "allnet demo --profile cpu --input-size 64 --out allnet-demo-cpu64"))
    d.add_argument("--out", type=Path, default=None,
                   help="output folder (default ./allnet-demo, ./allnet-demo-cpu with --profile "
                        "cpu)")
    d.add_argument("--profile", choices=("quick", "cpu"), default="quick",
                   help="training profile: quick (64 px, about 4 min on 2 CPU cores; the "
                        "default) or cpu (128 px, which keeps the cells' fine chromatin; about "
                        "17 min)")
    d.add_argument("--subjects", type=int, default=32, help="synthetic subjects (32)")
    d.add_argument("--cells-per-subject", type=int, default=25, help="cells per subject (25)")
    d.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    d.add_argument("--per-class", type=int, default=None,
                   help="override the profile's images per class")
    d.add_argument("--input-size", type=int, default=None,
                   help="override the profile's input size (64 px quick, 128 px cpu)")
    d.add_argument("--seed", type=int, default=0, help="random seed (0)")
    d.set_defaults(func=run_demo)


# --------------------------------------------------------------------------- progress


class _TrainProgress:
    """Turn training events into a progress bar over all epochs of all folds."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = None
        self.epochs = 1
        self.folds = 1

    def __call__(self, event: dict) -> None:
        from allnet_core._cli._progress import ProgressBar

        kind = event["kind"]
        if kind == "start":
            self.epochs, self.folds = event["epochs"], event["folds"]
            what = "resuming" if event.get("resumed") else "training"
            self._line(f"{what}: {event['n_images']} images, hold-out {event['n_holdout']}, "
                       f"{self.folds} folds x {self.epochs} epochs, split by {event['split']}")
        elif kind == "device":
            self._line(f"device: {event['device']} ({event['name']}), Keras backend "
                       f"{event['backend']}, precision {event['precision']}")
        elif kind == "cache":
            self._cache(event)
        elif kind == "fold_skipped":
            self._line(f"fold {event['fold']}/{event['folds']}: already complete, kept")
        elif kind == "fold_start":
            if self.bar is None:
                self.bar = ProgressBar(self.folds * self.epochs, "epochs", stream=self.stream)
            start = event["start_epoch"]
            note = f" (resumed at epoch {start})" if start > 1 else ""
            self._line(f"fold {event['fold']}/{event['folds']}: {event['n_train']} training "
                       f"images balanced to {event['n_train_balanced']}, "
                       f"{event['n_val']} validation{note}")
        elif kind == "batch_end" and self.bar is not None and self.tty:
            done = (event["fold"] - 1) * self.epochs + event["epoch"] - 1
            self.bar.update(done, f"fold {event['fold']} epoch {event['epoch']} batch "
                            f"{event['batch']}/{event['batches']} loss {event.get('loss', 0):.3f}"
                            f" acc {event.get('accuracy', 0):.3f}")
        elif kind == "epoch_end" and self.bar is not None:
            done = (event["fold"] - 1) * self.epochs + event["epoch"]
            self.bar.update(done, f"fold {event['fold']} epoch {event['epoch']} "
                            f"loss {event['loss']:.3f} acc {event['accuracy']:.3f} "
                            f"val_acc {event['val_accuracy']:.3f} val_f1 {event['val_f1']:.3f}",
                            force=True)
        elif kind == "fold_end":
            self._line(f"fold {event['fold']}: best epoch {event['best_epoch']}, validation "
                       f"accuracy {100 * event['accuracy']:.2f} %, F1 {100 * event['f1']:.2f} %")
        elif kind == "holdout_end":
            self._line(f"hold-out (fold {event['fold']} model): accuracy "
                       f"{100 * event['accuracy']:.2f} %, F1 {100 * event['f1']:.2f} %")

    def _cache(self, event: dict) -> None:
        what = f"fold {event.get('fold', '?')}/{event.get('folds', '?')}: {event['part']} images"
        done, total = event["done"], event["total"]
        if event["reused"]:
            self._line(f"{what}: cache of {total} reused")
        elif done == total:
            self._line(f"{what}: cached {total} in {event['seconds']:.1f} s")
        elif self.tty:
            self.stream.write(f"\r\033[K{what}: caching {done}/{total}")
            self.stream.flush()
        elif done == 0:
            self._line(f"{what}: caching {total} ...")

    def _line(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextlib.contextmanager
def _cancel_on_sigint():
    """First Ctrl-C asks training to stop at the next batch; a second one interrupts."""
    from allnet_core.progress import CancelToken

    token = CancelToken()
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        if token.is_set():
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        token.cancel()
        print("\nallnet: stopping at the next batch (Ctrl-C again to abort)", file=sys.stderr)

    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread
        pass
    try:
        yield token
    finally:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGINT, previous)


# --------------------------------------------------------------------------- commands


def _config_from_args(args):
    from allnet_core.training import config_from_request

    fields = {dest: getattr(args, dest) for _, dest, _, _ in _CONFIG_FLAGS}
    fields["epoch_flips"] = args.epoch_flips
    return config_from_request(fields, args.profile, args.out if args.resume else None)


def _train(data, config, out: Path, resume: bool, verify: bool = True):
    from allnet_core.errors import CancelledError
    from allnet_core.training import cross_validate

    bar = _TrainProgress()
    try:
        with _cancel_on_sigint() as token:
            return cross_validate(data, config, out, progress=bar, cancel=token, resume=resume,
                                  verify=verify)
    except CancelledError as exc:
        print(f"allnet: {exc}", file=sys.stderr)
        return None
    finally:
        bar.close()


def _dataset(args):
    """The dataset argument of training: the folder, or with ``--classes`` its table read
    with that class mapping (decoded once, like a folder)."""
    if not args.classes:
        return args.data, True
    from allnet_core.datasets import discover

    return discover(args.data, classes=args.classes), False


def run_train(args) -> int:
    """Run ``allnet train``."""
    config = _config_from_args(args)
    data, verify = _dataset(args)
    result = _train(data, config, args.out, args.resume, verify=verify)
    if result is None:
        return 130
    _print_result(result)
    print(f"best model: {result.best_model}")
    return 0


def _print_result(result, extra: str = "") -> None:
    """The hold-out line and the report's path of a finished run."""
    from allnet_core.model.card import assess, read_card

    h = result.holdout
    print(f"hold-out accuracy {100 * h['accuracy']:.2f} %, F1 {100 * h['f1']:.2f} % "
          f"(fold {result.best_fold} model){extra}")
    verdict = assess(read_card(result.best_model, verify=False))
    print(f"model card: {verdict.headline}")
    for warning in verdict.warnings:
        print(f"WARNING: {warning}")
    print(f"report: {result.report}")


def run_evaluate(args) -> int:
    """Run ``allnet evaluate``."""
    from allnet_core.errors import ConfigError
    from allnet_core.evaluation import evaluate
    from allnet_core.inference.calls import counts_text
    from allnet_core.io import check_output_dir
    from allnet_core.report import class_counts, metrics_line, undefined_note
    from allnet_core.report.trust import floor_note

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be a positive integer, got {args.batch_size}")
    if not 0.0 <= args.threshold <= 1.0:  # NaN fails too
        raise ConfigError(f"--threshold must be in [0, 1], got {args.threshold}")
    check_output_dir(args.out)
    result = evaluate(args.model, args.data, args.out, batch_size=args.batch_size,
                      threshold=args.threshold, classes=args.classes)
    m = result.metrics
    print(f"{m['n']} images ({class_counts(m)}): {metrics_line(m)}")
    note = undefined_note(m)
    if note:
        print(note)
    cal = result.calibration
    print(f"expected calibration error: {cal['ece_before']:.3f} raw, {cal['ece_after']:.3f} "
          + ("calibrated by the model card" if cal["calibrated"] else
             "(no usable model card: not calibrated)") + floor_note(cal))
    print(f"calls as allnet classify makes them: {counts_text(result.calls)}")
    print(f"report: {result.report}")
    return 0


def run_demo(args) -> int:
    """Run ``allnet demo``."""
    from allnet_core.evaluation import evaluate
    from allnet_core.synthetic import write_cnmc_dataset
    from allnet_core.training import config_from_request

    t0 = time.perf_counter()
    out = args.out or Path("allnet-demo" if args.profile == "quick" else
                           f"allnet-demo-{args.profile}")
    config = config_from_request(
        {"seed": args.seed, "epochs": args.epochs, "per_class": args.per_class,
         "input_size": args.input_size}, args.profile)
    size = 160  # drawn at 160 px, read at the profile's input size
    data, test = out / "data", out / "test_data"
    for folder, seed, n in ((data, args.seed, args.subjects),
                            (test, args.seed + 10_000, max(4, args.subjects // 2))):
        if not (folder / "C-NMC_Leukemia").is_dir():
            print(f"writing synthetic cells: {n} subjects x {args.cells_per_subject} -> {folder}",
                  file=sys.stderr)
            write_cnmc_dataset(folder, subjects=n, cells_per_subject=args.cells_per_subject,
                               seed=seed, size=size)
    result = _train(data, config, out / "run", resume=True)
    if result is None:
        return 130
    print("evaluating the best model on synthetic cells of new subjects ...", file=sys.stderr)
    ev = evaluate(result.run_dir, test, out / "evaluation")
    minutes = (time.perf_counter() - t0) / 60
    _print_result(result, f"; new subjects: accuracy {100 * ev.metrics['accuracy']:.2f} %; "
                          f"{minutes:.1f} min")
    print(f"evaluation on new subjects: {ev.report}")
    return 0
