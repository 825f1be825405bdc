"""Do the tests bite? Break core behaviours one at a time and see whether the tests notice.

Each :class:`Mutation` names one behaviour, the file that implements it, an exact snippet
of that file and what to put in its place, and the tests that should catch the change. For
every mutation the script copies the repository's ``src/``, ``tests/``, ``benchmarks/`` and
``pyproject.toml`` into a fresh temporary folder (the working tree is never touched),
applies the one change there and runs the named tests with ``PYTHONPATH`` set to the
copy's ``src``. A mutation is *caught* when those tests fail, *missed* when they pass.

Before any run, every snippet is checked against the source: a snippet that no longer
occurs exactly once stops the script with an error naming the mutation (update it with
the code). A baseline run of all the named tests on the unchanged copy comes first, so
that "caught" never means "was failing anyway".

Usage::

    ALLNET_DATA_DIR=/path/to/data python benchmarks/mutations.py            # all
    python benchmarks/mutations.py --list
    python benchmarks/mutations.py --only tta-four-rotations-twice resume-feed-epoch-zero

It is a benchmark-style script, run by hand and quoted in closing notes, not part of the
CI time budget (about 5 minutes on 2 CPU cores). Exit status 0 when every mutation
was caught, 1 otherwise, 2 when a snippet no longer matches.

To add a mutation, append a :class:`Mutation` to :data:`MUTATIONS` (or to the section of
its subject); keep its ``tests`` narrow (a file, a ``::test`` node, or ``-k``) so that the
whole run stays short.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPIED = ("src", "tests", "benchmarks", "pyproject.toml")
PYTEST = [sys.executable, "-m", "pytest", "-x", "-q", "--no-header", "-p", "no:cacheprovider",
          "-p", "no:pytest-qt", "-p", "no:napari", "-p", "no:napari-plugin-engine",
          "-p", "no:npe2", "-p", "no:xvfb", "-W", "ignore::pytest.PytestUnknownMarkWarning"]


@dataclass(frozen=True)
class Mutation:
    """One change of one behaviour.

    Attributes
    ----------
    name : str
        Short id, used by ``--only``.
    behaviour : str
        What the change breaks, in words.
    file : str
        Path under the repository root.
    original, replacement : str
        ``original`` must occur exactly once in ``file``.
    tests : tuple of str
        pytest arguments relative to the root (files, ``file::test`` nodes, ``-k``, ``-m``).
    also : tuple of (str, str)
        Further ``(original, replacement)`` edits of the same file, for a behaviour that
        two redundant pieces of code keep (each original must occur exactly once).
    """

    name: str
    behaviour: str
    file: str
    original: str
    replacement: str
    tests: tuple[str, ...]
    also: tuple[tuple[str, str], ...] = ()

    @property
    def edits(self) -> tuple[tuple[str, str], ...]:
        return ((self.original, self.replacement), *self.also)


T = "tests/core/"
LOOP = "src/allnet_core/training/loop.py"
METRICS = "src/allnet_core/metrics.py"

# ----------------------------------------------------------------------- splits, balancing
SPLITS = [
    Mutation("holdout-ignores-subjects", "the hold-out split groups images, not subjects",
             "src/allnet_core/training/splits.py",
             "rest, hold = next(sgkf.split(idx, y, groups))",
             "rest, hold = next(sgkf.split(idx, y, idx))",
             (T + "test_training.py::test_subject_splits_are_disjoint_and_stratified",)),
    Mutation("folds-ignore-subjects", "the k folds group images, not subjects",
             "src/allnet_core/training/splits.py",
             "return list(cv.split(idx, y, groups))",
             "return list(cv.split(idx, y, idx))",
             (T + "test_training.py::test_subject_splits_are_disjoint_and_stratified",)),
    Mutation("balance-uses-validation", "balancing and augmentation draw on the fold's "
             "validation images too", LOOP,
             'train = _role_table(splits, f"fold_{fold}_train")',
             'train = pd.concat([_role_table(splits, f"fold_{fold}_train"), '
             '_role_table(splits, f"fold_{fold}_val")], ignore_index=True)',
             (T + "test_training.py::test_splits_csv_and_plan",)),
]

# ----------------------------------------------------------------------- files, loading
FILES = [
    Mutation("write-not-atomic", "atomic_write writes straight to the real name",
             "src/allnet_core/io.py",
             "        yield tmp\n        with open(tmp, \"rb+\") as fh:\n"
             "            os.fsync(fh.fileno())\n",
             "        tmp.unlink()\n        yield path\n        return\n",
             (T + "test_io.py", "-k", "atomic")),
    Mutation("lambda-precheck-removed", "the loader's own Lambda check before Keras "
             "deserialises", "src/allnet_core/model/loading.py",
             "    if unsafe:\n        raise ModelError(",
             "    if False:\n        raise ModelError(",
             (T + "test_inference.py", "-k", "lambda")),
    Mutation("safe-mode-off", "Keras deserialises in unsafe mode",
             "src/allnet_core/model/loading.py",
             "keras.saving.load_model(model_path, safe_mode=True, compile=compile)",
             "keras.saving.load_model(model_path, safe_mode=False, compile=compile)",
             (T + "test_inference.py", "-k", "safe_mode")),
]

# ----------------------------------------------------------------------- model
MODEL = [
    Mutation("conv2-filters", "Table 2's conv2 has 256 filters",
             "src/allnet_core/model/architecture.py",
             'layers.Conv2D(256, 3, padding="same", activation="relu", name="conv2")',
             'layers.Conv2D(192, 3, padding="same", activation="relu", name="conv2")',
             (T + "test_model.py", "-k", "table2 or totals")),
]

# ----------------------------------------------------------------------- metrics, calls
METRIC_MUTATIONS = [
    Mutation("threshold-strict-metrics", "a probability on the threshold is called HEM "
             "(p > t)", METRICS,
             "pred = (p >= threshold).astype(np.int64)",
             "pred = (p > threshold).astype(np.int64)",
             (T + "test_metrics.py",)),
    Mutation("threshold-strict-table", "the prediction table calls p == t HEM", METRICS,
             '"class": np.where(p >= threshold, POSITIVE_CLASS, NEGATIVE_CLASS)',
             '"class": np.where(p > threshold, POSITIVE_CLASS, NEGATIVE_CLASS)',
             (T + "test_metrics.py",)),
    Mutation("threshold-strict-classifier", "the classifier calls p == t HEM",
             "src/allnet_core/inference/classifier.py",
             "probs[:, self.positive_index] >= threshold",
             "probs[:, self.positive_index] > threshold",
             (T + "test_inference.py::test_a_probability_on_the_threshold_is_called_all",)),
    Mutation("auc-of-calls", "ROC AUC computed from the 0/1 calls, not the probabilities",
             METRICS,
             "auc = float(roc_auc_score(y, p)) if both else math.nan",
             "auc = float(roc_auc_score(y, pred)) if both else math.nan",
             (T + "test_metrics.py",)),
    Mutation("mcc-unsigned", "MCC loses its sign", METRICS,
             "mcc = float(matthews_corrcoef(y, pred)) if both else math.nan",
             "mcc = abs(float(matthews_corrcoef(y, pred))) if both else math.nan",
             (T + "test_metrics.py",)),
    Mutation("confusion-fp-fn-swapped", "false positives and false negatives swapped",
             METRICS,
             "tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, pred, labels=[0, 1])",
             "tn, fn, fp, tp = (int(v) for v in confusion_matrix(y, pred, labels=[0, 1])",
             (T + "test_metrics.py",)),
]

# ----------------------------------------------------------------------- test-time augmentation
TTA = [
    Mutation("tta-four-rotations-twice", "TTA uses the 4 rotations twice, no flips",
             "src/allnet_core/inference/tta.py",
             "TTA_TRANSFORMS = tuple((k, flip) for flip in (False, True) for k in range(4))",
             "TTA_TRANSFORMS = tuple((k, False) for flip in (False, True) for k in range(4))",
             (T + "test_inference.py", "-k", "tta_transforms_are")),
    Mutation("tta-flip-ignored", "apply_transform ignores the flip",
             "src/allnet_core/inference/tta.py",
             "out = batch[:, :, ::-1] if flip else batch",
             "out = batch",
             (T + "test_inference.py", "-k", "tta_transforms_are")),
]

# ----------------------------------------------------------------------- feed
FEED = [
    Mutation("feed-same-order-every-epoch", "the cached feed shuffles every epoch alike",
             "src/allnet_core/feed/_batching.py",
             "return np.random.default_rng([seed, epoch]).permutation(n)",
             "return np.random.default_rng([seed, 0]).permutation(n)",
             (T + "test_feed_cache.py", "-k", "epoch_order")),
]

# ----------------------------------------------------------------------- resume, best fold
TRAINING = [
    Mutation("resume-ignores-checkpoint", "a resumed fold starts a fresh model", LOOP,
             'if state["checkpoint"]:\n            model = load_model(',
             'if False:\n            model = load_model(',
             (T + "test_training.py::test_resumed_fold_matches_an_uninterrupted_one",)),
    # The feed's epoch on resume is kept twice: the feed is made at the resumed epoch, and
    # the callback sets it from fit's epoch number. Either edit alone changes nothing
    # (an equivalent mutant); the behaviour breaks only with both.
    Mutation("resume-feed-epoch-zero", "the feed restarts at epoch 0 on resume", LOOP,
             "seed=config.seed * 1000 + fold, epoch=start)",
             "seed=config.seed * 1000 + fold, epoch=0)",
             (T + "test_training.py::test_resumed_fold_matches_an_uninterrupted_one",),
             also=(("callbacks=[feed.epoch_callback(), callback, *schedule]",
                    "callbacks=[callback, *schedule]"),)),
    Mutation("best-fold-is-last", "the last fold is scored on the hold-out", LOOP,
             "return int(np.argmax([k[0] for k in keys])) + 1",
             "return len(keys)",
             (T + "test_training.py", "-k", "best_fold")),
    Mutation("best-fold-by-loss", "the best fold is chosen by validation loss", LOOP,
             "return int(np.argmax([k[0] for k in keys])) + 1",
             "return int(np.argmax([k[1] for k in keys])) + 1",
             (T + "test_training.py", "-k", "best_fold")),
]

# ----------------------------------------------------------------------- segmentation
SEGMENTATION = [
    Mutation("touching-cells-not-split", "two touching white cells stay one instance",
             "src/allnet_core/segmentation/_split.py",
             "    if p.split_depth <= 0:\n        return coarse, coarse_nuc",
             "    if True:\n        return coarse, coarse_nuc",
             (T + "test_segmentation.py", "-k", "touching")),
    Mutation("components-merged", "the Otsu and paper methods give all their components "
             "one label",
             "src/allnet_core/segmentation/labels.py",
             "lab = label(fill_holes(mask), connectivity=2).astype(np.int32)",
             "lab = (fill_holes(mask) > 0).astype(np.int32)",
             (T + "test_segmentation.py", "-k", "otsu_and_paper")),
]

# ----------------------------------------------------------------------- worker protocol
WORKER = [
    Mutation("protocol-accepts-non-objects", "a JSON line that is not an object is taken "
             "as a request", "src/allnet_core/worker/protocol.py",
             "    if not isinstance(request, dict):",
             "    if False:",
             (T + "test_worker.py", "-k", "bad_request")),
    Mutation("protocol-accepts-bad-utf8", "bytes that are not UTF-8 are decoded loosely",
             "src/allnet_core/worker/protocol.py",
             'line = bytes(line).decode("utf-8")',
             'line = bytes(line).decode("utf-8", errors="replace")',
             (T + "test_bad_inputs.py", "-k", "invalid_utf8")),
]

# ----------------------------------------------------------------------- issue 11: trust
TRUST_TESTS = T + "test_trust.py"
CALLS = "src/allnet_core/inference/calls.py"
CALIBRATION = [
    Mutation("calibration-not-applied", "the one predictor ignores the card's calibration",
             "src/allnet_core/model/predict.py",
             "return np.clip(self.calibration.apply(p_raw), 0.0, 1.0)",
             "return np.clip(p_raw, 0.0, 1.0)",
             (TRUST_TESTS, "-k", "overconfident")),
    Mutation("temperature-inverted", "the logit is multiplied by the temperature",
             "src/allnet_core/model/calibration.py",
             "return _sigmoid(p_to_logit(p) / self.temperature)",
             "return _sigmoid(p_to_logit(p) * self.temperature)",
             (TRUST_TESTS, "-k", "temperature_scaling or overconfident")),
    Mutation("uncertain-band-closed", "P(ALL) on the band's edges is called uncertain", CALLS,
             "calls[(p > low) & (p < high)] = UNCERTAIN",
             "calls[(p >= low) & (p <= high)] = UNCERTAIN",
             (TRUST_TESTS, "-k", "uncertain_band or call_rule")),
    Mutation("out-of-scope-never-called", "the out-of-scope score never makes a call", CALLS,
             "calls[np.nan_to_num(score, nan=0.0) > 1.0] = OUT_OF_SCOPE",
             "pass",
             (TRUST_TESTS, "-k", "call_rule")),
    Mutation("scope-scale-ignored", "distances are not scaled by the validation percentile",
             "src/allnet_core/model/scope.py",
             "scale=float(np.percentile(distances, percentile))",
             "scale=1.0",
             (TRUST_TESTS, "-k", "half_a_percent or own_validation or new_subjects")),
    Mutation("all-fraction-counts-unsure", "the ALL fraction divides by every cell, uncertain "
             "and out-of-scope ones too", CALLS,
             "confident = n_pos + n_neg",
             "confident = int(c.size)",
             (TRUST_TESTS, "-k", "all_fraction")),
]

MUTATIONS: list[Mutation] = (SPLITS + FILES + MODEL + METRIC_MUTATIONS + TTA + FEED + TRAINING
                             + SEGMENTATION + WORKER + CALIBRATION)


def check_snippets(mutations: list[Mutation]) -> list[str]:
    """Problems with the snippets: each must occur exactly once in its file."""
    problems = []
    names = [m.name for m in mutations]
    problems += [f"duplicate name {n!r}" for n in sorted({n for n in names
                                                          if names.count(n) > 1})]
    for m in mutations:
        path = ROOT / m.file
        if not path.is_file():
            problems.append(f"{m.name}: {m.file} does not exist")
            continue
        text = path.read_text(encoding="utf-8")
        for original, replacement in m.edits:
            count = text.count(original)
            if count != 1:
                problems.append(f"{m.name}: the original snippet occurs {count} times in "
                                f"{m.file} (expected once): {original!r}")
            if original == replacement:
                problems.append(f"{m.name}: the replacement changes nothing")
    return problems


def _copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)


def _run_tests(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[str, str]:
    """``(outcome, detail)``: ``"pass"``, ``"fail"``, ``"error"`` or ``"timeout"``."""
    env = {**os.environ, "PYTHONPATH": str(copy / "src"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        proc = subprocess.run(PYTEST + list(tests), cwd=copy, env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", f"no result within {timeout:.0f} s"
    lines = (proc.stdout + proc.stderr).splitlines()
    failed = [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))]
    if proc.returncode == 0:
        return "pass", lines[-1] if lines else ""
    if proc.returncode == 1:
        return "fail", failed[0] if failed else lines[-1]
    if proc.returncode == 5:
        return "error", "no tests collected (check the mutation's test selection)"
    return "error", f"pytest exit {proc.returncode}: " + (failed[0] if failed else
                                                          " | ".join(lines[-3:]))


def run_mutation(m: Mutation, timeout: float) -> tuple[str, str, float]:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="allnet_mutation_") as tmp:
        copy = Path(tmp)
        _copy_tree(copy)
        target = copy / m.file
        text = target.read_text(encoding="utf-8")
        for original, replacement in m.edits:
            text = text.replace(original, replacement, 1)
        target.write_text(text, encoding="utf-8")
        outcome, detail = _run_tests(copy, m.tests, timeout)
    return outcome, detail, time.perf_counter() - t0


def baseline(mutations: list[Mutation], timeout: float) -> tuple[str, str]:
    """Run each distinct test selection once on the unchanged copy; all must pass."""
    selections = list(dict.fromkeys(m.tests for m in mutations))
    with tempfile.TemporaryDirectory(prefix="allnet_mutation_base_") as tmp:
        copy = Path(tmp)
        _copy_tree(copy)
        for tests in selections:
            outcome, detail = _run_tests(copy, tests, timeout)
            if outcome != "pass":
                return outcome, f"{' '.join(tests)}: {detail}"
    return "pass", f"{len(selections)} test selections pass unchanged"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run these mutations only")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip the run of the unchanged tests")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per test run")
    args = ap.parse_args(argv)
    problems = check_snippets(MUTATIONS)
    if problems:
        print("mutations.py: snippets out of date; fix MUTATIONS before running:",
              file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 2
    chosen = MUTATIONS
    if args.only:
        unknown = sorted(set(args.only) - {m.name for m in MUTATIONS})
        if unknown:
            print(f"mutations.py: unknown mutation(s): {', '.join(unknown)}", file=sys.stderr)
            return 2
        chosen = [m for m in MUTATIONS if m.name in args.only]
    if args.list:
        for m in chosen:
            print(f"{m.name:<30} {m.file}: {m.behaviour}  [{' '.join(m.tests)}]")
        return 0
    print(f"{len(chosen)} mutations; load average {os.getloadavg()[0]:.1f}", flush=True)
    if not args.no_baseline:
        outcome, detail = baseline(chosen, args.timeout)
        print(f"baseline: {outcome}: {detail}", flush=True)
        if outcome != "pass":
            return 2
    print("| mutation | behaviour | file | result | seconds | first failure |")
    print("|---|---|---|---|---|---|")
    caught = 0
    started = time.perf_counter()
    for m in chosen:
        outcome, detail, seconds = run_mutation(m, args.timeout)
        ok = outcome != "pass"
        caught += ok
        result = "caught" if ok else "**missed**"
        if outcome in ("error", "timeout"):
            result += f" ({outcome})"
        short = detail.replace("|", "/")[:110]
        print(f"| {m.name} | {m.behaviour} | {m.file.removeprefix('src/')} | {result} | "
              f"{seconds:.0f} | {short} |", flush=True)
    total = len(chosen)
    print(f"\ncaught {caught} of {total} mutations: {100 * caught / total:.0f} % "
          f"({(time.perf_counter() - started) / 60:.1f} min, load average "
          f"{os.getloadavg()[0]:.1f})")
    return 0 if caught == total else 1


if __name__ == "__main__":
    sys.exit(main())
