"""The ``rfmweb`` command line: one sub-command per module in :data:`COMMANDS`.

Each module has ``add_parser(subparsers)``, whose parser sets ``run=callable(args)``. Bad input
ends with one line on stderr naming the file and the reason, exit status 2, and no output file;
a bug still shows its traceback. So does a feature whose optional package is not installed: the line
says what to install (:mod:`rfmweb.extras`), whether the command checked first
(:func:`rfmweb.extras.require`) or met the missing import on its way.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .errors import InputError
from .extras import missing_from

#: Sub-command modules, in the order ``rfmweb --help`` lists them.
COMMANDS = (
    "rfmweb.app.cli",
    "rfmweb.commands.render",
    "rfmweb.commands.samples",
    "rfmweb.commands.export_ply",
    "rfmweb.commands.views",
    "rfmweb.commands.fit_6dgs",
    "rfmweb.commands.evaluate_splats",
    "rfmweb.commands.finetune",
    "rfmweb.commands.prepare",
    "rfmweb.commands.train_renderfm",
    "rfmweb.commands.evaluate_renderfm",
    "rfmweb.commands.make_cohort",
    "rfmweb.commands.train_inr",
    "rfmweb.commands.segment",
    "rfmweb.commands.train_cnn",
    "rfmweb.commands.evaluate_inr",
)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, as every other error is."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rfmweb", description="Neural volume rendering of CT and MRI in the browser.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        args.run(args)
    except InputError as exc:
        sys.stderr.write(f"rfmweb: error: {exc}\n")
        return 2
    except ModuleNotFoundError as exc:
        missing = missing_from(exc)
        if missing is None:
            raise
        sys.stderr.write(f"rfmweb: error: {missing}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
