"""The paper's table on our data, in one run: ``rfmweb evaluate-renderfm``.

Cases (every one a views folder written by ``rfmweb views``: reference ray-marched ground truth,
``n_views`` views of which ``holdout`` are held out, the same for every method):

- ``phantom-<kind>-<k>``: generated anatomy (:func:`.anatomy.random_anatomy`) with seeds at or above
  2^31, which training never draws (its seeds are below 2^31);
- ``head-ct``: the real head CT of ../shared/data (never trained on), CT-Bone, as the per-scan
  baseline of the issue;
- ``*-unseen-tf``: the head CT and a phantom under :func:`unseen_tf`, a two-band transfer function
  no training sample uses (training draws presets, single ramps and class tables).

Methods (each scored on the held-out views with :func:`rfmweb.splats.fit.evaluate`, the code path of
``fit-6dgs``'s report and of ``evaluate-splats``):

- ``6dgs-random`` / ``6dgs-agp``: ``rfmweb fit-6dgs --init random|agp`` (per-scan optimisation);
- ``renderfm``: one network pass (:func:`.model.predict`; its ``prepare_s`` after one warm-up pass);
- ``renderfm+ft``: ``rfmweb finetune --init`` the prediction, ``finetune_iters`` steps.

On the head CT also the paper's open question, Render-FM with a degraded label map (eroded,
dilated, shifted by 2 voxels, the largest class dropped) and with AGP off; ground truth always
from the true labels. Preparation time is compared on the same device: ``speedup = fit time of
6dgs-agp / prepare_s``. Every finished step leaves its report in the case folder, so a rerun
(e.g. in the next GPU slice) skips it.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..io.atomic import atomic_write

log = logging.getLogger(__name__)

METHODS = ("6dgs-random", "6dgs-agp", "renderfm", "renderfm+ft")
PERTURBATIONS = ("eroded", "dilated", "shifted", "class-dropped")
COLUMNS = ("case", "domain", "tf", "method", "ssim", "psnr", "ms_ssim", "lpips", "prepare_s", "n_splats")
#: Evaluation phantoms use seeds from here on (training seeds are below 2^31).
EVAL_SEED0 = 2 ** 31


@dataclass(frozen=True)
class EvalConfig:
    """Settings of one evaluation run (see the module docstring)."""

    out: str
    checkpoint: str | None = None
    device: str | None = None
    n_views: int = 30
    holdout: int = 10
    size: int = 256
    fit_iters: int | None = None
    fit_size: int | None = None
    finetune_iters: int = 300
    phantoms: int = 2
    head_ct: str | None = None     # a folder with ct.nii.gz and labels.nii.gz (the real unseen test)
    ablations: bool = True
    methods: tuple[str, ...] = METHODS
    only: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        bad = sorted(set(self.methods) - set(METHODS))
        if bad:
            raise InputError(f"unknown methods {bad}; choose from {list(METHODS)}")
        if not 0 < self.holdout < self.n_views or self.phantoms < 0 or self.finetune_iters < 0:
            raise InputError(f"need 0 < --holdout < --n-views, --phantoms >= 0, --finetune-iters >= 0; got "
                             f"{self.holdout}, {self.n_views}, {self.phantoms}, {self.finetune_iters}")
        if not 16 <= self.size <= 4096 or (self.fit_size is not None and not 16 <= self.fit_size <= self.size):
            raise InputError(f"need 16 <= --size <= 4096 and 16 <= --fit-size <= --size, got {self.size}, "
                             f"{self.fit_size}")
        if self.fit_iters is not None and self.fit_iters < 1:
            raise InputError(f"--fit-iters must be >= 1, got {self.fit_iters}")


def unseen_tf():
    """A transfer function of a family training never draws: two bands (skin faint blue, bone gold)."""
    from ..transfer import TransferFunction

    return TransferFunction("unseen-two-band",
                            color=[(-600, 0.2, 0.4, 0.9), (-100, 0.45, 0.65, 1.0), (200, 0.9, 0.6, 0.2),
                                   (1200, 1.0, 0.9, 0.55)],
                            opacity=[(-600, 0.0), (-300, 0.0), (-150, 0.03), (0, 0.0), (250, 0.0), (600, 0.6),
                                     (1500, 0.9)])


def perturb(labels: np.ndarray, how: str) -> np.ndarray:
    """A degraded copy of a label map ``[X, Y, Z]``: ``eroded`` / ``dilated`` by one voxel per class,
    ``shifted`` by 2 voxels along x, or ``class-dropped`` (the largest foreground class set to 0)."""
    lab = labels.copy()
    if how == "eroded":
        for c in np.unique(lab[lab > 0]):
            mask = labels == c
            lab[mask & ~ndimage.binary_erosion(mask)] = 0
    elif how == "dilated":
        grown = ndimage.maximum_filter(labels, size=3)
        lab = np.where(labels == 0, grown, labels)
    elif how == "shifted":
        lab = np.zeros_like(labels)
        lab[2:] = labels[:-2]
    elif how == "class-dropped":
        counts = np.bincount(labels.ravel())
        counts[0] = 0
        lab[labels == int(counts.argmax())] = 0
    else:
        raise InputError(f"unknown perturbation {how!r}; choose from {list(PERTURBATIONS)}")
    return lab


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


class Evaluation:
    """One run: builds the cases, runs the methods, writes ``table.md`` and ``table.csv``.

    ``rfmweb`` runs one ``rfmweb`` command from its argument list (``["views", ...]``) and returns its
    exit status: the views, fits, fine-tuning and scores are those commands' own, so the table's
    numbers are the ones a user gets from them (``rfmweb evaluate-renderfm`` passes the CLI's ``main``).
    """

    def __init__(self, config: EvalConfig, rfmweb: Callable[[list[str]], int]) -> None:
        from ..backend import parse_device
        from .model import load_model

        self.config = config
        self._rfmweb = rfmweb
        self.out = Path(config.out)
        self.device = parse_device(config.device)
        self.model = load_model(config.checkpoint, self.device)
        self.out.mkdir(parents=True, exist_ok=True)       # once the inputs are known good: bad input makes nothing
        self.rows: list[dict] = []

    def _cli(self, argv: list[str]) -> None:
        code = self._rfmweb(argv)
        if code != 0:
            raise InputError(f"`rfmweb {' '.join(argv[:2])} ...` failed with status {code}")

    # -- cases --------------------------------------------------------------------------------
    def cases(self) -> list[dict]:
        from ..io.nifti import save_volume
        from ..transfer import save_paraview_json
        from .anatomy import KINDS, random_anatomy

        cases = []
        tf_path = self.out / "unseen_tf.json"
        save_paraview_json(unseen_tf(), tf_path)
        for k in range(self.config.phantoms):
            kind = KINDS[k % len(KINDS)]
            folder = self.out / f"phantom-{kind}-{k}"
            folder.mkdir(exist_ok=True)
            vol_path, lab_path = folder / "ct.nii.gz", folder / "labels.nii.gz"
            if not vol_path.exists():
                save_volume(random_anatomy(EVAL_SEED0 + k, kind, spacing_mm=2.0), vol_path, lab_path)
            cases.append({"name": folder.name, "domain": "generated (held out)", "volume": vol_path,
                          "labels": lab_path, "tf": ["--preset", "CT-Bone"], "tf_name": "CT-Bone"})
            if k == 0:
                cases.append({**cases[-1], "name": f"{folder.name}-unseen-tf", "domain": "generated + unseen TF",
                              "tf": ["--tf", str(tf_path)], "tf_name": "unseen-two-band"})
        if self.config.head_ct and (Path(self.config.head_ct) / "ct.nii.gz").exists():
            head = Path(self.config.head_ct)
            base = {"volume": head / "ct.nii.gz", "labels": head / "labels.nii.gz"}
            cases.append({**base, "name": "head-ct", "domain": "real CT (unseen)", "tf": ["--preset", "CT-Bone"],
                          "tf_name": "CT-Bone", "ablations": self.config.ablations})
            cases.append({**base, "name": "head-ct-unseen-tf", "domain": "real CT + unseen TF",
                          "tf": ["--tf", str(tf_path)], "tf_name": "unseen-two-band"})
        elif self.config.head_ct:
            raise InputError("--head-ct: no ct.nii.gz in this folder", self.config.head_ct)
        if self.config.only:
            unknown = sorted(set(self.config.only) - {c["name"] for c in cases})
            if unknown:
                raise InputError(f"--only: no case {unknown}; the cases are {[c['name'] for c in cases]}")
            cases = [c for c in cases if c["name"] in self.config.only]
        return cases

    def views(self, case: dict) -> Path:
        c = self.config
        folder = self.out / case["name"] / "views"
        self._cli(["views", str(case["volume"]), "--labels", str(case["labels"]), *case["tf"], "--n", str(c.n_views),
              "--holdout", str(c.holdout), "--size", str(c.size), "--out", str(folder)])
        return folder

    # -- methods ------------------------------------------------------------------------------
    def _common(self, case: dict) -> list[str]:
        c = self.config
        args = ["--labels", str(case["labels"]), "--quiet", "--device", self.device.type]
        if c.fit_size:
            args += ["--size", str(c.fit_size)]
        return args

    def fit(self, case: dict, views: Path, init: str) -> dict:
        folder = self.out / case["name"]
        report = folder / f"6dgs-{init}.json"
        if not report.exists():
            iters = [] if self.config.fit_iters is None else ["--iters", str(self.config.fit_iters)]
            self._cli(["fit-6dgs", str(case["volume"]), "--views", str(views), "--init", init, *iters,
                  "--out", str(folder / f"6dgs-{init}.npz"), "--report", str(report), *self._common(case)])
        r = _read(report)
        return {**r["heldout"], "prepare_s": r["fit_wall_s"], "n_splats": r["n_splats"]}

    def renderfm(self, case: dict, views: Path, name: str, labels: np.ndarray | None = None, agp: bool = True
                 ) -> dict:
        from ..io import open_volume
        from ..splats.viewset import load_views, scene_for_views
        from .model import predict

        folder = self.out / case["name"]
        report, splat_path = folder / f"{name}.json", folder / f"{name}.npz"
        if not report.exists():
            volume = open_volume(str(case["volume"]), str(case["labels"]))
            scene = scene_for_views(load_views(views), volume)
            if labels is not None:
                scene = dataclasses.replace(scene, volume=volume.with_labels(labels))
            model = self.model
            if not agp:
                model.config = dataclasses.replace(model.config, agp=False)
            try:
                predict(model, scene, device=self.device, out_device="cpu")          # warm-up
                pred = predict(model, scene, device=self.device, out_device="cpu")
            finally:
                model.config = dataclasses.replace(model.config, agp=True)
            pred.splats.save(splat_path)
            self._cli(["evaluate-splats", str(splat_path), "--views", str(views), "--device", self.device.type,
                  "--report", str(folder / f"{name}.eval.json")])
            scores = _read(folder / f"{name}.eval.json")
            atomic_write(report, lambda tmp: Path(tmp).write_text(json.dumps(
                {"scores": scores, "timings": pred.timings, "n_splats": len(pred.splats)}, indent=1)))
        r = _read(report)
        s = r["scores"].get("heldout", r["scores"])
        return {k: s.get(k) for k in ("ssim", "psnr", "ms_ssim", "lpips")} | {
            "prepare_s": r["timings"]["prepare_s"], "n_splats": r["n_splats"]}

    def finetune(self, case: dict, views: Path, prep: dict) -> dict:
        folder = self.out / case["name"]
        report = folder / "renderfm+ft.json"
        if not report.exists():
            self._cli(["finetune", str(case["volume"]), "--init", str(folder / "renderfm.npz"), "--views", str(views),
                  "--iters", str(self.config.finetune_iters), "--out", str(folder / "renderfm+ft.npz"),
                  "--report", str(report), *self._common(case)])
        r = _read(report)
        return {**r["heldout"], "prepare_s": prep["prepare_s"] + r["fit_wall_s"], "n_splats": r["n_splats"]}

    # -- the run ------------------------------------------------------------------------------
    def run(self) -> list[dict]:
        from tqdm.auto import tqdm

        from ..io.nifti import read_array

        methods = self.config.methods
        for case in tqdm(self.cases(), desc="evaluate-renderfm", unit="case"):
            t = time.perf_counter()
            views = self.views(case)
            row = {"case": case["name"], "domain": case["domain"], "tf": case["tf_name"]}
            results = {}
            for init in ("random", "agp"):
                if f"6dgs-{init}" in methods:
                    results[f"6dgs-{init}"] = self.fit(case, views, init)
            if "renderfm" in methods or "renderfm+ft" in methods:
                results["renderfm"] = self.renderfm(case, views, "renderfm")
            if "renderfm+ft" in methods:
                results["renderfm+ft"] = self.finetune(case, views, results["renderfm"])
            if case.get("ablations"):
                labels, _ = read_array(case["labels"], labels=True)
                for how in PERTURBATIONS:
                    results[f"renderfm, labels {how}"] = self.renderfm(case, views, f"renderfm-{how}",
                                                                       labels=perturb(labels, how))
                results["renderfm, AGP off"] = self.renderfm(case, views, "renderfm-agp-off", agp=False)
            for method, values in results.items():
                self.rows.append({**row, "method": method, **{k: values.get(k) for k in COLUMNS[4:]}})
            log.info("evaluate-renderfm: %s done in %.0f s", case["name"], time.perf_counter() - t)
            self.write()
        return self.rows

    def write(self) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(self.rows)
        atomic_write(self.out / "table.csv", lambda tmp: Path(tmp).write_text(buf.getvalue()))
        atomic_write(self.out / "table.md", lambda tmp: Path(tmp).write_text(markdown(self.rows, self.device)))


def _f(v, digits: int) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def markdown(rows: list[dict], device) -> str:
    """The table as Markdown, with the speed-up of Render-FM over the per-scan fit per case."""
    lines = [f"Device: {device}. Held-out views; SSIM / PSNR (dB) / MS-SSIM / LPIPS; preparation in seconds.",
             "", "| case | domain | TF | method | SSIM | PSNR | MS-SSIM | LPIPS | prep. s | splats |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['domain']} | {r['tf']} | {r['method']} | {_f(r['ssim'], 4)} | "
                     f"{_f(r['psnr'], 2)} | {_f(r['ms_ssim'], 4)} | {_f(r['lpips'], 4)} | {_f(r['prepare_s'], 3)} | "
                     f"{r['n_splats']} |")
    lines.append("")
    by_case: dict[str, dict] = {}
    for r in rows:
        by_case.setdefault(r["case"], {})[r["method"]] = r
    for case, m in by_case.items():
        if "6dgs-agp" in m and "renderfm" in m and m["renderfm"]["prepare_s"]:
            a, f = m["6dgs-agp"], m["renderfm"]
            lines.append(f"- {case}: Render-FM prepares {a['prepare_s'] / f['prepare_s']:.0f}x faster than the "
                         f"per-scan fit (6DGS + AGP); SSIM {f['ssim'] - a['ssim']:+.4f}, "
                         f"PSNR {f['psnr'] - a['psnr']:+.2f} dB relative to it.")
    return "\n".join(lines) + "\n"
