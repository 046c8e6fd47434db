"""``rfmweb segment``: segment a BraTS-style case with the Neumours INR and write the labels."""

from __future__ import annotations

from pathlib import Path


#: Its line in ``rfmweb --help``.
HELP = "segment a brain-tumour MRI case (BraTS folder) with the Neumours INR"


def add_parser(sub) -> None:
    p = sub.add_parser("segment", help=HELP)
    p.add_argument("case", metavar="CASE_DIR",
                   help="a BraTS-style case folder (t1n, t1c, t2w, t2f) or sample:brain_glioma")
    p.add_argument("--out", required=True,
                   help="output label map: .nii.gz/.nii/.nrrd/.mha (0 background, 1 NCR, 2 ED, 3 ET), or .dcm for a DICOM "
                        "SEG (the case is also written as DICOM images in OUT_images/, which the SEG references)")
    p.add_argument("--denoise", action="store_true", help="drop small components and fill holes")
    p.add_argument("--resolution", type=float, metavar="MM",
                   help="output voxel size; finer than the input spacing = super-resolution (not with .dcm)")
    p.add_argument("--checkpoint", "--model", dest="checkpoint", metavar="CKPT",
                   help="model file (default: the shipped rfmweb/weights/neumours_adamw.pt; --model as in serve)")
    p.add_argument("--device", metavar="cpu|cuda", help="where the network runs (default: CUDA when available)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="auto = bf16 where the hardware has fast bf16 matmuls")
    p.set_defaults(run=_run)


def _run(args) -> None:
    from ..backend import parse_device
    from ..inr.infer import segment_case

    device = parse_device(args.device)        # a device this machine lacks: one line, exit 2
    segment_case(args.case, Path(args.out), resolution_mm=args.resolution, checkpoint=args.checkpoint,
                 denoise=args.denoise, device=str(device), precision=args.precision)
