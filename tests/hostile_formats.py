"""The DICOM, zip and NRRD/MetaImage families of the hostile corpus (see :mod:`tests.hostile_corpus`).

Each ``*_specs()`` returns :class:`~tests.hostile_corpus.Spec` s; DICOM series are written with
pydicom from a small axial CT (10 x 12 pixels, 8 slices), then broken one tag, byte or file at a time.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from .hostile_corpus import Spec, file_maker


# ---------------------------------------------------------------- DICOM series

#: Rows, columns and slices of the small series.
DICOM_GRID = (10, 12, 8)


def write_series(folder: Path, edit: Callable | None = None, n: int = DICOM_GRID[2], uid: str | None = None,
                 rows: int = DICOM_GRID[0], cols: int = DICOM_GRID[1]) -> list[Path]:
    """Write an axial CT series of ``n`` slices (0.8 x 0.9 mm pixels, 2.5 mm apart), one file per slice.

    ``edit(k, ds)`` may change slice ``k``'s dataset before it is saved. Returns the files, slice order.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    folder.mkdir(parents=True, exist_ok=True)
    study, frame, uid = "1.2.826.0.1.99.1", "1.2.826.0.1.99.2", uid or "1.2.826.0.1.99.3"
    files = []
    for k in range(n):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = f"{uid}.{k + 1}"
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, uid, frame
        ds.PatientName, ds.PatientID, ds.Modality, ds.InstanceNumber = "Hostile^Corpus", "X", "CT", k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, 2.5 * k]
        ds.PixelSpacing, ds.SliceThickness = [0.9, 0.8], 2.5
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelData = ((np.arange(rows * cols) * 7 + k) % 2000).astype(np.int16).tobytes()
        if edit is not None:
            edit(k, ds)
        path = folder / f"IM{k:04d}"
        private = ds.file_meta.TransferSyntaxUID.is_private
        pydicom.dcmwrite(path, ds, enforce_file_format=True, **(dict(implicit_vr=False, little_endian=True)
                                                                 if private else {}))
        files.append(path)
    return files


def _set(**values) -> Callable:
    """An edit setting header keywords on every slice (values may be raw strings, for broken tags)."""
    def edit(k, ds):
        for key, value in values.items():
            if value is None:
                delattr(ds, key)
            else:
                setattr(ds, key, value)
    return edit


def _on(slices, **values) -> Callable:
    """Like :func:`_set`, on the slices ``slices`` only."""
    inner = _set(**values)
    return lambda k, ds: inner(k, ds) if k in slices else None


def _raw(keyword: str, vr: str, text: bytes, slices=None) -> Callable:
    """An edit writing ``text`` as the raw bytes of a tag (pydicom would refuse the value)."""
    from pydicom.dataelem import RawDataElement
    from pydicom.datadict import tag_for_keyword

    def edit(k, ds):
        if slices is None or k in slices:
            tag = tag_for_keyword(keyword)
            ds[tag] = RawDataElement(tag, vr, len(text), text, 0, False, True)
    return edit


def _series(edit=None, after: Callable | None = None, **kw) -> Callable[[Path], tuple[Path, None]]:
    def make(dest: Path, name: str) -> tuple[Path, None]:
        folder = dest / name
        files = write_series(folder, edit, **kw)
        if after is not None:
            after(folder, files)
        return folder, None
    return make


def _cut(slices, at: int | None = None, frac: float | None = None) -> Callable:
    """After-hook: truncate the files of ``slices`` at byte ``at`` (or the fraction ``frac``)."""
    def after(folder, files):
        for k in slices:
            raw = files[k].read_bytes()
            files[k].write_bytes(raw[: at if at is not None else int(len(raw) * frac)])
    return after


def _tilt(k, ds):
    ds.ImagePositionPatient = [0.0, 2.5 * k * np.tan(0.3), 2.5 * k]


def _junk_frames(syntax) -> Callable:
    """An edit claiming a compressed transfer syntax over frames of junk."""
    def edit(k, ds):
        from pydicom.encaps import encapsulate

        ds.file_meta.TransferSyntaxUID = syntax
        ds.PixelData = encapsulate([b"\xff\xd8 junk, not a compressed frame \xff\xd9" + bytes([k])])
    return edit


def _dicom_specs() -> list[Spec]:
    from pydicom.uid import JPEGBaseline8Bit, RLELossless

    def position(k, z):
        return lambda j, ds: setattr(ds, "ImagePositionPatient", [0.0, 0.0, z]) if j == k else None

    def extra(write):
        """After-hook: add a file written by ``write(folder)`` beside the series."""
        return lambda folder, files: write(folder)

    def fifo(folder):
        os.mkfifo(folder / "pipe")

    cases = [
        # pixel data
        ("no-pixel-data", _set(PixelData=None), None, "no pixel data"),
        ("no-pixel-data-one", _on({3}, PixelData=None), None, "no pixel data"),
        ("short-pixel-data", _on({2}, PixelData=b"\0" * 40), None, "truncated"),
        ("cut-pixels-one", None, _cut({4}, frac=0.8), "truncated"),
        ("cut-pixels-all", None, _cut(range(8), frac=0.8), "truncated"),
        ("cut-header-middle", None, _cut({3}, at=300), "could not be read"),
        ("cut-header-end", None, _cut({7}, at=300), "could not be read"),
        ("cut-after-preamble", None, _cut({0}, at=140), "could not be read"),
        # sizes and pixel format
        ("rows-0", _set(Rows=0), None, "empty axis"),
        ("columns-0", _set(Columns=0), None, "empty axis"),
        ("rows-huge", _set(Rows=65535, Columns=65535), None, "more than the"),
        ("rows-8000", _set(Rows=8000, Columns=8000), None, "truncated"),
        ("rows-lie", _set(Rows=11), None, "truncated"),
        ("bits-allocated-0", _set(BitsAllocated=0), None, "BitsAllocated"),
        ("bits-allocated-7", _set(BitsAllocated=7), None, "BitsAllocated"),
        ("bits-allocated-64", _set(BitsAllocated=64), None, "BitsAllocated"),
        ("bits-stored-20", _set(BitsStored=20, HighBit=19), None, "BitsStored"),
        ("pixel-representation-5", _set(PixelRepresentation=5), None, "PixelRepresentation"),
        ("colour", _set(SamplesPerPixel=3, PhotometricInterpretation="RGB", PlanarConfiguration=0,
                        PixelData=b"\0" * 720), None, "colour images"),
        ("palette", _set(PhotometricInterpretation="PALETTE COLOR"), None, "PhotometricInterpretation"),
        ("frames-2", _set(NumberOfFrames=2), None, "multi-frame"),
        ("frames-text", _raw("NumberOfFrames", "IS", b"lots"), None, "NumberOfFrames"),
        ("slope-huge", _set(RescaleSlope="1e38"), None, "NaN/Inf"),
        ("slope-nan", _raw("RescaleSlope", "DS", b"nan "), None, "RescaleSlope"),
        ("slope-text", _raw("RescaleSlope", "DS", b"abc "), None, "RescaleSlope"),
        ("intercept-inf", _raw("RescaleIntercept", "DS", b"inf "), None, "RescaleIntercept"),
        # geometry tags
        ("pixel-spacing-0", _set(PixelSpacing=[0, 0]), None, "PixelSpacing"),
        ("pixel-spacing-neg", _set(PixelSpacing=[-0.9, 0.8]), None, "PixelSpacing"),
        ("pixel-spacing-nan", _raw("PixelSpacing", "DS", b"nan\\nan "), None, "PixelSpacing"),
        ("pixel-spacing-text", _raw("PixelSpacing", "DS", b"a\\b "), None, "PixelSpacing"),
        ("pixel-spacing-one", _raw("PixelSpacing", "DS", b"0.9 "), None, "PixelSpacing"),
        ("pixel-spacing-huge", _set(PixelSpacing=[1e6, 1e6]), None, "absurd"),
        ("iop-zero", _set(ImageOrientationPatient=[0, 0, 0, 0, 0, 0]), None, "ImageOrientationPatient"),
        ("iop-parallel", _set(ImageOrientationPatient=[1, 0, 0, 1, 0, 0]), None, "ImageOrientationPatient"),
        ("iop-text", _raw("ImageOrientationPatient", "DS", b"1\\0\\0\\0\\x\\0 "), None, "ImageOrientationPatient"),
        ("iop-five", _raw("ImageOrientationPatient", "DS", b"1\\0\\0\\0\\1 "), None, "ImageOrientationPatient"),
        ("iop-nan", _raw("ImageOrientationPatient", "DS", b"1\\0\\0\\0\\nan\\0 "), None,
         "ImageOrientationPatient"),
        ("ipp-text", _raw("ImagePositionPatient", "DS", b"0\\0\\z ", {2}), None, "ImagePositionPatient"),
        ("ipp-two", _raw("ImagePositionPatient", "DS", b"0\\0 ", {2}), None, "ImagePositionPatient"),
        ("ipp-inf", _raw("ImagePositionPatient", "DS", b"0\\0\\inf ", {5}), None, "ImagePositionPatient"),
        ("ipp-empty", _raw("ImagePositionPatient", "DS", b"", {5}), None, "ImagePositionPatient"),
        ("no-ipp", _set(ImagePositionPatient=None), None, "lack ImagePositionPatient"),
        ("no-rows", _on({0}, Rows=None), None, "Rows"),
        # stacking
        ("tilt", _tilt, None, "gantry tilt"),
        ("duplicate", position(3, 2.5 * 2), None, "2 images share one slice position"),
        ("all-one-position", lambda k, ds: setattr(ds, "ImagePositionPatient", [0, 0, 0]), None,
         "8 images share one slice position"),
        ("missing-slice", None, lambda folder, files: files[4].unlink(), "missing slices"),
        ("uneven", position(4, 2.5 * 4 + 0.9), None, "uneven slice spacing"),
        ("mixed-sizes", _on({3}, Rows=12, Columns=10), None, "mixed image sizes"),
        ("mixed-orientation", _on({3}, ImageOrientationPatient=[0, 1, 0, 0, 0, -1]), None, "mixed orientations"),
        ("mixed-pixel-spacing", _on({5}, PixelSpacing=[0.5, 0.5]), None, "mixed pixel spacings"),
        ("one-slice", None, lambda folder, files: [f.unlink() for f in files[1:]], "1 image"),
        ("far-slice", position(7, 1e7), None, "missing slices"),
        # transfer syntax
        ("syntax-unknown", lambda k, ds: setattr(ds.file_meta, "TransferSyntaxUID", "1.2.3.4.5.6"), None,
         "transfer syntax"),
        ("syntax-jpeg-junk", _junk_frames(JPEGBaseline8Bit), None, "could not decode"),
        ("syntax-rle-junk", _junk_frames(RLELossless), None, "could not decode"),
        # the folder
        ("empty-folder", None, lambda folder, files: [f.unlink() for f in files], "no DICOM images"),
        ("only-text", None, lambda folder, files: [f.write_text("not DICOM") for f in files], "no DICOM images"),
        ("fifo", None, lambda folder, files: ([f.unlink() for f in files], fifo(folder)), "no DICOM images"),
        ("dicm-garbage", None, lambda folder, files: files[0].write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 300),
         "could not be read"),
    ]
    specs = []
    for case, edit, after, reason in cases:
        maker = _series(edit, after)
        specs.append(Spec(f"dicom/{case}", "dicom", reason, lambda dest, m=maker, c=case: m(dest, f"dicom-{c}")))
    return specs


# ---------------------------------------------------------------- zips

def raw_zip(entries: list[dict], tail: bytes = b"") -> bytes:
    """A zip archive built byte by byte (zipfile will not write hostile ones).

    Each entry: ``name``; ``data`` (bytes as stored); ``plain`` (the uncompressed bytes, default
    ``data``); optional ``method``, ``flags``, ``attr`` (external attributes), ``size`` (declared
    uncompressed size, may lie; zip64 above 4 GiB), ``offset`` (local header to point at: overlap).
    """
    body, central = bytearray(), bytearray()
    for e in entries:
        name, data = e["name"].encode(), e.get("data", b"")
        plain = e.get("plain", data)
        crc, size, method, flags = zlib.crc32(plain), e.get("size", len(plain)), e.get("method", 0), e.get("flags", 0)
        extra, size32 = (struct.pack("<HHQ", 1, 8, size), 0xFFFFFFFF) if size >= 0xFFFFFFFF else (b"", size)
        offset = e.get("offset")
        if offset is None:
            offset = len(body)
            body += struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, flags, method, 0, 0x21, crc, len(data),
                                min(size, 0xFFFFFFFF), len(name), 0) + name + data
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0x031E, 45, flags, method, 0, 0x21, crc, len(data),
                               size32, len(name), len(extra), 0, 0, 0, e.get("attr", 0o100644 << 16),
                               offset) + name + extra
    n = len(entries)
    zip64 = b""
    if n > 0xFFFF:                       # zip64 end records carry the true count
        zip64 = (struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, len(central), len(body))
                 + struct.pack("<IIQI", 0x07064B50, 0, len(body) + len(central), 1))
    short = min(n, 0xFFFF)
    return bytes(body + central + zip64
                 + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, short, short, len(central), len(body), 0) + tail)


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def _zip_of_series(edit=None) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        files = write_series(Path(tmp) / "s", edit)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for f in files:
                z.write(f, f"export/{f.name}")
        return buf.getvalue()


def _zip_specs() -> list[Spec]:
    mib = b"\0" * (1 << 20)
    packed = _deflate(mib)
    series = _zip_of_series()
    traversal = ["../evil.dcm", "../../../../tmp/evil.dcm", "/etc/evil.dcm", "C:/evil.dcm", "a/../../evil.dcm",
                 "..\\evil.dcm", "a\\..\\..\\evil.dcm", "//server/share/evil.dcm", "./../evil.dcm", "c:evil.dcm"]
    cases = [(f"traversal-{i}", lambda n=name: raw_zip([{"name": n, "data": b"x"}]), "leaves the archive")
             for i, name in enumerate(traversal)]
    cases += [
        ("symlink", lambda: raw_zip([{"name": "link.dcm", "data": b"/etc/passwd", "attr": 0o120777 << 16}]),
         "symbolic link"),
        ("not-a-zip", lambda: b"PK but not really a zip" * 10, "not a readable .zip"),
        ("empty-file", lambda: b"", "not a readable .zip"),
        ("cut-half", lambda: series[: len(series) // 2], "not a readable .zip"),
        ("cut-eocd", lambda: series[:-10], "not a readable .zip"),
        ("empty-archive", lambda: raw_zip([]), "no DICOM images"),
        ("bad-crc", lambda: raw_zip([{"name": "a.dcm", "data": b"abc", "plain": b"abd"}]), "could not unpack"),
        ("encrypted", lambda: raw_zip([{"name": "a.dcm", "data": b"abcdefghijkl", "flags": 1}]), "could not unpack"),
        ("method-99", lambda: raw_zip([{"name": "a.dcm", "data": b"abc", "method": 99}]), "could not unpack"),
        ("method-98", lambda: raw_zip([{"name": "a.dcm", "data": b"abc", "method": 98}]), "could not unpack"),
        ("bad-deflate", lambda: raw_zip([{"name": "a.dcm", "data": b"\xff" * 64, "plain": b"\0" * 100,
                                          "method": 8}]), "could not unpack"),
        ("size-lie", lambda: raw_zip([{"name": "a.dcm", "data": packed, "plain": mib, "size": 100, "method": 8}]),
         "could not unpack"),
        ("claims-5gib", lambda: raw_zip([{"name": "a.dcm", "data": packed, "plain": mib, "size": 5 << 30,
                                          "method": 8}]), "GiB"),
        ("overlap-bomb", lambda: raw_zip([{"name": "b0000.dcm", "data": packed, "plain": mib, "method": 8}]
                                         + [{"name": f"b{i:04d}.dcm", "data": packed, "plain": mib, "method": 8,
                                             "offset": 0} for i in range(1, 4200)]), "GiB"),
        ("too-many-entries", lambda: raw_zip([{"name": "e.dcm"}] + [{"name": f"{i:x}", "offset": 0}
                                                                   for i in range(100_001)]), "files, more than"),
        ("file-dir-clash", lambda: raw_zip([{"name": "a", "data": b"x"}, {"name": "a/b.dcm", "data": b"y"}]),
         "could not unpack"),
        ("deep-path", lambda: raw_zip([{"name": "d/" * 3000 + "x.dcm", "data": b"x"}]), "could not unpack"),
        ("long-name", lambda: raw_zip([{"name": "n" * 300 + "/x.dcm", "data": b"x"}]), "could not unpack"),
        ("nested-zip", lambda: raw_zip([{"name": "inner.zip", "data": series}]), "no DICOM images"),
        ("tilted-series", lambda: _zip_of_series(_tilt), "gantry tilt"),
        ("cut-series", lambda: _zip_of_series(_on({2}, PixelData=b"\0" * 10)), "truncated"),
    ]
    return [Spec(f"zip/{case}", "zip", reason, file_maker(f"zip-{case}.zip", content)) for case, content, reason in cases]


# ---------------------------------------------------------------- NRRD and MetaImage

def _nrrd(fields: str, data: bytes | None = None, sep: bytes = b"\n") -> bytes:
    """A NRRD file: magic, ``fields`` (one per line), a blank line, then ``data`` (default 4x5x6 float32)."""
    data = np.arange(120, dtype=np.float32).tobytes() if data is None else data
    return b"NRRD0004\n" + fields.strip().encode() + b"\n" + sep + data


NRRD_OK = "type: float\ndimension: 3\nsizes: 4 5 6\nspacings: 1 1 1\nencoding: raw\nendian: little"


def _mha(fields: str, data: bytes | None = None) -> bytes:
    """A MetaImage file: ``fields`` then ``ElementDataFile = LOCAL`` and the (default 4x5x6 float32) voxels."""
    data = np.arange(120, dtype=np.float32).tobytes() if data is None else data
    return (fields.strip() + "\nElementDataFile = LOCAL\n").encode() + data


MHA_OK = ("ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
          "DimSize = 4 5 6\nElementSpacing = 1 1 1\nElementType = MET_FLOAT")


def _sitkfile_maker(name: str, array: np.ndarray) -> Callable[[Path], tuple[Path, None]]:
    def make(dest):
        import SimpleITK as sitk

        path = dest / name
        sitk.WriteImage(sitk.GetImageFromArray(array), str(path), True)
        return path, None
    return make


def _detached(name: str, header: str, data_name: str, data: bytes | None) -> Callable[[Path], tuple[Path, None]]:
    """A ``.nhdr``/``.mhd`` header in its own folder beside ``data`` (``None``: no data file)."""
    def make(dest):
        folder = dest / name.replace(".", "-")
        folder.mkdir()
        if data is not None:
            (folder / data_name).write_bytes(data)
        if data_name == "sub":
            (folder / "sub").mkdir()
        path = folder / name
        path.write_text(header)
        return path, None
    return make


def _itk_specs() -> list[Spec]:
    def swap(text, old, new):
        assert old in text, old
        return text.replace(old, new)

    big = np.zeros(8, np.float32).tobytes()
    nrrd = [
        ("sizes-absurd", _nrrd(swap(NRRD_OK, "sizes: 4 5 6", "sizes: 100000 100000 100000"), big), "more than the"),
        ("sizes-under-limit", _nrrd(swap(NRRD_OK, "sizes: 4 5 6", "sizes: 1024 1024 1000"), big), "truncated"),
        ("sizes-zero", _nrrd(swap(NRRD_OK, "sizes: 4 5 6", "sizes: 0 5 6")), "not a readable"),
        ("sizes-negative", _nrrd(swap(NRRD_OK, "sizes: 4 5 6", "sizes: -4 5 6")), "not a readable"),
        ("sizes-text", _nrrd(swap(NRRD_OK, "sizes: 4 5 6", "sizes: four five six")), "not a readable"),
        ("sizes-overflow", _nrrd(swap(NRRD_OK, "sizes: 4 5 6", "sizes: 99999999999999999999 5 6")),
         "not a readable"),
        ("dimension-2", _nrrd(swap(swap(NRRD_OK, "dimension: 3", "dimension: 2"), "sizes: 4 5 6", "sizes: 4 30")
                              .replace("spacings: 1 1 1", "spacings: 1 1")), "expected a 3-D image"),
        ("dimension-4", _nrrd(swap(swap(NRRD_OK, "dimension: 3", "dimension: 4"), "sizes: 4 5 6", "sizes: 2 2 5 6")
                              .replace("spacings: 1 1 1", "spacings: 1 1 1 1")), "expected a 3-D image"),
        ("vector", _nrrd(swap(swap(NRRD_OK, "dimension: 3", "dimension: 4"), "sizes: 4 5 6", "sizes: 3 4 5 2")
                         .replace("spacings: 1 1 1", "kinds: vector domain domain domain"),
                         np.zeros(120, np.float32).tobytes()), "components"),
        ("type-banana", _nrrd(swap(NRRD_OK, "type: float", "type: banana")), "not a readable"),
        ("type-missing", _nrrd(swap(NRRD_OK, "type: float\n", "")), "not a readable"),
        ("encoding-banana", _nrrd(swap(NRRD_OK, "encoding: raw", "encoding: banana")), "not a readable"),
        ("encoding-bzip2", _nrrd(swap(NRRD_OK, "encoding: raw", "encoding: bzip2"), b"BZh9garbage"), "bzip2"),
        ("gzip-truncated", _nrrd(swap(NRRD_OK, "encoding: raw", "encoding: gzip"),
                                 gzip.compress(np.arange(120, dtype=np.float32).tobytes())[:60]), "truncated"),
        ("gzip-corrupt", _nrrd(swap(NRRD_OK, "encoding: raw", "encoding: gzip"), b"\x1f\x8b\x08\0" + b"\xff" * 90),
         "truncated"),
        ("raw-truncated", _nrrd(NRRD_OK, np.zeros(50, np.float32).tobytes()), "truncated"),
        ("raw-empty", _nrrd(NRRD_OK, b""), "truncated"),
        ("ascii-short", _nrrd(swap(NRRD_OK, "encoding: raw", "encoding: ascii"), b"1 2 3\n"), "truncated"),
        ("header-only", b"NRRD0004\n", "not a readable"),
        ("no-blank-line", _nrrd(NRRD_OK, b"", sep=b""), "data file"),
        ("magic-only-garbage", b"NRRD0004\n" + np.random.default_rng(2).bytes(400), "not a readable"),
        ("empty", b"", "file is empty"),
        ("spacing-inf", _nrrd(swap(NRRD_OK, "spacings: 1 1 1", "spacings: inf 1 1")), "spacing"),
        ("spacing-text", _nrrd(swap(NRRD_OK, "spacings: 1 1 1", "spacings: a b c")), "not a readable"),
        ("spacing-zero", _nrrd(swap(NRRD_OK, "spacings: 1 1 1", "spacings: 1 0 1")), "spacing"),
        ("spacing-huge", _nrrd(swap(NRRD_OK, "spacings: 1 1 1", "spacings: 1e9 1 1")), "absurd"),
        ("directions-singular", _nrrd(swap(NRRD_OK, "spacings: 1 1 1", "space: left-posterior-superior\n"
                                           "space directions: (1,0,0) (1,0,0) (0,0,1)")), "spacing"),
        ("directions-zero", _nrrd(swap(NRRD_OK, "spacings: 1 1 1", "space: left-posterior-superior\n"
                                       "space directions: (0,0,0) (0,1,0) (0,0,1)")), "NaN/Inf"),
        ("origin-nan", _nrrd(swap(NRRD_OK, "spacings: 1 1 1", "space: left-posterior-superior\n"
                                  "space directions: (1,0,0) (0,1,0) (0,0,1)\nspace origin: (nan,0,0)")), "origin"),
        ("line-skip-huge", _nrrd(NRRD_OK + "\nline skip: 1000000"), "skip"),
        ("byte-skip-huge", _nrrd(NRRD_OK + "\nbyte skip: 100000000"), "truncated"),
    ]
    mha = [
        ("dimsize-absurd", _mha(swap(MHA_OK, "DimSize = 4 5 6", "DimSize = 100000 100000 100000"), big),
         "more than the"),
        ("dimsize-under-limit", _mha(swap(MHA_OK, "DimSize = 4 5 6", "DimSize = 1024 1024 1000"), big), "truncated"),
        ("dimsize-zero", _mha(swap(MHA_OK, "DimSize = 4 5 6", "DimSize = 4 0 6")), "empty axis"),
        ("dimsize-negative", _mha(swap(MHA_OK, "DimSize = 4 5 6", "DimSize = 4 -5 6")), "more than the"),
        ("dimsize-short", _mha(swap(MHA_OK, "DimSize = 4 5 6", "DimSize = 4 5")), "not a readable"),
        ("ndims-2", _mha(swap(swap(MHA_OK, "NDims = 3", "NDims = 2"), "DimSize = 4 5 6", "DimSize = 4 30")
                         .replace("ElementSpacing = 1 1 1", "ElementSpacing = 1 1")), "expected a 3-D image"),
        ("ndims-4", _mha(swap(swap(MHA_OK, "NDims = 3", "NDims = 4"), "DimSize = 4 5 6", "DimSize = 2 2 5 6")
                         .replace("ElementSpacing = 1 1 1", "ElementSpacing = 1 1 1 1")), "expected a 3-D image"),
        ("ndims-0", _mha(swap(MHA_OK, "NDims = 3", "NDims = 0")), "expected a 3-D image"),
        ("type-banana", _mha(swap(MHA_OK, "MET_FLOAT", "MET_BANANA")), "not a readable"),
        ("channels-3", _mha(MHA_OK + "\nElementNumberOfChannels = 3", np.zeros(360, np.float32).tobytes()),
         "components"),
        ("compressed-lie", _mha(MHA_OK + "\nCompressedData = True"), "compressed stream is corrupt"),
        ("compressed-truncated", _mha(MHA_OK + "\nCompressedData = True",
                                      zlib.compress(np.arange(120, dtype=np.float32).tobytes())[:30]), "truncated"),
        ("raw-truncated", _mha(MHA_OK, np.zeros(100, np.float32).tobytes()), "truncated"),
        ("raw-empty", _mha(MHA_OK, b""), "truncated"),
        ("header-only", b"ObjectType = Image\n", "not a readable"),
        ("no-data-line", MHA_OK.encode(), "not a readable"),
        ("garbage", np.random.default_rng(4).bytes(500), "not a readable"),
        ("empty", b"", "file is empty"),
        ("spacing-nan", _mha(swap(MHA_OK, "ElementSpacing = 1 1 1", "ElementSpacing = 1 nan 1")), "spacing"),
        ("spacing-zero", _mha(swap(MHA_OK, "ElementSpacing = 1 1 1", "ElementSpacing = 0 1 1")), "spacing"),
        ("spacing-huge", _mha(swap(MHA_OK, "ElementSpacing = 1 1 1", "ElementSpacing = 1 1 1e12")), "absurd"),
        ("matrix-singular", _mha(MHA_OK + "\nTransformMatrix = 0 0 0 0 0 0 0 0 0"), "spacing"),
        ("headersize-huge", _mha(MHA_OK + "\nHeaderSize = 100000000"), "truncated"),
    ]
    specs = [Spec(f"itk/nrrd-{case}", "itk", reason, file_maker(f"itk-{case}.nrrd", lambda c=content: c))
             for case, content, reason in nrrd]
    specs += [Spec(f"itk/mha-{case}", "itk", reason, file_maker(f"itk-{case}.mha", lambda c=content: c))
              for case, content, reason in mha]
    nan = np.arange(120, dtype=np.float32).reshape(6, 5, 4)
    nan[2, 3, 1] = np.nan
    inf = np.where(nan == 7, np.inf, 0).astype(np.float64)
    specs += [Spec("itk/nrrd-nan", "itk", "NaN/Inf", _sitkfile_maker("itk-nan.nrrd", nan)),
              Spec("itk/mha-inf", "itk", "NaN/Inf", _sitkfile_maker("itk-inf.mha", inf)),
              Spec("itk/nrrd-complex", "itk", "complex", _sitkfile_maker("itk-complex.nrrd", nan.astype(np.complex64))),
              Spec("itk/mha-complex", "itk", "complex", _sitkfile_maker("itk-complex.mha", nan.astype(np.complex128)))]
    raw = np.arange(120, dtype=np.float32).tobytes()
    nhdr = "NRRD0004\n" + NRRD_OK.replace("encoding: raw", "encoding: raw\ndata file: {}") + "\n\n"
    mhd = MHA_OK + "\nElementDataFile = {}\n"
    for ext, header in (("nhdr", nhdr), ("mhd", mhd)):
        for case, data_name, data, reason in (("data-missing", "vox.raw", None, "is missing"),
                                              ("data-short", "vox.raw", raw[:100], "truncated"),
                                              ("data-empty", "vox.raw", b"", "truncated"),
                                              ("data-folder", "sub", None, "is missing"),
                                              ("data-absolute", "/etc/passwd", None, "outside the header's folder"),
                                              ("data-dev-zero", "/dev/zero", None, "outside the header's folder"),
                                              ("data-parent", "../vox.raw", None, "outside the header's folder")):
            specs.append(Spec(f"itk/{ext}-{case}", "itk", reason,
                              _detached(f"{case}.{ext}", header.format(data_name), data_name, data)))
    return specs
