"""Run one sub-command module on its own (``python -m rfmweb.commands.train_inr ...``).

Behaves like :func:`rfmweb.cli.main` for that one command: bad input ends with one line on stderr
and exit status 2. Needed by ``torchrun -m rfmweb.commands.train_inr`` and usable before a command
is registered in :data:`rfmweb.cli.COMMANDS`.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..errors import InputError


def run_standalone(add_parser, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rfmweb")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = list(sub.choices)
    if not argv or argv[0] not in commands:       # the module names its command: make it optional
        argv = commands[:1] + argv
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        args.run(args)
    except InputError as exc:
        sys.stderr.write(f"rfmweb: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
