"""Accuracy of WBC segmentation on real annotations (issue 3).

Scores each method on the same data and prints a table:

* BCCD (``$ALLNET_DATA_DIR/bccd``, 292 fields): objects from ``label_cells`` matched to
  the Pascal-VOC WBC boxes (IoU >= 0.5 or centroid inside the box, each box once):
  recall, precision, false objects per field, objects found in fields without a WBC.
* Zheng et al. 2018 set 1 (``$ALLNET_DATA_DIR/zheng/dataset1``, 300 cells): mean Dice of
  the whole-cell mask and of the nucleus mask.

The ratio printed at the end is the default method's figure over the plain-Otsu
reference's, measured in the same run.

Usage::

    ALLNET_DATA_DIR=/path/to/data python benchmarks/segmentation_accuracy.py [--step N]
        [--methods auto,otsu,paper] [--markdown]

``--step N`` scores every N-th image only (a quick look); the reported figures use all.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bccd  # noqa: E402

from allnet_core.segmentation import label_cells, segment_wbc  # noqa: E402


def score_bccd(root, method: str = "auto", step: int = 1, **kwargs) -> dict:
    """Object-level scores of ``label_cells(method=...)`` on BCCD."""
    tp = fp = fn = 0
    empty_fields = empty_objects = 0
    fields = _bccd.bccd_fields(root)[::step]
    for field in fields:
        rgb = _bccd.load_rgb(field.image)
        labels = label_cells(rgb, method=method, **kwargs)
        t, f, n = _bccd.match_objects(labels, field.boxes)
        tp, fp, fn = tp + t, fp + f, fn + n
        if len(field.boxes) == 0:
            empty_fields += 1
            empty_objects += int(labels.max())
    return dict(
        fields=len(fields),
        boxes=tp + fn,
        recall=tp / max(tp + fn, 1),
        precision=tp / max(tp + fp, 1),
        false_per_field=fp / max(len(fields), 1),
        empty_fields=empty_fields,
        objects_in_empty=empty_objects,
    )


def score_zheng(root, method: str = "auto", step: int = 1, **kwargs) -> dict:
    """Mean Dice of the whole-cell and nucleus masks on Zheng set 1."""
    cell_d, nuc_d = [], []
    cells = _bccd.zheng_cells(root, 1)[::step]
    for path in cells:
        rgb = _bccd.load_rgb(path)
        cell_gt, nuc_gt = _bccd.zheng_truth(path)
        if method == "auto":
            cell, nuc = label_cells(rgb, return_nuclei=True, **kwargs)
            cell, nuc = cell > 0, nuc > 0
        else:
            cell = nuc = segment_wbc(rgb, method=method)
        cell_d.append(_bccd.dice(cell, cell_gt))
        nuc_d.append(_bccd.dice(nuc, nuc_gt))
    cell_d, nuc_d = np.array(cell_d), np.array(nuc_d)
    return dict(
        cells=len(cells),
        cell_dice=float(cell_d.mean()),
        nucleus_dice=float(nuc_d.mean()),
        cell_dice_p10=float(np.percentile(cell_d, 10)),
        nucleus_dice_p10=float(np.percentile(nuc_d, 10)),
    )


def table(results: dict[str, tuple[dict, dict]], markdown: bool = False) -> str:
    head = (
        "method",
        "BCCD recall",
        "BCCD precision",
        "false obj/field",
        "obj in no-WBC fields",
        "Zheng cell Dice",
        "Zheng nucleus Dice",
    )
    rows = []
    for m, (b, z) in results.items():
        rows.append(
            (
                m,
                f"{b['recall']:.3f}",
                f"{b['precision']:.3f}",
                f"{b['false_per_field']:.2f}",
                f"{b['objects_in_empty']}/{b['empty_fields']}",
                f"{z['cell_dice']:.3f}",
                f"{z['nucleus_dice']:.3f}",
            )
        )
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    return "\n".join([fmt.format(*head)] + [fmt.format(*r) for r in rows])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--step", type=int, default=1, help="score every N-th image only")
    ap.add_argument("--methods", default="auto,otsu,paper")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args(argv)
    root = _bccd.data_root()
    if root is None:
        print("ALLNET_DATA_DIR is not set or missing; nothing to score", file=sys.stderr)
        return 1
    results = {}
    for m in args.methods.split(","):
        t0 = time.perf_counter()
        b = score_bccd(root, m, args.step)
        z = score_zheng(root, m, args.step)
        results[m] = (b, z)
        print(
            f"{m}: BCCD {b['fields']} fields / {b['boxes']} WBC boxes, Zheng {z['cells']} cells "
            f"({time.perf_counter() - t0:.1f} s); Zheng 10th percentile Dice cell "
            f"{z['cell_dice_p10']:.3f} nucleus {z['nucleus_dice_p10']:.3f}",
            flush=True,
        )
    print()
    print(table(results, markdown=args.markdown))
    if "auto" in results and "otsu" in results:
        a, o = results["auto"], results["otsu"]
        print()
        print(
            "ratio auto/otsu: BCCD precision "
            f"{a[0]['precision'] / max(o[0]['precision'], 1e-9):.2f}x, "
            f"Zheng cell Dice {a[1]['cell_dice'] / max(o[1]['cell_dice'], 1e-9):.2f}x, "
            f"Zheng nucleus Dice {a[1]['nucleus_dice'] / max(o[1]['nucleus_dice'], 1e-9):.2f}x"
        )
    print()
    print("goals (auto): BCCD recall >= 0.98, precision >= 0.90; Zheng cell Dice >= 0.88, "
          "nucleus Dice >= 0.92")
    return 0


if __name__ == "__main__":
    sys.exit(main())
