"""``rfmweb serve``: the command line of the web app.

    rfmweb serve [VOLUME] [--labels L] [--host H] [--port P] [--auth-key-file F] [--renderer R] [--preset P]
                 [--allow-host NAME] [--shared | --max-sessions N] [--reconnect-s S] [--certfile F --keyfile F]
    rfmweb serve CASE_DIR --segment [--model CKPT]    # ground truth | raw INR | denoised INR

VOLUME is a NIfTI file, a BraTS case folder or ``sample:NAME``; without it, the bundled CT phantom.
The auth key comes from ``--auth-key``, ``--auth-key-file`` or ``$RFMWEB_AUTH_KEY`` (the last two keep
it out of ``ps``).
Bad input prints one line (the file and the reason) to stderr and exits with status 2, without a
traceback.

:func:`add_parser` adds the sub-command to ``rfmweb``'s parser (see :mod:`rfmweb.cli`);
:func:`run_serve` runs it and returns the exit status.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys

from ..commands._options import add_series_option
from ..errors import InputError
from .security import KEY_ENV, resolve_auth_key

log = logging.getLogger(__name__)


#: Its line in ``rfmweb --help``.
HELP = "serve the web viewer of a volume"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``serve`` sub-command to ``subparsers`` (from ``ArgumentParser.add_subparsers()``)."""
    p = subparsers.add_parser(
        "serve", help=HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve a volume in a browser viewer (trame). Frames are rendered here and streamed.",
        epilog=f"""sessions:
  every browser tab gets its own viewer (camera, presets, classes, corrections), run in its own
  process; it waits --reconnect-s (60 s) for its tab after the connection drops (the page
  reconnects by itself, keeping the view and annotations), then ends, freeing its place;
  --max-sessions bounds how many run at once.
  --shared: one viewer for every tab (teaching): the first tab to connect drives, the others
  follow (when it leaves, the next oldest drives).

security:
  Host and Origin are checked on every request (no DNS rebinding, no cross-site websocket).
  Without a loopback --host an auth key is required: --auth-key K, --auth-key-file F (first line)
  or ${KEY_ENV} (the last two keep the key out of `ps`; 16+ characters). Open http://HOST:PORT/
  and type the key into its form, or open http://HOST:PORT/?secret=K (kept in the browser's
  history): the server sets an HttpOnly cookie (12 hours, or until it restarts) and redirects to
  the URL without the key; scripts may send 'Authorization: Bearer K'. The key is never logged; on
  a terminal the URL with the key is printed to stderr. 10 wrong keys from one address within a
  minute: refused (429) for that minute, except in a browser already signed in.

https:
  --certfile F --keyfile F (PEM; the key unencrypted): serve https:// and wss:// (TLS 1.2 or later);
  the key's cookie is then Secure. Viewer sessions stay on loopback plain HTTP behind this server.
  Or keep rfmweb on 127.0.0.1 behind a reverse proxy that terminates TLS (nginx, Caddy): pass the
  proxy's public name with --allow-host NAME, have it forward websockets (Upgrade/Connection
  headers, read timeout of an hour or more) and send X-Forwarded-Proto: https (trusted only from a
  proxy on this machine: the cookie is then Secure) and X-Forwarded-For (the wrong-key limit counts
  the address it appends: without it, clients choose their own); keep an auth key; serve it at the
  root path of its own host name (no sub-path). nginx (its log without the query: ?secret=KEY; its
  error log still records a failed request's line, with the key: keep it private, or use the form):
    log_format rfmweb '$remote_addr [$time_local] "$request_method $uri" $status';   # in http {{ }}
    location / {{ proxy_pass http://127.0.0.1:8080; proxy_http_version 1.1;
                 proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade";
                 proxy_set_header Host $host; proxy_set_header X-Forwarded-Proto $scheme;
                 proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
                 proxy_read_timeout 3600s; access_log /var/log/nginx/rfmweb.log rfmweb; }}""")
    p.add_argument("volume", nargs="?", default=None, metavar="VOLUME",
                   help="a .nii/.nii.gz/.nrrd/.mha file, a DICOM series folder or .zip, a BraTS case folder, "
                        "sample:NAME or a splat .npz / 6D .ply (default: the bundled CT phantom)")
    p.add_argument("--labels", default=None, metavar="L", help="label map on the same grid as VOLUME")
    add_series_option(p)
    p.add_argument("--splats", default=None, metavar="S",
                   help="splat .npz / 6D .ply of the same anatomy (from fit-6dgs, prepare), shown by the "
                        "splats renderer")
    p.add_argument("--host", default="127.0.0.1", metavar="H",
                   help="interface to listen on (default 127.0.0.1; anything else needs --auth-key)")
    p.add_argument("--port", type=int, default=8080, metavar="P", help="TCP port (default 8080; 0: any free port)")
    p.add_argument("--auth-key", default=None, metavar="K",
                   help=f"secret the browser must present: open http://HOST:PORT/?secret=K once "
                        f"(visible in `ps`: prefer --auth-key-file or ${KEY_ENV})")
    p.add_argument("--auth-key-file", default=None, metavar="F", help="read the auth key from the first line of F")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer to Host NAME (a reverse proxy's name); repeatable")
    p.add_argument("--shared", action="store_true",
                   help="one viewer state for every tab (teaching) instead of a session per tab")
    p.add_argument("--max-sessions", type=int, default=4, metavar="N",
                   help="most viewer sessions (tabs) at once, each a process (default 4)")
    p.add_argument("--reconnect-s", type=float, default=60.0, metavar="S",
                   help="seconds a session waits for its tab after the connection drops (Wi-Fi, a sleeping "
                        "tablet): the page reconnects by itself within them and keeps the view and annotations; "
                        "a closed tab's place frees after them (default 60)")
    p.add_argument("--certfile", default=None, metavar="F",
                   help="PEM certificate (chain) for https:// (with --keyfile)")
    p.add_argument("--keyfile", default=None, metavar="F", help="PEM private key of --certfile (unencrypted)")
    p.add_argument("--renderer", default=None, metavar="R", help="initial renderer of the main view (e.g. compiled, vtk, renderfm)")
    p.add_argument("--preset", default=None, metavar="P", help="initial transfer-function preset (e.g. CT-Bone)")
    p.add_argument("--open", action="store_true", help="open the system browser")
    p.add_argument("--segment", action="store_true",
                   help="VOLUME is a BraTS case folder: show ground truth | raw INR | denoised INR side by side, "
                        "with Dice and correction tools")
    p.add_argument("--scene", default=None, metavar="JSON",
                   help="start every viewer from a scene file (the viewer's 'Save scene': preset, classes, camera, "
                        "slices, annotations), e.g. one a teacher handed out")
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
        auth_key = resolve_auth_key(args.auth_key, getattr(args, "auth_key_file", None))
        if args.port:                   # a taken port is said before the volume loads (seconds to minutes)
            socket.create_server((args.host, args.port)).close()
        serve(args.volume, labels=args.labels, splats=args.splats, host=args.host, port=args.port, auth_key=auth_key,
              open_browser=bool(getattr(args, "open", False)), renderer=args.renderer, preset=args.preset,
              segment=bool(getattr(args, "segment", False)), model=getattr(args, "model", None),
              allow_hosts=tuple(getattr(args, "allow_host", ())), shared=bool(getattr(args, "shared", False)),
              max_sessions=getattr(args, "max_sessions", 4), series=getattr(args, "series", None),
              scene=getattr(args, "scene", None), reconnect_s=getattr(args, "reconnect_s", 60.0),
              certfile=getattr(args, "certfile", None), keyfile=getattr(args, "keyfile", None))
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
