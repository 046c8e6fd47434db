"""``rfmweb evaluate-inr``: Neumours INRs against the CNN baseline, raw and denoised, per split.

For every split (a folder of labelled BraTS-style cases) and every model (one or more INR
checkpoints, optionally the CNN of :mod:`rfmweb.inr.cnn`), each case is segmented, optionally
denoised (:func:`~rfmweb.inr.denoise.denoise_labels`) and scored with
:class:`~rfmweb.metrics.segmentation.BratsMetric`: mean Dice of the classes NCR / ED / ET and the
regions WT / TC, mean HD95 of WT / TC / ET (BraTS empty-mask conventions), the parameter count and
the median seconds per case of inference (normalisation included, loading excluded) and of
denoising. Mean WT Dice is also given per band of the ground truth's whole-tumour volume
(:data:`SIZE_BANDS_ML`): small tumours are the hardest, so data sets with another mix of sizes
compare band by band.

The paper's goal is checked on every INR-denoised row against the CNN of the same split:
``WT Dice ratio = INR-denoised WT Dice / best CNN WT Dice (raw or denoised) >= 0.92``, at least 10x
fewer parameters, and faster (INR inference + denoising < CNN inference).

Outputs (all written atomically): ``table.md`` (the table, the goal check and notes),
``table.csv`` (one row per split x model x variant, :data:`TABLE_COLUMNS`) and ``per_case.csv``
(:data:`CASE_COLUMNS`).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..io.atomic import atomic_write
from ..io.atomic import write_csv as atomic_write_csv
from ..metrics.segmentation import BratsMetric
from ..models.inr import count_parameters

log = logging.getLogger(__name__)

SCORES = ("dice_NCR", "dice_ED", "dice_ET", "dice_WT", "dice_TC", "hd95_WT", "hd95_TC", "hd95_ET")
#: BraTS 2023's lesion-wise scores (:func:`rfmweb.metrics.segmentation.lesion_scores`).
LESION_SCORES = ("lesion_dice_WT", "lesion_dice_TC", "lesion_dice_ET", "lesion_hd95_WT", "lesion_hd95_TC",
                 "lesion_hd95_ET")
#: Standard deviations over the cases of a split.
SPREADS = tuple(f"std_{k}" for k in ("dice_NCR", "dice_ED", "dice_ET", "dice_WT", "dice_TC", "lesion_dice_WT",
                                    "lesion_dice_TC", "lesion_dice_ET"))
TABLE_COLUMNS = ("split", "model", "kind", "variant", "cases", "parameters", *SCORES, *LESION_SCORES, *SPREADS,
                 "infer_s", "infer_cpu_s", "denoise_s", "wt_ratio_vs_cnn", "param_ratio_vs_cnn", "speedup_vs_cnn",
                 "goal_met")
CASE_COLUMNS = ("split", "model", "kind", "variant", "case", "wt_ml", *SCORES, *LESION_SCORES, "infer_s",
                "infer_cpu_s", "denoise_s")
#: Bounds (mL) of the report's whole-tumour volume bands (ground truth): < 10, 10-50, >= 50 mL.
SIZE_BANDS_ML = (10.0, 50.0)
#: The paper's goal: INR-denoised WT Dice at least this fraction of the CNN's ...
GOAL_WT_RATIO = 0.92
#: ... with at least this many times fewer parameters (and faster inference).
GOAL_PARAM_RATIO = 10.0


@dataclass
class Entry:
    """A model under evaluation: ``kind`` is ``"inr"`` or ``"cnn"``; ``source`` its file."""

    name: str
    kind: str
    model: torch.nn.Module
    source: str

    @property
    def parameters(self) -> int:
        return count_parameters(self.model)


def parse_named(values: list[str], what: str) -> dict[str, str]:
    """``["name=path", ...]`` -> ``{name: path}``; InputError on a malformed or repeated name.

    Example:
        >>> parse_named(["val=/data/val"], "--split")
        {'val': '/data/val'}
    """
    out: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise InputError(f"{what} expects NAME=PATH, got {value!r}")
        if name in out:
            raise InputError(f"{what} name {name!r} given twice")
        out[name] = path
    return out


def load_entries(inrs: dict[str, str | None], cnn: str | None) -> list[Entry]:
    """Load every model first (so that a bad path fails before any long computation).

    ``inrs`` maps a name to an INR checkpoint (``None``: the shipped weights); ``cnn`` is a CNN
    model file from ``rfmweb train-cnn`` or ``None``.
    """
    from .checkpoint import default_checkpoint, load_model
    from .cnn import load_cnn

    entries = [Entry(name, "inr", load_model(path), str(path or default_checkpoint())) for name, path in inrs.items()]
    if cnn is not None:
        entries.append(Entry("cnn", "cnn", load_cnn(cnn), str(cnn)))
    return entries


def _segment(entry: Entry, volume, precision: str) -> np.ndarray:
    from .cnn import segment_cnn
    from .infer import segment_volume

    if entry.kind == "cnn":
        return segment_cnn(entry.model, volume, precision=precision)
    return segment_volume(entry.model, volume, precision=precision)


def evaluate_models(splits: dict[str, str | os.PathLike], entries: list[Entry], *, denoise_cnn: bool = True,
                    no_fill: frozenset[str] = frozenset(), precision: str = "auto", progress: bool = True
                    ) -> tuple[list[dict], list[dict]]:
    """Score every split x model x variant (denoising without hole filling on the splits in ``no_fill``).

    Returns:
        ``(table_rows, case_rows)`` as dicts with :data:`TABLE_COLUMNS` / :data:`CASE_COLUMNS` keys
        (numbers unrounded; the goal columns are filled by :func:`add_goal_columns`).
    """
    from tqdm.auto import tqdm

    from ..data.cohort import find_cases
    from ..io.brats import load_brats_case
    from .denoise import denoise_labels

    folders = {name: find_cases(path) for name, path in splits.items()}     # fail early on a bad split
    # every case read once before any is scored: a bad file in the last split is named in seconds,
    # not after hours of scoring the others (the volumes are read again, split by split, to score)
    for cases in folders.values():
        for f in tqdm(cases, desc="check cases", unit="case", disable=not progress):
            load_brats_case(f, require_seg=True)
    table, per_case = [], []
    total = sum(len(f) for f in folders.values()) * len(entries)
    bar = tqdm(total=total, desc="evaluate-inr", unit="case", disable=not progress)
    for split, cases in folders.items():
        volumes = [load_brats_case(f, require_seg=True) for f in cases]
        for entry in entries:
            variants = ("raw", "denoised") if entry.kind == "inr" or denoise_cnn else ("raw",)
            metrics = {v: BratsMetric(with_hd95=True, lesion_wise=True) for v in variants}
            times: dict[str, list[float]] = {"infer": [], "infer_cpu": [], "denoise": []}
            for vol in volumes:
                wt_ml = float(np.count_nonzero(vol.labels) * np.prod(vol.spacing) / 1000.0)
                c0, t0 = time.process_time(), time.perf_counter()
                raw = _segment(entry, vol, precision)
                c1, t1 = time.process_time(), time.perf_counter()
                preds = {"raw": raw}
                if "denoised" in variants:
                    preds["denoised"] = denoise_labels(raw, spacing=vol.spacing, fill_holes=split not in no_fill)
                t2 = time.perf_counter()
                times["infer"].append(t1 - t0)
                times["infer_cpu"].append(c1 - c0)
                times["denoise"].append(t2 - t1)
                for variant, pred in preds.items():
                    scores = metrics[variant].update(pred, vol.labels, vol.spacing, case=vol.name)
                    per_case.append({"split": split, "model": entry.name, "kind": entry.kind, "variant": variant,
                                     "case": vol.name, "wt_ml": wt_ml, **scores, "infer_s": t1 - t0,
                                     "infer_cpu_s": c1 - c0,
                                     "denoise_s": t2 - t1 if variant == "denoised" else 0.0})
                bar.update(1)
            for variant, metric in metrics.items():
                table.append({"split": split, "model": entry.name, "kind": entry.kind, "variant": variant,
                              "cases": len(metric), "parameters": entry.parameters, **metric.aggregate(),
                              **{k: v for k, v in metric.spread().items() if k in SPREADS},
                              "infer_s": float(np.median(times["infer"])),
                              "infer_cpu_s": float(np.median(times["infer_cpu"])),
                              "denoise_s": float(np.median(times["denoise"])) if variant == "denoised" else 0.0})
            log.info("%s / %s: WT Dice raw %.3f%s", split, entry.name, metrics["raw"].aggregate()["dice_WT"],
                     f", denoised {metrics['denoised'].aggregate()['dice_WT']:.3f}" if "denoised" in metrics else "")
    bar.close()
    add_goal_columns(table)
    return table, per_case


def add_goal_columns(table: list[dict]) -> None:
    """Fill ``wt_ratio_vs_cnn``, ``param_ratio_vs_cnn``, ``speedup_vs_cnn`` and ``goal_met`` of the
    INR rows in place (empty without a CNN in the split). The reference is the CNN's best WT Dice
    (raw or denoised) in the same split and the CNN's raw inference time; an INR row's time is its
    inference plus, for a denoised row, its denoising."""
    for row in table:
        row.update(wt_ratio_vs_cnn="", param_ratio_vs_cnn="", speedup_vs_cnn="", goal_met="")
        cnn = [r for r in table if r["split"] == row["split"] and r["kind"] == "cnn"]
        if row["kind"] != "inr" or not cnn:
            continue
        best = max(r["dice_WT"] for r in cnn)
        row["wt_ratio_vs_cnn"] = row["dice_WT"] / best if best > 0 else float("nan")
        row["param_ratio_vs_cnn"] = cnn[0]["parameters"] / row["parameters"]
        row["speedup_vs_cnn"] = cnn[0]["infer_s"] / max(row["infer_s"] + row["denoise_s"], 1e-9)
        if row["variant"] == "denoised":
            ok = (row["wt_ratio_vs_cnn"] >= GOAL_WT_RATIO and row["param_ratio_vs_cnn"] >= GOAL_PARAM_RATIO
                  and row["speedup_vs_cnn"] > 1.0)
            row["goal_met"] = "yes" if ok else "no"


def size_bands(per_case: list[dict]) -> list[dict]:
    """Mean WT Dice per whole-tumour volume band, one row per split x model x variant.

    Returns:
        dicts with ``split``, ``model``, ``variant`` and ``bands``: a list of ``(label, cases, mean WT
        Dice)`` per band of :data:`SIZE_BANDS_ML` (mean NaN for an empty band); a case without
        tumour falls in the first band.
    """
    edges = (0.0, *SIZE_BANDS_ML, float("inf"))
    labels = [f"< {edges[1]:g} mL", *(f"{a:g}-{b:g} mL" for a, b in zip(edges[1:-2], edges[2:-1])),
              f">= {edges[-2]:g} mL"]
    groups: dict[tuple, list[dict]] = {}
    for r in per_case:
        groups.setdefault((r["split"], r["model"], r["variant"]), []).append(r)
    rows = []
    for (split, model, variant), cases in groups.items():
        bands = []
        for label, lo, hi in zip(labels, edges[:-1], edges[1:]):
            dice = [r["dice_WT"] for r in cases if lo <= r["wt_ml"] < hi]
            bands.append((label, len(dice), float(np.mean(dice)) if dice else float("nan")))
        rows.append({"split": split, "model": model, "variant": variant, "bands": bands})
    return rows


def _fmt(value, digits: int = 6) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def write_csv(path: str | os.PathLike, rows: list[dict], columns: tuple[str, ...]) -> Path:
    """Rows as CSV (floats with 6 decimals), atomically."""
    return atomic_write_csv(path, [{k: _fmt(r.get(k, "")) for k in columns} for r in rows], columns)


def markdown_table(table: list[dict], entries: list[Entry], notes: list[str], per_case: list[dict]) -> str:
    """The Markdown report: the score table, the goal check per split, WT Dice by tumour volume, then
    ``notes``."""
    head = ("split", "model", "variant", "cases", "params", "Dice NCR", "Dice ED", "Dice ET", "Dice WT", "Dice TC",
            "HD95 WT", "HD95 TC", "HD95 ET", "lesion Dice WT", "lesion Dice TC", "lesion Dice ET",
            "lesion HD95 WT", "infer s", "infer CPU s", "denoise s")
    lines = ["# Neumours INR vs CNN baseline", "",
             "Mean over the cases of each split (+- the standard deviation over the cases); HD95 in mm; lesion-wise "
             "scores as BraTS 2023 ranks them (every lesion counts alike, every false-positive lesion as 0); "
             "seconds are medians per case (wall clock, and the CPU time of this process: the machine may be "
             "shared).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def mean_std(r: dict, key: str) -> str:
        return f"{r[key]:.3f} +- {r['std_' + key]:.3f}" if "std_" + key in r else f"{r[key]:.3f}"

    for r in table:
        cells = [r["split"], r["model"], r["variant"], str(r["cases"]), f"{r['parameters']:,}",
                 *(mean_std(r, k) for k in SCORES[:5]), *(f"{r[k]:.2f}" for k in SCORES[5:]),
                 *(mean_std(r, k) for k in LESION_SCORES[:3]), f"{r['lesion_hd95_WT']:.2f}",
                 f"{r['infer_s']:.2f}", f"{r['infer_cpu_s']:.2f}",
                 f"{r['denoise_s']:.3f}" if r["variant"] == "denoised" else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    goal = [r for r in table if r["goal_met"]]
    if goal:
        lines += ["", f"## The paper's goal: denoised INR WT Dice >= {GOAL_WT_RATIO:.0%} of the CNN's, "
                  f">= {GOAL_PARAM_RATIO:.0f}x fewer parameters, faster", "",
                  "| split | INR | WT Dice ratio | parameter ratio | speed-up (infer + denoise) | goal met |",
                  "|---|---|---|---|---|---|"]
        for r in goal:
            lines.append(f"| {r['split']} | {r['model']} | {r['wt_ratio_vs_cnn']:.3f} | "
                         f"{r['param_ratio_vs_cnn']:.1f}x | {r['speedup_vs_cnn']:.1f}x | {r['goal_met']} |")
    bands = size_bands(per_case)
    if bands:
        names = [label for label, _, _ in bands[0]["bands"]]
        lines += ["", "## WT Dice by whole-tumour volume (ground truth; cases in brackets)", "",
                  "| split | model | variant | " + " | ".join(names) + " |", "|" + "---|" * (3 + len(names))]
        for r in bands:
            cells = [f"{m:.3f} ({n})" if n else "- (0)" for _, n, m in r["bands"]]
            lines.append(f"| {r['split']} | {r['model']} | {r['variant']} | " + " | ".join(cells) + " |")
    lines += ["", "## Models", ""]
    lines += [f"- `{e.name}` ({e.kind}, {e.parameters:,} parameters): `{e.source}`" for e in entries]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def default_notes(entries: list[Entry], splits: dict[str, str | os.PathLike], precision: str = "auto",
                  no_fill: frozenset[str] = frozenset()) -> list[str]:
    """Provenance notes for the report: threads, data, and how the CNN was trained."""
    from .infer import resolve_precision

    notes = [f"CPU, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}; inference in "
             f"{resolve_precision(precision, torch.device('cpu'))} (--precision {precision}); INR coarse-to-fine where "
             "the brain is large (rfmweb.inr.infer.segment_volume); CNN by sliding windows "
             "of its training patch at half-patch steps with Gaussian weighting, no test-time mirroring.",
             "Splits: " + ", ".join(f"{k} = `{v}`" for k, v in splits.items()) + ".",
             "Denoising: connected components + hole filling (rfmweb.inr.denoise.denoise_labels, defaults)"
             + (f"; without hole filling on {', '.join(sorted(no_fill))} (a resection cavity enclosed by residual "
                "tumour is not tumour)." if no_fill else ", the same on every split."),
             "WT Dice ratio: INR-denoised WT Dice / the CNN's best WT Dice (raw or denoised) on the same split; "
             "speed-up: CNN inference seconds / (INR inference + denoising seconds)."]
    for e in entries:
        if e.kind == "cnn":
            info = getattr(e.model, "info", {})
            after = f" (after {info['steps_before']} steps of the weights it started from)" \
                if info.get("steps_before") else ""
            notes.append(f"The CNN checkpoint is not shipped with the package (`{e.source}`). It had a CPU-limited "
                         f"budget: {info.get('steps', '?')} steps{after} in {info.get('elapsed_s', '?')} s on "
                         f"{info.get('threads', '?')} CPU thread(s) ({info.get('train_cases', '?')} training cases), "
                         "versus nnU-Net's 1000 epochs x 250 steps on a GPU, so it is a weak baseline, "
                         "not nnU-Net's accuracy.")
    return notes


def evaluate_inr(splits: dict[str, str | os.PathLike], out: str | os.PathLike, *,
                 inrs: dict[str, str | None] | None = None, cnn: str | None = None, denoise_cnn: bool = True,
                 no_fill: frozenset[str] | set[str] = frozenset(),
                 precision: str = "auto", progress: bool = True) -> list[dict]:
    """Evaluate, then write ``out/table.md``, ``out/table.csv`` and ``out/per_case.csv``.

    Args:
        splits: split name -> folder of labelled cases.
        out: output folder.
        inrs: name -> INR checkpoint (default ``{"shipped": None}``, the shipped weights).
        cnn: CNN model file (optional).
        denoise_cnn: also score the CNN denoised.
        no_fill: splits whose denoising skips hole filling (post-operative scans).

    Returns:
        The table rows.

    Raises:
        InputError: a missing or invalid split folder or checkpoint (naming it), or no split.
    """
    if not splits:
        raise InputError("give at least one --split NAME=DIR")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError("--out must be a folder", out)
    no_fill = frozenset(no_fill)
    if no_fill - set(splits):
        raise InputError(f"--no-fill-holes names no --split: {sorted(no_fill - set(splits))}")
    entries = load_entries(inrs or {"shipped": None}, cnn)
    table, per_case = evaluate_models(splits, entries, denoise_cnn=denoise_cnn, no_fill=no_fill,
                                      precision=precision, progress=progress)
    text = markdown_table(table, entries, default_notes(entries, splits, precision, no_fill), per_case)
    write_csv(out / "table.csv", table, TABLE_COLUMNS)
    write_csv(out / "per_case.csv", per_case, CASE_COLUMNS)
    atomic_write(out / "table.md", lambda tmp: Path(tmp).write_text(text))
    log.info("wrote %s", out / "table.md")
    return table
