"""Regenerate docs/evaluation_protocol.md's figures: split by subject vs split by image.

Writes one subject-structured synthetic dataset (each subject has its own stain tint,
brightness and magnification; each subject is all-ALL or all-HEM, as in C-NMC), then runs
the same training protocol twice on it, changing only ``split``:

* ``split="subject"``: no subject in two of hold-out, training and validation (ours);
* ``split="image"``: cells split one by one (the paper's protocol): the same subjects are
  on both sides.

Run from the repository root (about 2 x the time of ``allnet demo``)::

    python docs/scripts/evaluation_protocol.py [--out /tmp/allnet-protocol]

It prints a Markdown table and writes ``docs/images/evaluation_protocol.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
IMAGES = HERE.parent / "images"


def run(out: Path, subjects: int, cells: int, seed: int, epochs: int | None,
        style_strength: float) -> dict:
    from allnet_core.datasets import discover
    from allnet_core.synthetic import write_cnmc_dataset
    from allnet_core.training import TrainConfig, cross_validate

    data = out / "data"
    if not (data / "C-NMC_Leukemia").is_dir():
        write_cnmc_dataset(data, subjects=subjects, cells_per_subject=cells, seed=seed, size=96,
                           style_strength=style_strength)
    table = discover(data)
    results = {}
    for split in ("subject", "image"):
        config = TrainConfig.from_profile("quick", split=split, seed=seed, epochs=epochs)
        t = time.perf_counter()
        res = cross_validate(table, config, out / f"run_{split}", resume=True)
        summary = json.loads((res.run_dir / "report.json").read_text())
        results[split] = {
            "folds_mean": {k: v["mean"] for k, v in summary["folds_mean_std"].items()},
            "folds_std": {k: v["std"] for k, v in summary["folds_mean_std"].items()},
            "holdout": {k: summary["holdout"][k] for k in ("accuracy", "f1", "mcc", "roc_auc")},
            "subjects_in_several_splits": summary["subjects_in_several_splits"],
            "minutes": (time.perf_counter() - t) / 60,
        }
        print(f"{split}: {results[split]}", file=sys.stderr)
    return {"n_images": len(table), "n_subjects": int(table["subject"].nunique()),
            "style_strength": style_strength, "results": results}


def plot(summary: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 3.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (name, where) in zip(axes, (("cross-validation (mean over folds)", "folds_mean"),
                                        ("hold-out (best fold's model)", "holdout")),
                                 strict=True):
        metrics = ("accuracy", "f1", "mcc")
        for i, split in enumerate(("image", "subject")):
            r = summary["results"][split]
            values = [100 * (r[where][m] if r[where][m] is not None else 0) for m in metrics]
            xs = [j + (i - 0.5) * 0.38 for j in range(len(metrics))]
            bars = ax.bar(xs, values, width=0.36,
                          label="split by image (paper)" if split == "image"
                          else "split by subject (honest)",
                          color="#d95f02" if split == "image" else "#1b9e77")
            ax.bar_label(bars, fmt="%.0f", fontsize=7)
        ax.set_xticks(range(len(metrics)), ["accuracy", "F1", "MCC"])
        ax.set_title(name, fontsize=10)
        ax.set_ylim(0, 105)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("%")
    axes[0].legend(fontsize=8, loc="lower left")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def markdown(summary: dict) -> str:
    lines = ["| protocol | CV accuracy | CV F1 | hold-out accuracy | hold-out F1 | "
             "hold-out MCC | subjects in 2+ splits |", "|---|---|---|---|---|---|---|"]
    for split, label in (("image", "split by image (paper)"), ("subject", "split by subject")):
        r = summary["results"][split]
        fm, fs, h = r["folds_mean"], r["folds_std"], r["holdout"]

        def pct(v):
            return "n/a" if v is None else f"{100 * v:.1f}"

        lines.append(f"| {label} | {pct(fm['accuracy'])} ± {pct(fs['accuracy'])} | "
                     f"{pct(fm['f1'])} ± {pct(fs['f1'])} | {pct(h['accuracy'])} | "
                     f"{pct(h['f1'])} | {pct(h['mcc'])} | {r['subjects_in_several_splits']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/allnet-protocol"))
    parser.add_argument("--subjects", type=int, default=20)
    parser.add_argument("--cells-per-subject", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--style-strength", type=float, default=2.5,
                        help="spread of the per-subject stain/brightness/magnification shift "
                        "(1 = the demo's default, 2.5 = strong batch effects between patients)")
    args = parser.parse_args(argv)
    summary = run(args.out, args.subjects, args.cells_per_subject, args.seed, args.epochs,
                  args.style_strength)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    plot(summary, IMAGES / "evaluation_protocol.png")
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
