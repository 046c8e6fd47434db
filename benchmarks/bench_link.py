"""A view at rest over a slow link: what its converging frames cost the link, and how long a new
drag's first frame waits behind them.

Usage::

    .venv/bin/python benchmarks/bench_link.py [VOLUME] [--size 512] [--mbit 0.5,2,20] [--rtt-ms 100]

A simulated link, one way and first in first out: a frame of B bytes is on screen B * 8 / bandwidth +
RTT / 2 after the link is free for it, and its acknowledgement is back RTT / 2 later. The frames are
real: :class:`~rfmweb.session.FrameStream` renders them on this CPU (the compiled ray-marcher,
CT-Bone; the head CT by default). Per link the table gives the frames and kB sent while the view
converges, the seconds until the converged frame is on screen, and how long a drag begun 1 s into the
rest waits for its first frame on screen.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAD_CT = REPO.parent / "shared" / "data" / "head_ct" / "ct.nii.gz"
sys.path.insert(0, str(REPO))

from rfmweb.io import load_volume  # noqa: E402
from rfmweb.session import FrameStream, RenderSession  # noqa: E402
from rfmweb.session.stream import CONVERGE_FRAMES  # noqa: E402

log = logging.getLogger("bench_link")


class Link:
    """A one-way link of ``mbit`` Mbit/s and ``rtt_s`` round trip, acknowledging each frame shown."""

    def __init__(self, mbit: float, rtt_s: float) -> None:
        self.bytes_per_s = mbit * 1e6 / 8
        self.rtt_s = rtt_s
        self.free_at = 0.0
        self.lock = threading.Lock()
        self.sent: list = []      # frames, as sent
        self.shown: list = []     # (time on screen, frame)
        self.stream: FrameStream | None = None

    def __call__(self, frame) -> None:
        now = time.monotonic()
        with self.lock:
            done = max(now, self.free_at) + len(frame.data) / self.bytes_per_s
            self.free_at = done
            self.sent.append(frame)
        on_screen = done + self.rtt_s / 2
        threading.Timer(on_screen - now, self._show, (on_screen, frame)).start()
        threading.Timer(on_screen + self.rtt_s / 2 - now, lambda: self.stream.ack(frame.id)).start()

    def _show(self, at: float, frame) -> None:
        with self.lock:
            self.shown.append((at, frame))


def wait(cond, timeout: float = 300.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError("the stream did not get there")
        time.sleep(0.005)


def run(volume, size: int, mbit: float, rtt_s: float) -> tuple[int, float, float, float]:
    """``(frames, kB, s to converged on screen, s a drag's first frame waited)`` on one link."""
    session = RenderSession(volume, renderer="compiled", preset="CT-Bone", width=size, height=size)
    session.render()    # the kernels compile and the renderer sets up outside the measurement
    link = Link(mbit, rtt_s)
    stream = link.stream = FrameStream(session, link, ack_timeout=60.0)
    try:
        stream.request()
        wait(lambda: any(f.spp == CONVERGE_FRAMES for _, f in link.shown))   # the first view, settled
        time.sleep(0.5)
        with link.lock:
            link.sent.clear()
        t0 = time.monotonic()
        session.orbit(5, 0)
        version = session.version
        wait(lambda: any(f.spp == CONVERGE_FRAMES and f.version == version for _, f in link.shown))
        converged = next(t for t, f in link.shown if f.spp == CONVERGE_FRAMES and f.version == version) - t0
        with link.lock:
            frames, kb = len(link.sent), sum(len(f.data) for f in link.sent) / 1e3
        session.orbit(5, 0)
        time.sleep(1.0)
        t1 = time.monotonic()
        session.orbit(5, 0)                       # a drag begins while the view converges
        version = session.version
        wait(lambda: any(f.version == version for _, f in link.shown))
        first = min(t for t, f in link.shown if f.version == version) - t1
    finally:
        stream.close()
        session.close()
    return frames, kb, converged, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("volume", nargs="?", default=str(HEAD_CT))
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--mbit", default="0.5,2,20", help="link speeds, Mbit/s, comma-separated")
    parser.add_argument("--rtt-ms", type=float, default=100.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    volume = load_volume(args.volume)
    print(f"{platform.processor() or platform.machine()}; {Path(args.volume).name}, {args.size}^2, "
          f"compiled ray-marcher, CT-Bone, RTT {args.rtt_ms:.0f} ms\n")
    print("| link | frames sent at rest | kB sent | converged frame on screen | a drag's first frame waits |")
    print("|---|---|---|---|---|")
    for mbit in (float(m) for m in args.mbit.split(",")):
        frames, kb, converged, first = run(volume, args.size, mbit, args.rtt_ms / 1e3)
        print(f"| {mbit:g} Mbit/s | {frames} | {kb:.0f} | {converged:.1f} s | {first * 1e3:.0f} ms |", flush=True)


if __name__ == "__main__":
    main()
