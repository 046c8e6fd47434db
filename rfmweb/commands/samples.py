"""``rfmweb samples``: list the bundled sample volumes."""

from __future__ import annotations

import sys


#: Its line in ``rfmweb --help``.
HELP = "list the bundled sample volumes (use them as sample:NAME)"


def add_parser(sub) -> None:
    p = sub.add_parser("samples", help=HELP)
    p.set_defaults(run=_run_samples)


def _run_samples(args) -> None:
    from .. import samples
    for name in samples.list_samples():
        sys.stdout.write(f"sample:{name:<14} {samples.SAMPLES[name]}\n")
