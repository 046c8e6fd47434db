"""Segmentations out: a label map on a volume's grid -> NIfTI, NRRD/MetaImage or DICOM SEG.

:func:`save_segmentation` is the one call (``rfmweb segment --out`` and the viewer's "save" use it);
the suffix picks the format. A DICOM SEG (highdicom, binary segments) references the images its
frames lie on, by UID:

- for a volume read from DICOM (:func:`rfmweb.io.dicom.dicom_source`), that series: the SEG joins
  the patient's study and lies on the scanner's slices in any DICOM viewer or PACS;
- for any other volume (NIfTI, NRRD, BraTS), the volume is first written beside the SEG as a DICOM
  series, one per channel, in ``<out>_images/`` (DERIVED images with fresh UIDs and no patient
  identity, since a NIfTI carries none), and the SEG references those. Refusing ``.dcm`` instead
  would leave ``rfmweb segment``, whose 4-modality MR cases come as NIfTI, no way to hand a
  clinician a SEG at all; with its images beside it the SEG opens in OHIF, 3D Slicer or a PACS,
  where it can be filed under the right patient.

Segments are numbered 1..N in increasing label value (DICOM wants consecutive numbers); their
labels and colours come from the class table.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np

from .. import extras
from ..errors import InputError
from ..volume import LabelClass, Volume, check_labels, generic_classes
from . import itk_image, nifti
from .atomic import atomic_write, check_output
from .dicom import DicomSeries, dicom_source
from .itk_image import IDENTITY_ORNT, LPS_TO_RAS
from .label_table import write_label_table

#: Output suffixes :func:`save_segmentation` understands.
SEGMENTATION_SUFFIXES = nifti.NIFTI_SUFFIXES + itk_image.ITK_WRITE_SUFFIXES + (".dcm",)
#: Type 2 patient and study attributes (present, possibly empty) that highdicom copies from the first
#: source image into the SEG; some exporters leave them out (anonymisers drop the birth date).
TYPE2_COPIED = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                "StudyDate", "StudyTime")


def save_segmentation(labels: np.ndarray, volume: Volume, path: str | os.PathLike, *,
                      classes: tuple[LabelClass, ...] | None = None, algorithm: str | None = None) -> Path:
    """Write a label map, in the format its suffix names, atomically; a NIfTI, NRRD or MetaImage file
    gets the names and colours of its classes beside it (``seg.nii.gz`` -> ``seg.tsv``, BIDS;
    :func:`rfmweb.io.label_table.write_label_table`), which loading it with ``--labels`` reads back.

    Args:
        labels: ``[X, Y, Z]`` integer label map on ``volume``'s grid (0 = background).
        volume: the image the labels were drawn on (its grid; for ``.dcm`` its DICOM source). A
            volume read from a NIfTI file gets its label map in that file's voxel order and matrix
            (:class:`rfmweb.io.nifti.StoredGrid`), whatever order the viewer holds it in.
        path: ``.nii``/``.nii.gz`` (NIfTI), ``.nrrd``/``.mha`` (SimpleITK) or ``.dcm`` (DICOM SEG,
            see the module docstring).
        classes: names and colours of the label values; default ``volume.classes``, and a generic
            class for any value they do not describe.
        algorithm: the program that produced ``labels`` (its segments are then AUTOMATIC), or
            ``None`` for a drawn or corrected segmentation (MANUAL).

    Returns:
        The path written.

    Raises:
        InputError: unknown suffix, labels not on the grid, or a grid DICOM cannot store.
    """
    path = Path(path)
    try:
        labels = check_labels(labels, volume.shape)
    except InputError as exc:
        raise InputError(exc.reason, path) from None
    name = path.name.lower()
    stored = labels.astype(np.uint8 if labels.max(initial=0) < 256 else np.uint16)
    if name.endswith(nifti.NIFTI_SUFFIXES + itk_image.ITK_WRITE_SUFFIXES):
        writer = nifti if name.endswith(nifti.NIFTI_SUFFIXES) else itk_image
        grid, affine = volume.source, volume.affine
        if isinstance(grid, nifti.StoredGrid) and nifti.same_grid(grid.ras_affine, volume.affine):
            stored, affine = grid.restore(stored), grid.affine     # the voxel order of the image read
        written = writer.save_array(path, stored, affine)
        write_label_table(path, tuple(_segment_classes(labels, classes or volume.classes)))
        return written
    if name.endswith(".dcm"):
        return _save_dicom_seg(labels, volume, path, classes or volume.classes, algorithm)
    raise InputError(f"a segmentation is written as {', '.join(SEGMENTATION_SUFFIXES)}; got "
                     f"{path.suffix or 'no suffix'}", path)


def _save_dicom_seg(labels: np.ndarray, volume: Volume, path: Path, classes: tuple[LabelClass, ...],
                    algorithm: str | None) -> Path:
    """The ``.dcm`` branch of :func:`save_segmentation` (the module docstring says what is referenced)."""
    extras.require("dicom_seg")     # without highdicom: what to install, not a bare ModuleNotFoundError
    import highdicom as hd

    from .. import __version__

    table = _segment_classes(labels, classes)
    if not table:
        raise InputError("nothing to write: the label map is all background and no classes are given", path)
    source, further, images, images_tmp = dicom_source(volume), [], None, None
    if source is None:
        check_output(path).parent.mkdir(parents=True, exist_ok=True)    # as a NIfTI's (a traceback, after segmenting)
        images = path.with_name(path.name[:-4] + "_images")
        series, images_tmp = _write_series(volume, images)
        source, further = series[0], [ds for s in series[1:] for ds in s.datasets]
    try:
        numbers = np.zeros(max(int(labels.max()), table[-1].index) + 1, np.uint16)   # label value -> segment
        numbers[[c.index for c in table]] = np.arange(1, len(table) + 1)
        frames = numbers[source.to_frames(labels)]                             # [slices, rows, columns]
        if algorithm is None:
            kind, identification = "MANUAL", None
        else:
            kind = "AUTOMATIC"
            identification = hd.AlgorithmIdentificationSequence(
                name=algorithm, family=_codes().DCM.ArtificialIntelligence, version=__version__)
        descriptions = [hd.seg.SegmentDescription(
            segment_number=i + 1, segment_label=c.name, segmented_property_category=_category(c)[0],
            segmented_property_type=_category(c)[1], algorithm_type=kind, algorithm_identification=identification,
            display_color=hd.color.CIELabColor.from_rgb(*(255 * np.clip(c.color, 0, 1))))
            for i, c in enumerate(table)]
        first = copy.deepcopy(source.datasets[0])      # a header: the volume's own source stays as read
        for keyword in TYPE2_COPIED:
            if keyword not in first:
                setattr(first, keyword, "")
        if "StudyInstanceUID" not in first:
            raise InputError("the DICOM series has no StudyInstanceUID: a SEG cannot join its study", path)
        seg = hd.seg.Segmentation(
            source_images=[first, *source.datasets[1:]], pixel_array=frames, segmentation_type="BINARY",
            segment_descriptions=descriptions, series_instance_uid=hd.UID(),
            series_number=int(first.get("SeriesNumber") or 0) + 1000, sop_instance_uid=hd.UID(), instance_number=1,
            manufacturer="rfmweb", manufacturer_model_name="rfmweb", software_versions=__version__,
            device_serial_number="none", content_label="SEGMENTATION",
            content_description=f"{algorithm or 'rfmweb'} segmentation"[:64], omit_empty_frames=bool(frames.any()),
            further_source_images=further or None)
        if images_tmp is not None:
            _replace_folder(images_tmp, images)
    except BaseException:
        if images_tmp is not None:
            shutil.rmtree(images_tmp, ignore_errors=True)
        raise
    return atomic_write(path, lambda tmp: seg.save_as(tmp, enforce_file_format=True))


def _segment_classes(labels: np.ndarray, classes: tuple[LabelClass, ...]) -> list[LabelClass]:
    """The non-background classes of ``classes`` plus a generic one per undescribed value, by value."""
    known = {c.index: c for c in classes if c.index != 0}
    for c in generic_classes(labels):
        if c.index != 0:
            known.setdefault(c.index, c)
    return [known[i] for i in sorted(known)]


def _codes():
    from pydicom.sr.codedict import codes

    return codes


#: SNOMED CT types of the BraTS tumour sub-regions that are not neoplasm themselves (ET stays Neoplasm).
BRATS_PROPERTY_TYPES = {"NCR": "Necrosis", "ED": "Edema"}


def _category(c: LabelClass):
    """(segmented property category, type) codes for a class, from its group (and a BraTS name:
    edema coded as "Neoplasm" misled PACS and 3D Slicer)."""
    sct = _codes().SCT
    if c.group == "tumour" and c.name in BRATS_PROPERTY_TYPES:
        return sct.MorphologicallyAbnormalStructure, getattr(sct, BRATS_PROPERTY_TYPES[c.name])
    return {"tumour": (sct.MorphologicallyAbnormalStructure, sct.Neoplasm),
            "skeleton": (sct.AnatomicalStructure, sct.Bone),
            "organs": (sct.AnatomicalStructure, sct.Organ),
            "vessels": (sct.AnatomicalStructure, sct.BloodVessel)}.get(c.group, (sct.Tissue, sct.Tissue))


def _write_series(volume: Volume, folder: Path) -> tuple[list[DicomSeries], Path]:
    """Write each channel of ``volume`` as a DICOM series in a new temporary folder beside ``folder``.

    Slice ``k`` is the plane ``data[c, :, :, k]``, transposed so that DICOM rows run along the
    volume's second axis: ``ImageOrientationPatient`` holds the LPS directions of voxel axes 0 then 1,
    ``PixelSpacing`` their spacings (row spacing, i.e. axis 1, first), ``ImagePositionPatient`` the LPS
    position of voxel ``(0, 0, k)``.

    Returns:
        ``(one DicomSeries per channel, the temporary folder)``; move it with :func:`_replace_folder`.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid
    from pydicom.valuerep import DS

    if folder.exists() and not (folder.is_dir() and all(p.suffix == ".dcm" for p in folder.iterdir())):
        raise InputError("exists and holds other things than DICOM images; remove it or choose another output "
                         "name", folder)
    lps = LPS_TO_RAS @ volume.affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    axes = lps[:3, :3] / spacing
    if not np.allclose(axes.T @ axes, np.eye(3), atol=1e-5):
        raise InputError("the volume's voxel axes are sheared (not orthogonal); DICOM slices cannot store that grid",
                         folder)
    sop_class = CTImageStorage if volume.modality == "CT" else MRImageStorage
    study, frame_of_reference, now = generate_uid(), generate_uid(), datetime.now()
    common = {
        "SOPClassUID": sop_class, "PatientName": "", "PatientID": "", "PatientBirthDate": "", "PatientSex": "",
        "StudyInstanceUID": study, "StudyDate": now.strftime("%Y%m%d"), "StudyTime": now.strftime("%H%M%S"),
        "ReferringPhysicianName": "", "StudyID": "", "AccessionNumber": "", "Modality": volume.modality,
        "FrameOfReferenceUID": frame_of_reference, "PositionReferenceIndicator": "", "Manufacturer": "rfmweb",
        "ImageType": ["DERIVED", "SECONDARY"], "ImageOrientationPatient": [DS(v, auto_format=True) for v in
                                                                          np.r_[axes[:, 0], axes[:, 1]]],
        "PixelSpacing": [DS(spacing[1], auto_format=True), DS(spacing[0], auto_format=True)],
        "SliceThickness": DS(spacing[2], auto_format=True), "Rows": volume.shape[1], "Columns": volume.shape[0],
        "SamplesPerPixel": 1, "PhotometricInterpretation": "MONOCHROME2", "BitsAllocated": 16, "BitsStored": 16,
        "HighBit": 15, "PixelRepresentation": 1,
    }
    if volume.modality == "MR":  # MR Image module, type 1 and 2 attributes: nothing is known of the sequence
        common.update(ScanningSequence="RM", SequenceVariant="NONE", ScanOptions="", MRAcquisitionType="",
                      EchoTime="", EchoTrainLength="")
    else:
        common.update(KVP="", AcquisitionNumber="")
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        series = []
        for c, channel in enumerate(volume.channels):
            slope, intercept, stored = _to_int16(volume.data[c])
            uid, datasets = generate_uid(), []
            for k in range(volume.shape[2]):
                ds = Dataset()
                for key, value in common.items():
                    setattr(ds, key, value)
                ds.SOPInstanceUID = generate_uid()
                ds.file_meta = FileMetaDataset()
                ds.file_meta.MediaStorageSOPClassUID = sop_class
                ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
                ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
                ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = uid, c + 1, channel
                ds.InstanceNumber = k + 1
                ds.ImagePositionPatient = [DS(v, auto_format=True) for v in (lps @ [0.0, 0.0, k, 1.0])[:3]]
                ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
                ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
                ds.save_as(tmp / f"s{c + 1}_{k + 1:04d}.dcm", enforce_file_format=True)
                del ds.PixelData
                datasets.append(ds)
            series.append(DicomSeries(uid, tuple(datasets), IDENTITY_ORNT))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return series, tmp


def _to_int16(data: np.ndarray) -> tuple[object, object, np.ndarray]:
    """``data [X, Y, Z]`` -> ``(RescaleSlope, RescaleIntercept, int16 stored values)``: integral values
    that fit (CT in HU) are kept exactly; others are mapped linearly onto the full int16 range."""
    from pydicom.valuerep import DS

    lo, hi = float(data.min()), float(data.max())
    if lo >= -32768 and hi <= 32767 and np.array_equal(data, np.round(data)):
        return DS(1), DS(0), data.astype(np.int16)
    slope = DS((hi - lo) / 65535 or 1.0, auto_format=True)
    intercept = DS(lo + 32768 * float(slope), auto_format=True)
    stored = np.clip(np.round((data - float(intercept)) / float(slope)), -32768, 32767).astype(np.int16)
    return slope, intercept, stored


def _replace_folder(tmp: Path, folder: Path) -> None:
    """Move the finished ``tmp`` folder to ``folder``, replacing an earlier one."""
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
