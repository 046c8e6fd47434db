"""A synthetic BraTS-style glioma cohort (train / val / post-operative splits) on disk.

Each case is a tumour painted into the MNI152 2009 brain of nilearn
(:func:`rfmweb.samples.glioma.tissue_maps`), made to vary from case to case as BraTS does:

- tumour geometry (:mod:`rfmweb.data.tumours`): size from a few mm to a lobe, one to three foci,
  solid / ring-enhancing / non-enhancing cores with rims of varying thickness and completeness,
  necrosis from none to most of the core, infiltrative edema with fuzzy borders, sites deep, next
  to the ventricles or at the cortex, and mass effect (a smooth displacement field);
- appearance (:mod:`rfmweb.data.appearance`): per-case contrasts overlapping with normal tissue
  (edema near grey matter on FLAIR, enhancement not always brighter than vessels and choroid
  plexus on T1c), lesion texture, the head outside the brain;
- acquisition (:mod:`rfmweb.data.acquisition`): bias fields, noise 1-8 %, thick axial slices
  (3-6 mm) resampled back to the grid, imperfect skull stripping, scanner gain.

The ``postop`` split models the MU-Glioma-Post domain shift of the Neumours paper: a resection
cavity (label 0) where the main core was, residual edema, patchy thin enhancement or a nodule,
blood products and little necrosis.

Each part draws from its own child of the case's stream: case ``index`` of ``split`` with cohort
``seed`` uses ``numpy.random.SeedSequence([seed, SPLIT_CODES[split], index])``, spawned into
geometry, appearance and acquisition streams, so the same (split, seed, index) always gives the
same case, no two splits (or seeds, or indices) share a stream, and changing one part leaves the
others' draws alone. The manifest entry of a case records what was drawn. The drawn parameters do
not depend on the resolution; shapes made from smooth random fields differ in detail between
resolutions.

Speed (one case in memory, shared 2-core Xeon): median 0.35 s at 2 mm and 1.8 s at 1 mm (up to
2.5 s for the largest tumours), as fast as the easier generator before it; the first case of a
process also loads the template and its distance maps (about 2 s at 2 mm, 6 s at 1 mm).

Layout written by :func:`make_cohort` (read back by :func:`rfmweb.io.load_brats_case`)::

    OUT/
        cohort.json                         # manifest: generator settings and one entry per case
        BraTS-GLI-00000-000/                # train / val  (BraTS-POST-00000-000/ for postop)
            BraTS-GLI-00000-000-t1n.nii.gz  # ... t1c, t2w, t2f, seg
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..io.atomic import atomic_write
from ..io.brats import BRATS_CLASSES, MODALITY_SUFFIXES, is_case_folder, save_brats_case
from ..samples import glioma
from ..volume import Volume
from . import acquisition, appearance, tumours

log = logging.getLogger(__name__)

#: Split name -> the code mixed into each case's random stream (disjoint streams per split).
SPLIT_CODES = {"train": 1, "val": 2, "postop": 3}
#: Split name -> BraTS case-id prefix.
SPLIT_PREFIX = {"train": "BraTS-GLI", "val": "BraTS-GLI", "postop": "BraTS-POST"}
MANIFEST = "cohort.json"
#: Manifest format; /2 is the generator of :mod:`rfmweb.data.tumours` (harder cases than /1).
FORMAT = "rfmweb-cohort/2"
_FILES = tuple(MODALITY_SUFFIXES) + ("seg",)


def case_id(split: str, index: int) -> str:
    """BraTS-style id of case ``index`` of ``split``, e.g. ``BraTS-GLI-00007-000``."""
    _check_split(split)
    return f"{SPLIT_PREFIX[split]}-{index:05d}-000"


def _check_split(split: str) -> None:
    if split not in SPLIT_CODES:
        raise InputError(f"split must be one of {', '.join(SPLIT_CODES)}, got {split!r}")


def case_rng(split: str, seed: int, index: int) -> np.random.Generator:
    """The random stream of one case (disjoint across splits, seeds and indices)."""
    _check_split(split)
    return np.random.default_rng(np.random.SeedSequence([int(seed), SPLIT_CODES[split], int(index)]))


def case_streams(split: str, seed: int, index: int) -> tuple[np.random.Generator, ...]:
    """The geometry, appearance and acquisition streams of one case (children of :func:`case_rng`)."""
    return tuple(case_rng(split, seed, index).spawn(3))


def cohort_case(split: str, seed: int, index: int, resolution_mm: float = 1.0) -> tuple[Volume, dict]:
    """Generate one cohort case in memory.

    Args:
        split: ``"train"``, ``"val"`` or ``"postop"``.
        seed: cohort seed (>= 0).
        index: case index within the split (>= 0).
        resolution_mm: isotropic voxel size (BraTS: 1 mm; 2 mm for quick experiments).

    Returns:
        ``(volume, info)``: the 4-channel MR :class:`Volume` ``[4, X, Y, Z]`` (T1n, T1c, T2w,
        FLAIR; scanner-like units, 0 outside the skull-stripping mask) with BraTS labels, named
        by :func:`case_id`, and a JSON-ready dict describing how it was drawn (the manifest entry).
    """
    geometry, looks, scanner = case_streams(split, seed, index)
    tissue = glioma.tissue_maps(float(resolution_mm))
    lesion = tumours.grow_lesion(tissue, geometry, postop=split == "postop")
    look = appearance.draw_look(looks)
    clean = appearance.synthesize(lesion, look, looks)
    acq = acquisition.draw_acquisition(scanner)
    region = appearance.head_region(tissue.spacing)
    data = np.zeros((len(glioma.CHANNELS),) + tissue.mask.shape, np.float32)
    data[(slice(None),) + region] = acquisition.acquire(
        clean, tissue.mask[region], appearance.outside_distance(tissue.spacing)[region],
        [a[s] for a, s in zip(tissue.axes, region)], look.contrasts["WM"], acq, scanner)
    cid = case_id(split, index)
    volume = Volume(data, tissue.affine, modality="MR", channels=glioma.CHANNELS, labels=lesion.labels,
                    classes=BRATS_CLASSES, name=cid)
    counts = np.bincount(lesion.labels.ravel(), minlength=4)
    _, components = ndimage.label(lesion.labels > 0, structure=np.ones((3, 3, 3)))      # 26-connected
    info = {
        "id": cid, "index": int(index), "entropy": [int(seed), SPLIT_CODES[split], int(index)],
        "shape": list(volume.shape), "spacing_mm": [float(resolution_mm)] * 3,
        "voxels": {"NCR": int(counts[1]), "ED": int(counts[2]), "ET": int(counts[3]),
                   "cavity": int(lesion.cavity.sum())},
        "components": int(components), **lesion.info, "appearance": look.info(), "acquisition": acq.info(),
    }
    return volume, info


def case_complete(folder: Path) -> bool:
    """Whether a case folder holds all five files (each was written atomically)."""
    return all((folder / f"{folder.name}-{s}.nii.gz").is_file() for s in _FILES)


def _read_manifest(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"unreadable cohort manifest ({exc}); delete it to start over", path) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise InputError(f"not a {FORMAT} manifest (found {found!r}: another generator); choose another --out "
                         "folder", path)
    return manifest


def _write_manifest(path: Path, manifest: dict) -> None:
    text = json.dumps(manifest, indent=1)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def _write_case(split: str, seed: int, index: int, resolution_mm: float, folder: Path) -> dict:
    """Generate case ``index`` and write its folder; returns its manifest entry (a worker's task)."""
    volume, info = cohort_case(split, seed, index, resolution_mm)
    save_brats_case(volume, folder, volume.name)
    return info


def make_cohort(out: str | os.PathLike, n: int, split: str = "train", seed: int = 0,
                resolution_mm: float = 1.0, progress: bool = True, workers: int = 1) -> dict:
    """Write (or complete) a synthetic cohort of ``n`` BraTS-style case folders.

    Resumable: complete case folders already listed in the manifest are skipped, so an interrupted
    run continues where it stopped, and a larger ``n`` extends a cohort. Every file, and the
    manifest after each case, is written atomically.

    Args:
        out: output folder (created).
        n: number of cases (1..100000).
        split: ``"train"``, ``"val"`` or ``"postop"``.
        seed: cohort seed (>= 0).
        resolution_mm: isotropic voxel size, 0.5..8 mm.
        progress: show a tqdm progress bar.
        workers: processes generating cases at once (each case depends only on its split, seed and
            index, so the cohort is the same for any number).

    Returns:
        The manifest (also written to ``out/cohort.json``).

    Raises:
        InputError: bad arguments, or ``out`` already holds a cohort of another split, seed or
            resolution.
    """
    from tqdm.auto import tqdm

    _check_split(split)
    if not 1 <= int(n) <= 100_000:
        raise InputError(f"--n must lie in 1..100000, got {n}")
    if int(seed) < 0:
        raise InputError(f"--seed must be >= 0, got {seed}")
    if not 0.5 <= float(resolution_mm) <= 8.0:
        raise InputError(f"--resolution must lie in 0.5..8 mm, got {resolution_mm}")
    if not 1 <= int(workers) <= 256:
        raise InputError(f"--workers must lie in 1..256, got {workers}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError("exists and is not a folder", out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / MANIFEST
    settings = {"split": split, "seed": int(seed), "resolution_mm": float(resolution_mm)}
    manifest = _read_manifest(path)
    if manifest is not None:
        old = {k: manifest.get(k) for k in settings}
        if old != settings:
            raise InputError(f"folder holds a cohort made with {old}, not {settings}; choose another --out", out)
    else:
        manifest = {"format": FORMAT, **settings, "generator": "rfmweb.data.cohort (tumours, appearance, "
                    "acquisition) on the MNI152 2009 template from nilearn", "cases": []}
    entries = {e["id"]: e for e in manifest["cases"]}
    manifest["n"] = max(int(n), int(manifest.get("n", 0)))
    folders = [out / case_id(split, i) for i in range(int(n))]
    jobs = [(split, int(seed), i, float(resolution_mm), f) for i, f in enumerate(folders)
            if not (f.name in entries and case_complete(f))]
    bar = tqdm(total=int(n), initial=int(n) - len(jobs), desc=f"cohort {split}", unit="case", disable=not progress)

    def record(info: dict) -> None:
        entries[info["id"]] = info
        manifest["cases"] = [entries[k] for k in sorted(entries)]
        _write_manifest(path, manifest)
        bar.update(1)

    if int(workers) == 1 or len(jobs) <= 1:
        for job in jobs:
            record(_write_case(*job))
    else:
        # spawn, not fork: the parent may hold threads (tqdm's monitor, torch's pools)
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(min(int(workers), len(jobs)), mp_context=context)
        try:
            for info in pool.map(_write_case, *zip(*jobs)):
                record(info)
        finally:
            pool.shutdown(cancel_futures=True)     # on an error, queued cases are not started
    bar.close()
    made = len(jobs)
    manifest["cases"] = [entries[k] for k in sorted(entries)]
    _write_manifest(path, manifest)
    log.info("cohort %s: %d cases in %s (%d generated, %d already complete)", split, int(n), out, made,
             int(n) - made)
    return manifest


def find_cases(root: str | os.PathLike) -> list[Path]:
    """BraTS-style case folders under ``root`` (sorted), or ``[root]`` when it is one.

    A case folder is a folder holding a ``*-t1n.nii.gz`` (or ``.nii``, or BraTS 2021's ``*_t1.nii.gz``) file.

    Raises:
        InputError: ``root`` is not a folder or holds no case.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError("not a folder (expected a folder of BraTS-style case folders)", root)

    if is_case_folder(root):
        return [root]
    cases = sorted(p for p in root.iterdir() if p.is_dir() and is_case_folder(p))
    if not cases:
        raise InputError("holds no BraTS-style case folder (folders with *-t1n.nii.gz files)", root)
    return cases
