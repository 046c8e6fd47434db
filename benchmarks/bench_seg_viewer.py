"""Correction in the segmentation viewer: Apply -> the first corrected frame of each 3-D view.

Usage::

    .venv/bin/python benchmarks/bench_seg_viewer.py [--case DIR] [--size 320] [--threads 1] [--busy]

The views of :class:`rfmweb.session.segmentation.SegmentationViews` (ground truth | raw INR |
denoised INR, shipped INR, ray-marcher) on a post-operative cohort case (``rfmweb make-cohort
--split postop --resolution 2``; default: the first case of ``/tmp/neumours/cohort/postop``, or one
generated in a temporary folder). The raw and denoised views stream through
:class:`~rfmweb.session.stream.FrameStream` as in the front ends (frames requested as a page does
when it attaches, acknowledged at once); Apply comes once they are at rest (converged: no frame for
:data:`QUIET_S` seconds). A simulated user marks, on every other axial slice of the lower half of the tumour, the voxels the
INR got wrong with their true label; then ``apply_correction()`` (adaptive: until the marks are honoured). Prints a Markdown
table: apply seconds, and per view the time from the Apply call to the first frame of the corrected
labels (interactive quality) and to the full-quality frame. Target (issue #4): <= 2 s on a CPU.
``--busy``: Apply while the views converge, as right after painting (the marks drawn on the views
:data:`BUSY_S` seconds before); only frames of the corrected labels count.

``--drag N``: instead, the frame rate of a drag across the three linked 3-D views: N pointer moves
of 4 px, each rendering the three panels at interactive quality (``INTERACTIVE``: half resolution,
one-voxel step) one after the other, as the three frame streams share the cores. Target (issue #9):
>= 5 frames/s at 320^2 on the 2-core CPU.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from rfmweb.data.cohort import find_cases, make_cohort
from rfmweb.io import load_brats_case
from rfmweb.session.segmentation import DENOISED, RAW, TITLES, SegmentationViews
from rfmweb.render.scene import INTERACTIVE
from rfmweb.session.stream import FrameStream


#: seconds without a frame after which the views count as at rest (converged) before Apply
QUIET_S = 1.5
#: ``--busy``: seconds between drawing the marks (the views start converging again) and Apply
BUSY_S = 1.0


def simulated_marks(truth: np.ndarray, raw: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """``(voxels [M, 3], label)`` groups: wrong voxels on every other slice of the tumour's lower half."""
    z = np.nonzero((truth > 0).any(axis=(0, 1)))[0]
    picked = []
    for k in z[: len(z) // 2: 2]:
        ij = np.argwhere(truth[:, :, k] != raw[:, :, k])
        picked += [(i, j, k) for i, j in ij]
    vox = np.array(picked, dtype=np.int64).reshape(-1, 3)
    labels = truth[vox[:, 0], vox[:, 1], vox[:, 2]]
    return [(vox[labels == lab], lab) for lab in range(4) if np.any(labels == lab)]


def drag_rate(views: SegmentationViews, moves: int) -> list[float]:
    """Seconds per pointer move of a drag across the linked views (all three panels re-rendered at
    interactive quality), after one warm-up move."""
    times = []
    for i in range(moves + 1):
        t0 = time.perf_counter()
        for s in views.sessions:
            s.orbit(4.0, 0.0)
            s.render(INTERACTIVE)
        if i:
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", type=Path, default=None)
    ap.add_argument("--size", type=int, default=320, help="view width and height (px)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--drag", type=int, default=0, metavar="N", help="measure a drag of N moves instead")
    ap.add_argument("--busy", action="store_true",
                    help="Apply while the views converge (marks drawn on them BUSY_S seconds before)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tmp = None
    case = args.case
    if case is None:
        default = Path("/tmp/neumours/cohort/postop")
        if default.exists() and find_cases(default):
            case = find_cases(default)[0]
        else:
            tmp = tempfile.TemporaryDirectory()
            make_cohort(tmp.name, 1, "postop", seed=0, resolution_mm=2.0, progress=False)
            case = find_cases(tmp.name)[0]
    volume = load_brats_case(case)
    views = SegmentationViews(volume, width=args.size, height=args.size)
    views.compute()
    if args.drag:
        times = sorted(drag_rate(views, args.drag))
        med = times[len(times) // 2]
        print(f"{case.name} {volume.shape}, three views {args.size}^2 at interactive quality, "
              f"{views.sessions[0].renderer_name}, {torch.get_num_threads()} thread(s): drag {1 / med:.1f} "
              f"frames/s (median {med * 1e3:.0f} ms per move for all three, p90 "
              f"{times[int(0.9 * (len(times) - 1))] * 1e3:.0f} ms)")
        return
    frames: dict[int, list[tuple[float, str, int]]] = {RAW: [], DENOISED: []}   # (time, kind, version)
    streams: dict[int, FrameStream] = {}
    lock = threading.Lock()

    def sender(view: int):
        def send(frame) -> None:
            with lock:
                frames[view].append((time.perf_counter(), frame.kind, frame.version))
            streams[view].ack(frame.id)
        return send

    for v in (RAW, DENOISED):
        streams[v] = FrameStream(views.sessions[v], sender(v), name=f"view{v}")
        streams[v].request()    # as a front end does when its page attaches
    while True:                 # the views at rest and converged: no frame for a while
        time.sleep(0.2)
        with lock:
            last = max((t for fr in frames.values() for t, _, _ in fr), default=None)
        if last is not None and time.perf_counter() - last > QUIET_S:
            break
    marks = simulated_marks(volume.labels, views.labels(RAW))
    for vox, lab in marks:
        views.corrector.mark_voxels(vox, int(lab))
    if args.busy:               # the views draw the marks and start converging again
        for s in views.sessions:
            s.marks_changed()
        time.sleep(BUSY_S)
    t0 = time.perf_counter()
    result = views.apply_correction()
    t_apply = time.perf_counter() - t0
    shown = {v: views.sessions[v].version for v in frames}     # frames of this version on show the result
    deadline = time.perf_counter() + 60

    def corrected(v: int) -> list[tuple[float, str]]:
        with lock:
            return [(t, k) for t, k, version in frames[v] if version >= shown[v]]

    while time.perf_counter() < deadline and not all(any(k == "idle" for _, k in corrected(v)) for v in frames):
        time.sleep(0.05)
    for s in streams.values():
        s.close()
    print(f"{case.name} {volume.shape}, views {args.size}^2, ray-marcher; {platform.machine()}, "
          f"{torch.get_num_threads()} torch thread(s), torch {torch.__version__}; Apply "
          + (f"{BUSY_S:.0f} s after the marks were drawn (views converging)" if args.busy else "with the views at rest")
          + "\n")
    print(f"marked voxels: {sum(len(v) for v, _ in marks)}; apply_correction(): {t_apply:.2f} s "
          f"({result.steps} steps, {result.changed} voxels changed)\n")
    print("| view | first corrected frame (s after Apply) | its kind | full-quality frame (s after Apply) |")
    print("|---|---|---|---|")
    for v in frames:
        fr = corrected(v)
        first = fr[0] if fr else (float("nan"), "-")
        full = next((t for t, k in fr if k == "idle"), float("nan"))
        print(f"| {TITLES[v]} | {first[0] - t0:.2f} | {first[1]} | {full - t0:.2f} |")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
