"""A synthetic BraTS-style glioma cohort (train / val / post-operative splits) on disk.

Each case is the glioma generator of :mod:`rfmweb.samples.glioma` (MNI152 brain, tumour grown in
the white matter of one hemisphere) with per-case variation on top of what the generator already
randomises (hemisphere, place, 20-60 mm size, irregular shape):

- contrast jitter: every pure-tissue and tumour intensity of :data:`~rfmweb.samples.glioma.CONTRASTS`
  scaled by its own factor (tissues +-8 %, tumour compartments +-15 %), the lesion texture
  amplitude drawn in 4-12 %, and a per-channel scanner gain (x 0.6 .. 1.6, log-uniform);
- intensity inhomogeneity: a smooth multiplicative bias field per channel, peak 5-25 %;
- Rician noise, sigma 1-5 % of the white-matter intensity.

Splits draw from disjoint random streams: case ``index`` of ``split`` with cohort ``seed`` uses
``numpy.random.SeedSequence([seed, SPLIT_CODES[split], index])``, so the same (split, seed, index)
always gives the same case and no two splits (or seeds, or indices) share a stream. The ``postop``
split models the MU-Glioma-Post domain shift of the Neumours paper: a CSF-like resection cavity
where the core was, residual edema, a thin patchy enhancing rim in about half of the cases, and no
necrotic core.

Layout written by :func:`make_cohort` (read back by :func:`rfmweb.io.load_brats_case`)::

    OUT/
        cohort.json                         # manifest: generator settings and one entry per case
        BraTS-GLI-00000-000/                # train / val  (BraTS-POST-00000-000/ for postop)
            BraTS-GLI-00000-000-t1n.nii.gz  # ... t1c, t2w, t2f, seg
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..io.atomic import atomic_write
from ..io.brats import BRATS_CLASSES, MODALITY_SUFFIXES, save_brats_case
from ..samples import glioma
from ..volume import Volume

log = logging.getLogger(__name__)

#: Split name -> the code mixed into each case's random stream (disjoint streams per split).
SPLIT_CODES = {"train": 1, "val": 2, "postop": 3}
#: Split name -> BraTS case-id prefix.
SPLIT_PREFIX = {"train": "BraTS-GLI", "val": "BraTS-GLI", "postop": "BraTS-POST"}
MANIFEST = "cohort.json"
FORMAT = "rfmweb-cohort/1"
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


def _synthesize(tissue: glioma.TissueMaps, tumour: glioma.Tumour, contrasts: dict[str, np.ndarray],
                texture_amp: float, rng: np.random.Generator) -> np.ndarray:
    """:func:`rfmweb.samples.glioma.synthesize` with a per-case contrast table and texture amplitude."""
    weights = {"GM": tissue.gm, "WM": tissue.wm, "CSF": tissue.csf}
    table = np.stack([contrasts[k] for k in weights]).astype(np.float32)          # [3, 4]
    out = np.einsum("tc,txyz->cxyz", table, np.stack(list(weights.values())))
    compartments = {k: tumour.labels == v for k, v in glioma._TUMOUR_LABELS.items()}
    compartments["cavity"] = tumour.cavity
    region = tumour.labels.astype(bool) | tumour.cavity
    if region.any():
        box = tuple(slice(max(s.start - 3, 0), s.stop + 3)
                    for s in ndimage.find_objects(region.astype(np.uint8))[0])
        soft = {k: ndimage.gaussian_filter(m[box].astype(np.float32), 0.6) for k, m in compartments.items()}
        total = np.clip(sum(soft.values()), 0.0, 1.0)
        texture = 1.0 + texture_amp * glioma.smooth_field([a[s] for a, s in zip(tissue.axes, box)], rng, 4.0)
        brain = tissue.mask[box]
        for c in range(len(glioma.CHANNELS)):
            lesion = sum(s * contrasts[k][c] for k, s in soft.items()) * texture
            out[c][box] = np.where(brain, out[c][box] * (1.0 - total) + lesion, 0.0)
    return out


def cohort_case(split: str, seed: int, index: int, resolution_mm: float = 1.0) -> tuple[Volume, dict]:
    """Generate one cohort case in memory.

    Args:
        split: ``"train"``, ``"val"`` or ``"postop"``.
        seed: cohort seed (>= 0).
        index: case index within the split (>= 0).
        resolution_mm: isotropic voxel size (BraTS: 1 mm; 2 mm for quick experiments).

    Returns:
        ``(volume, info)``: the 4-channel MR :class:`Volume` with BraTS labels, named by
        :func:`case_id`, and a JSON-ready dict describing how it was drawn (the manifest entry).
    """
    rng = case_rng(split, seed, index)
    tissue = glioma.tissue_maps(float(resolution_mm))
    postop = split == "postop"
    tumour = glioma.grow_tumour(tissue, rng, postop=postop)
    contrasts = {}
    for name, values in glioma.CONTRASTS.items():
        spread = 0.08 if name in ("WM", "GM", "CSF") else 0.15
        contrasts[name] = np.asarray(values) * rng.uniform(1 - spread, 1 + spread, len(values))
    texture_amp = float(rng.uniform(0.04, 0.12))
    gain = np.exp(rng.uniform(np.log(0.6), np.log(1.6), len(glioma.CHANNELS)))
    bias_peak = float(rng.uniform(0.05, 0.25))
    noise = float(rng.uniform(0.01, 0.05))
    clean = _synthesize(tissue, tumour, contrasts, texture_amp, rng)
    data = clean * glioma.bias_fields(tissue, rng, strength=(bias_peak, bias_peak))
    data = glioma.add_rician_noise(data, tissue, rng, fraction=(noise, noise))
    data *= gain[:, None, None, None].astype(np.float32)
    cid = case_id(split, index)
    volume = Volume(data, tissue.affine, modality="MR", channels=glioma.CHANNELS, labels=tumour.labels,
                    classes=BRATS_CLASSES, name=cid)
    counts = np.bincount(tumour.labels.ravel(), minlength=4)
    info = {
        "id": cid, "index": int(index), "entropy": [int(seed), SPLIT_CODES[split], int(index)],
        "shape": list(volume.shape), "spacing_mm": [float(resolution_mm)] * 3,
        "voxels": {"NCR": int(counts[1]), "ED": int(counts[2]), "ET": int(counts[3]),
                   "cavity": int(tumour.cavity.sum())},
        "diameter_mm": round(float(tumour.diameter_mm), 2),
        "centre_mm": [round(c, 2) for c in tumour.centre_mm],
        "gain": [round(float(g), 4) for g in gain], "texture": round(texture_amp, 4),
        "bias_peak": round(bias_peak, 4), "noise_fraction": round(noise, 4),
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
        raise InputError(f"not a {FORMAT} manifest; choose another --out folder", path)
    return manifest


def _write_manifest(path: Path, manifest: dict) -> None:
    text = json.dumps(manifest, indent=1)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def make_cohort(out: str | os.PathLike, n: int, split: str = "train", seed: int = 0,
                resolution_mm: float = 1.0, progress: bool = True) -> dict:
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
        manifest = {"format": FORMAT, **settings, "generator": "rfmweb.data.cohort on rfmweb.samples.glioma "
                    "(MNI152 2009 template from nilearn)", "cases": []}
    entries = {e["id"]: e for e in manifest["cases"]}
    manifest["n"] = max(int(n), int(manifest.get("n", 0)))
    made = 0
    for index in tqdm(range(int(n)), desc=f"cohort {split}", unit="case", disable=not progress):
        cid = case_id(split, index)
        folder = out / cid
        if cid in entries and case_complete(folder):
            continue
        volume, info = cohort_case(split, seed, index, resolution_mm)
        save_brats_case(volume, folder, cid)
        entries[cid] = info
        manifest["cases"] = [entries[k] for k in sorted(entries)]
        _write_manifest(path, manifest)
        made += 1
    manifest["cases"] = [entries[k] for k in sorted(entries)]
    _write_manifest(path, manifest)
    log.info("cohort %s: %d cases in %s (%d generated, %d already complete)", split, int(n), out, made,
             int(n) - made)
    return manifest


def find_cases(root: str | os.PathLike) -> list[Path]:
    """BraTS-style case folders under ``root`` (sorted), or ``[root]`` when it is one.

    A case folder is a folder holding a ``*-t1n.nii.gz`` (or ``.nii``) file.

    Raises:
        InputError: ``root`` is not a folder or holds no case.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError("not a folder (expected a folder of BraTS-style case folders)", root)

    def is_case(p: Path) -> bool:
        return any(p.glob("*-t1n.nii.gz")) or any(p.glob("*-t1n.nii"))

    if is_case(root):
        return [root]
    cases = sorted(p for p in root.iterdir() if p.is_dir() and is_case(p))
    if not cases:
        raise InputError("holds no BraTS-style case folder (folders with *-t1n.nii.gz files)", root)
    return cases
