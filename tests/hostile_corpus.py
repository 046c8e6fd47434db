"""A corpus of hostile volume inputs, each paired with the reason it must be refused for.

Every item is something a user (or an attacker) could hand ``rfmweb render``/``serve``: a NIfTI,
NRRD, MetaImage, DICOM folder or ``.zip`` that is truncated, corrupt, of the wrong shape or type,
holds NaN/Inf, claims an absurd size, is a zip bomb, or is a label map on another grid. Each must
end in one :class:`~rfmweb.errors.InputError` naming :attr:`Item.blamed` with ``reason`` in its
message: never a traceback, a hang, a huge allocation or a silently accepted volume.

The DICOM, zip and NRRD/MetaImage families live in :mod:`tests.hostile_formats`. Items are
generated systematically (families x parameters) from tiny volumes (8^3 to 16^3), so
the whole corpus is a few MiB and writes in seconds::

    python -m tests.hostile_corpus OUTDIR      # writes the corpus and lists it
"""

from __future__ import annotations

import gzip
import logging
import os
import struct
import sys
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np

log = logging.getLogger(__name__)

#: The grid of the small volumes the corpus is built from, voxels.
SHAPE = (12, 10, 8)


@dataclass(frozen=True)
class Item:
    """One hostile input.

    Attributes:
        name: unique id, ``family/case``.
        kind: the family (``nifti``, ``nifti-gz``, ``nifti-header``, ``dicom``, ``zip``, ``itk``, ``labels``).
        path: what is given as the volume (a file, a DICOM folder or a ``.zip``).
        reason: a substring the error's reason must contain.
        labels: the label map given with it (``labels`` family), else ``None``.
    """

    name: str
    kind: str
    path: Path
    reason: str
    labels: Path | None = None

    @property
    def blamed(self) -> Path:
        """The file or folder the error must name: the label map when one is given, else ``path``."""
        return self.labels if self.labels is not None else self.path


@dataclass(frozen=True)
class Spec:
    """How to make one item: ``make(dest)`` writes under the folder ``dest`` and returns
    ``(volume path, label path or None)``."""

    name: str
    kind: str
    reason: str
    make: Callable[[Path], tuple[Path, Path | None]]


# ---------------------------------------------------------------- NIfTI helpers

def ct_array(shape=SHAPE, seed=0) -> np.ndarray:
    """``[X, Y, Z]`` int16 HU-like noise."""
    return np.random.default_rng(seed).integers(-1024, 2000, size=shape).astype(np.int16)


def nifti_bytes(data: np.ndarray, affine=None, version: int = 1) -> bytes:
    """A valid single-file NIfTI-1 (or -2) holding ``data``, as bytes."""
    cls = nib.Nifti1Image if version == 1 else nib.Nifti2Image
    img = cls(np.asarray(data), np.diag([1.0, 1.0, 2.0, 1.0]) if affine is None else affine)
    img.header.set_xyzt_units("mm")
    return img.to_bytes()


def raw_nifti(fields: dict | None = None, data: np.ndarray | None = None, version: int = 1,
              payload: bytes | None = None) -> bytes:
    """A single-file NIfTI built field by field (nibabel refuses to write many broken headers).

    ``fields`` overrides header fields after the shape/dtype of ``data`` are set; ``payload``
    replaces the voxel bytes.
    """
    data = ct_array().astype(np.float32) if data is None else data
    hdr = (nib.Nifti1Header if version == 1 else nib.Nifti2Header)()
    hdr.set_data_shape(data.shape)
    hdr.set_data_dtype(data.dtype)
    hdr.set_zooms((1.0, 1.0, 2.0) + (1.0,) * (data.ndim - 3))
    hdr.set_xyzt_units("mm")
    hdr.set_sform(np.diag([1.0, 1.0, 2.0, 1.0]), code=1)
    offset = int(hdr.sizeof_hdr) + 4
    hdr["vox_offset"] = offset
    for key, value in (fields or {}).items():
        if isinstance(value, dict):          # {index: value} into an array field
            for i, v in value.items():
                hdr[key][i] = v
        else:
            hdr[key] = value
    body = data.tobytes(order="F") if payload is None else payload
    return hdr.binaryblock + b"\0" * 4 + body


def file_maker(name: str, content: Callable[[], bytes]) -> Callable[[Path], tuple[Path, None]]:
    """A ``Spec.make`` writing ``content()`` to ``dest/name``."""
    def make(dest: Path) -> tuple[Path, None]:
        path = dest / name
        path.write_bytes(content())
        return path, None
    return make


def _nifti_specs() -> list[Spec]:
    specs = []

    def add(kind, case, reason, content, suffix=".nii"):
        specs.append(Spec(f"{kind}/{case}", kind, reason, file_maker(f"{kind}-{case}{suffix}", content)))

    good = nifti_bytes(ct_array().astype(np.float32))          # 352 + 3840 bytes
    for cut in (1, 4, 40, 120, 200, 300, 344, 347):
        add("nifti", f"cut-header-{cut:04d}", "truncated", lambda c=cut: good[:c])
    for cut in (348, 351, 352, 353, 1000, 2048, 4000, len(good) - 1):
        add("nifti", f"cut-data-{cut:04d}", "truncated", lambda c=cut: good[:c])
    add("nifti", "empty", "file is empty", lambda: b"")
    add("nifti", "text", "not a readable NIfTI", lambda: b"this is not a nifti file at all\n" * 20)
    add("nifti", "zeros", "not a readable NIfTI", lambda: b"\0" * 4096)
    add("nifti", "random", "not a readable NIfTI", lambda: np.random.default_rng(1).bytes(4192))
    add("nifti", "bad-magic", "not a readable NIfTI", lambda: good[:344] + b"xyz\0" + good[348:])
    add("nifti", "nifti2-cut", "truncated", lambda: nifti_bytes(ct_array(), version=2)[:1000])
    add("nifti", "png-named-nii", "not a readable NIfTI", lambda: b"\x89PNG\r\n\x1a\n" + b"\0" * 600)
    # voxel values
    for case, value, at in (("nan-first", np.nan, 0), ("nan-middle", np.nan, 480), ("nan-last", np.nan, -1),
                            ("inf", np.inf, 7), ("minus-inf", -np.inf, 100)):
        data = ct_array().astype(np.float32)
        data.flat[at] = value
        add("nifti", case, "NaN/Inf", lambda d=data: nifti_bytes(d))
    add("nifti", "all-nan", "NaN/Inf", lambda: nifti_bytes(np.full(SHAPE, np.nan, np.float32)))
    add("nifti", "nan-float64", "NaN/Inf", lambda: nifti_bytes(np.where(ct_array() > 1900, np.nan, 0.0)))
    add("nifti", "float64-overflow", "NaN/Inf", lambda: nifti_bytes(np.full(SHAPE, 1e300)))
    add("nifti", "slope-overflow", "NaN/Inf", lambda: raw_nifti({"scl_slope": 1e38}, ct_array()))
    add("nifti", "slope-inf", "scaling", lambda: raw_nifti({"scl_slope": np.inf}, ct_array()))
    add("nifti", "inter-nan", "scaling", lambda: raw_nifti({"scl_slope": 1.0, "scl_inter": np.nan}, ct_array()))
    add("nifti", "inter-inf", "scaling", lambda: raw_nifti({"scl_slope": 1.0, "scl_inter": -np.inf}, ct_array()))
    # dtypes
    add("nifti", "complex64", "complex-valued voxels", lambda: nifti_bytes(np.full(SHAPE, 1 + 2j, np.complex64)))
    add("nifti", "complex128", "complex-valued voxels", lambda: nifti_bytes(np.full(SHAPE, 1j, np.complex128)))
    rgb = np.zeros(SHAPE, [("R", "u1"), ("G", "u1"), ("B", "u1")])
    add("nifti", "rgb24", "real numbers", lambda: nifti_bytes(rgb))
    rgba = np.zeros(SHAPE, [("R", "u1"), ("G", "u1"), ("B", "u1"), ("A", "u1")])
    add("nifti", "rgba32", "real numbers", lambda: nifti_bytes(rgba))
    for code in (0, 1, 3, 13, 99, 1536, 2305, -7):            # unknown / binary / unused codes
        add("nifti", f"datatype-{code}", "data type", lambda c=code: raw_nifti({"datatype": c}))
    for bits in (0, 8, 64, 12):
        add("nifti", f"bitpix-{bits}", "bitpix", lambda b=bits: raw_nifti({"bitpix": b}))
    # dimensionality
    add("nifti", "1d", "expected a 3-D image", lambda: nifti_bytes(np.zeros(64, np.float32)))
    add("nifti", "2d", "expected a 3-D image", lambda: nifti_bytes(np.zeros((8, 8), np.float32)))
    add("nifti", "4d-3", "expected a 3-D image", lambda: nifti_bytes(np.zeros((8, 8, 8, 3), np.float32)))
    add("nifti", "4d-many", "expected a 3-D image", lambda: nifti_bytes(np.zeros((4, 4, 4, 40), np.float32)))
    add("nifti", "5d", "expected a 3-D image", lambda: nifti_bytes(np.zeros((4, 4, 4, 2, 2), np.float32)))
    add("nifti", "7d", "expected a 3-D image", lambda: nifti_bytes(np.zeros((2,) * 7, np.float32)))
    add("nifti", "flat-x", "at least 2 voxels", lambda: nifti_bytes(np.zeros((1, 8, 8), np.float32)))
    add("nifti", "flat-z", "at least 2 voxels", lambda: nifti_bytes(np.zeros((8, 8, 1), np.float32)))
    return specs


def _gz_specs() -> list[Spec]:
    specs = []

    def add(case, reason, content, suffix=".nii.gz"):
        specs.append(Spec(f"nifti-gz/{case}", "nifti-gz", reason, file_maker(f"gz-{case}{suffix}", content)))

    raw = nifti_bytes(ct_array(seed=3).astype(np.float32))
    good = gzip.compress(raw, mtime=0)
    for cut in (1, 5, 10, 18, 64, len(good) // 2, len(good) - 9, len(good) - 1):
        add(f"cut-{cut:05d}", "not gzip-compressed" if cut < 2 else "truncated", lambda c=cut: good[:c])
    add("bad-crc", "truncated or corrupt", lambda: good[:-8] + bytes([good[-8] ^ 0xFF]) + good[-7:])
    add("bad-length", "truncated or corrupt", lambda: good[:-4] + struct.pack("<I", 1234))
    mid = len(good) // 2
    add("flipped-bytes", "truncated or corrupt", lambda: good[:mid] + bytes(b ^ 0x5A for b in good[mid:mid + 32])
        + good[mid + 32:])
    add("not-gzip", "not gzip-compressed", lambda: raw)       # a plain .nii named .nii.gz
    add("gzip-of-text", "not a readable NIfTI", lambda: gzip.compress(b"hello, world\n" * 50))
    add("gzip-of-nothing", "file is empty", lambda: gzip.compress(b""))
    add("data-cut", "truncated", lambda: gzip.compress(raw[:2000]))
    add("header-cut", "truncated", lambda: gzip.compress(raw[:200]))
    add("zlib-not-gzip", "not gzip-compressed", lambda: zlib.compress(raw))
    add("trailing-garbage", "truncated or corrupt", lambda: good + b"garbage!" * 4)
    # a tiny .gz whose header claims ~1e9 float64 voxels: refused without inflating 8 GB
    add("claims-8gb", "truncated", lambda: gzip.compress(raw_nifti(
        {"dim": {1: 1000, 2: 1000, 3: 1000}}, np.zeros((2, 2, 2), np.float64))))
    return specs


def _huge_extension() -> bytes:
    """A header extension claiming 2 GiB (nibabel would try to read that much) before voxels at byte 4096."""
    raw = raw_nifti({"vox_offset": 4096}, payload=b"\0" * 3744 + ct_array().astype(np.float32).tobytes("F"))
    return raw[:348] + b"\1\0\0\0" + struct.pack("<ii", 0x7FFFFFF0, 6) + raw[360:]


def _header_specs() -> list[Spec]:
    """Corrupt NIfTI-1 header fields, one at a time, on an otherwise valid single file."""
    cases = [
        ("dim0-0", {"dim": {0: 0}}, "dimensions"),
        ("dim0-neg", {"dim": {0: -3}}, "dimensions"),
        ("dim0-8", {"dim": {0: 8}}, "dimensions"),
        ("dim0-200", {"dim": {0: 200}}, "dimensions"),
        ("dim1-0", {"dim": {1: 0}}, "empty axis"),
        ("dim-4d-zero", {"dim": {0: 4, 4: 0}}, "empty axis"),
        ("dim2-neg", {"dim": {2: -10}}, "dimensions"),
        ("dim3-neg1", {"dim": {3: -1}}, "dimensions"),
        ("dim-huge", {"dim": {1: 32767, 2: 32767, 3: 32767}}, "more than the"),
        ("dim-just-under-limit", {"dim": {1: 1024, 2: 1024, 3: 1000}}, "truncated"),
        ("dim-big-x", {"dim": {1: 30000}}, "truncated"),
        ("vox-offset-beyond", {"vox_offset": 1e6}, "truncated"),
        ("vox-offset-huge", {"vox_offset": 3e9}, "truncated"),
        ("vox-offset-nan", {"vox_offset": np.nan}, "vox_offset"),
        ("vox-offset-neg", {"vox_offset": -352}, "vox_offset"),
        ("vox-offset-inside", {"vox_offset": 100}, "vox_offset"),
        ("sizeof-hdr-0", {"sizeof_hdr": 0}, "sizeof_hdr"),
        ("sizeof-hdr-540", {"sizeof_hdr": 540}, "not a single-file NIfTI"),
        ("ext-huge", {"vox_offset": 4096}, "extension"),
    ]
    for i, axis in enumerate("xyz", start=1):
        for tag, value in (("0", 0.0), ("neg", -1.5), ("nan", np.nan), ("inf", np.inf), ("huge", 1e9)):
            reason = "absurd" if tag == "huge" else "spacing"
            cases.append((f"pixdim-{axis}-{tag}", {"pixdim": {i: value}, "sform_code": 0}, reason))
    for field_, value in (("srow_x", [np.nan, 0, 0, 0]), ("srow_y", [0, np.inf, 0, 0]), ("srow_z", [0, 0, 2, np.nan])):
        cases.append((f"sform-{field_}", {field_: value}, "voxel-to-world"))
    cases += [
        ("sform-singular", {"srow_x": [0, 0, 0, 0], "srow_y": [0, 0, 0, 0], "srow_z": [0, 0, 0, 0]}, "spacing"),
        ("sform-huge", {"srow_x": [1e9, 0, 0, 0]}, "absurd"),
        ("sform-collinear", {"srow_x": [1, 0, 0, 0], "srow_y": [1, 0, 0, 0]}, "spacing"),
        ("qform-nan", {"sform_code": 0, "qform_code": 1, "quatern_b": np.nan}, "voxel-to-world"),
        ("qoffset-inf", {"sform_code": 0, "qform_code": 1, "qoffset_x": np.inf}, "voxel-to-world"),
        ("qform-bad-quat", {"sform_code": 0, "qform_code": 1, "quatern_b": 2.0, "quatern_c": 2.0}, "qform"),
    ]
    specs = []
    for case, fields, reason in cases:
        content = _huge_extension if case == "ext-huge" else (lambda f=fields: raw_nifti(f))
        specs.append(Spec(f"nifti-header/{case}", "nifti-header", reason, file_maker(f"hdr-{case}.nii", content)))
    v2 = [("nifti2-dim-huge", {"dim": {1: 1 << 40, 2: 1 << 40, 3: 4}}, "more than the"),
          ("nifti2-pixdim-nan", {"pixdim": {2: np.nan}, "sform_code": 0}, "spacing"),
          ("nifti2-vox-offset", {"vox_offset": 1 << 40}, "truncated")]
    for case, fields, reason in v2:
        specs.append(Spec(f"nifti-header/{case}", "nifti-header", reason,
                          file_maker(f"hdr-{case}.nii", lambda f=fields: raw_nifti(f, version=2))))
    return specs


# ---------------------------------------------------------------- label maps

def _label_specs() -> list[Spec]:
    """A valid CT beside a label map that is on another grid or not a label map."""
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    shifted = affine.copy()
    shifted[:3, 3] = (0.0, 5.0, 0.0)
    flipped = np.diag([-1.0, 1.0, 2.0, 1.0])
    flipped[0, 3] = SHAPE[0] - 1
    rotated = affine.copy()
    c, s = np.cos(0.2), np.sin(0.2)
    rotated[:2, :2] = [[c, -s], [s, c]]
    ok = np.zeros(SHAPE, np.uint8)
    ok[2:5, 3:6, 1:4] = 1
    cases = [
        ("shape-x", np.zeros((11, 10, 8), np.uint8), affine, "not on the grid"),
        ("shape-z", np.zeros((12, 10, 9), np.uint8), affine, "not on the grid"),
        ("transposed", np.zeros((8, 10, 12), np.uint8), affine, "not on the grid"),
        ("spacing", ok, np.diag([1.0, 1.0, 2.5, 1.0]), "not on the grid"),
        ("origin", ok, shifted, "not on the grid"),
        ("rotated", ok, rotated, "not on the grid"),
        ("half-res", np.zeros((6, 5, 4), np.uint8), np.diag([2.0, 2.0, 4.0, 1.0]), "not on the grid"),
        ("fractional", np.full(SHAPE, 0.5, np.float32), affine, "integer labels"),
        ("nan", np.where(ok > 0, np.nan, 0).astype(np.float32), affine, "integer labels"),
        ("negative", -ok.astype(np.int16), affine, "0..65535"),
        ("too-big", ok.astype(np.int32) * 70000, affine, "0..65535"),
        ("complex", ok.astype(np.complex64), affine, "complex-valued voxels"),
        ("4d", np.zeros(SHAPE + (2,), np.uint8), affine, "expected a 3-D image"),
    ]
    specs = []
    for case, lab, lab_affine, reason in cases:
        def make(dest, case=case, lab=lab, lab_affine=lab_affine):
            vol = dest / f"labels-{case}-ct.nii.gz"
            vol.write_bytes(gzip.compress(nifti_bytes(ct_array(), affine), mtime=0))
            labels = dest / f"labels-{case}-seg.nii.gz"
            labels.write_bytes(gzip.compress(nifti_bytes(lab, lab_affine), mtime=0))
            return vol, labels
        specs.append(Spec(f"labels/{case}", "labels", reason, make))
    for case, content, reason in (("truncated", lambda: nifti_bytes(ok)[:600], "truncated"),
                                  ("garbage", lambda: b"garbage" * 100, "not a readable NIfTI"),
                                  ("empty", lambda: b"", "file is empty")):
        def make(dest, case=case, content=content):
            vol = dest / f"labels-{case}-ct.nii"
            vol.write_bytes(nifti_bytes(ct_array(), affine))
            labels = dest / f"labels-{case}-seg.nii"
            labels.write_bytes(content())
            return vol, labels
        specs.append(Spec(f"labels/{case}", "labels", reason, make))

    def missing(dest):
        vol = dest / "labels-missing-ct.nii"
        vol.write_bytes(nifti_bytes(ct_array(), affine))
        return vol, dest / "labels-missing-seg.nii.gz"
    specs.append(Spec("labels/missing", "labels", "no such file", missing))
    return specs


def specs() -> list[Spec]:
    """Every item of the corpus, unwritten (names are unique)."""
    from .hostile_formats import _dicom_specs, _itk_specs, _zip_specs

    out = _nifti_specs() + _gz_specs() + _header_specs() + _dicom_specs() + _zip_specs() + _itk_specs() + _label_specs()
    names = [s.name for s in out]
    assert len(set(names)) == len(names), "duplicate corpus names"
    return out


def build(dest: str | os.PathLike) -> list[Item]:
    """Write the corpus under ``dest`` (created); returns its items in a fixed order."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    items = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # pydicom warns about the broken values it is asked to write
        for spec in specs():
            path, labels = spec.make(dest)
            items.append(Item(spec.name, spec.kind, path, spec.reason, labels))
    return items


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m tests.hostile_corpus OUTDIR\n")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    items = build(argv[0])
    counts: dict[str, int] = {}
    for item in items:
        counts[item.kind] = counts.get(item.kind, 0) + 1
        log.info("%-40s %s  (%s)", item.name, item.blamed, item.reason)
    log.info("%d items: %s", len(items), ", ".join(f"{k} {n}" for k, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
