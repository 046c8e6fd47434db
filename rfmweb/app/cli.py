"""``rfmweb serve``: the command line of the web app.

    rfmweb serve [VOLUME] [--labels L] [--host H] [--port P] [--auth-key K] [--renderer R] [--preset P]
    rfmweb serve CASE_DIR --segment [--model CKPT]    # ground truth | raw INR | denoised INR

VOLUME is a NIfTI file, a BraTS case folder or ``sample:NAME``; without it, the bundled CT phantom.
Bad input prints one line (the file and the reason) to stderr and exits with status 2, without a
traceback.

:func:`add_parser` adds the sub-command to ``rfmweb``'s parser (see :mod:`rfmweb.cli`);
:func:`run_serve` runs it and returns the exit status.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..errors import InputError

log = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``serve`` sub-command to ``subparsers`` (from ``ArgumentParser.add_subparsers()``)."""
    p = subparsers.add_parser(
        "serve", help="serve the web viewer of a volume",
        description="Serve a volume in a browser viewer (trame). Frames are rendered here and streamed.")
    p.add_argument("volume", nargs="?", default=None, metavar="VOLUME",
                   help="a NIfTI file (.nii, .nii.gz), a BraTS case folder, sample:NAME or a splat .npz "
                        "(default: the bundled CT phantom)")
    p.add_argument("--labels", default=None, metavar="L", help="label map NIfTI on the same grid as VOLUME")
    p.add_argument("--splats", default=None, metavar="S",
                   help="splat .npz of the same anatomy (from fit-6dgs), shown by the splats renderer")
    p.add_argument("--host", default="127.0.0.1", metavar="H",
                   help="interface to listen on (default 127.0.0.1; anything else needs --auth-key)")
    p.add_argument("--port", type=int, default=8080, metavar="P", help="TCP port (default 8080; 0: any free port)")
    p.add_argument("--auth-key", default=None, metavar="K",
                   help="secret the browser must present: open http://HOST:PORT/?secret=K")
    p.add_argument("--renderer", default=None, metavar="R", help="initial renderer of the main view (e.g. compiled, vtk, renderfm)")
    p.add_argument("--preset", default=None, metavar="P", help="initial transfer-function preset (e.g. CT-Bone)")
    p.add_argument("--open", action="store_true", help="open the system browser")
    p.add_argument("--segment", action="store_true",
                   help="VOLUME is a BraTS case folder: show ground truth | raw INR | denoised INR side by side, "
                        "with Dice and correction tools")
    p.add_argument("--model", default=None, metavar="CKPT",
                   help="INR checkpoint for --segment (default: the shipped Neumours weights)")
    p.set_defaults(run=_run_or_exit)
    return p


def run_serve(args: argparse.Namespace) -> int:
    """Run ``rfmweb serve`` with parsed ``args``; returns the exit status (2 on bad input)."""
    from .server import serve

    pkg = logging.getLogger("rfmweb")  # our messages (the URL to open); trame's stay at their defaults
    if not pkg.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        pkg.addHandler(handler)
        pkg.setLevel(logging.INFO)
    try:
        serve(args.volume, labels=args.labels, splats=args.splats, host=args.host, port=args.port, auth_key=args.auth_key,
              open_browser=bool(getattr(args, "open", False)), renderer=args.renderer, preset=args.preset,
              segment=bool(getattr(args, "segment", False)), model=getattr(args, "model", None))
    except InputError as exc:
        print(f"rfmweb: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the port is taken
        print(f"rfmweb: error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def _run_or_exit(args: argparse.Namespace) -> None:
    code = run_serve(args)
    if code:
        raise SystemExit(code)
