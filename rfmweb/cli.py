"""The ``rfmweb`` command line: one sub-command per module in :data:`COMMANDS`.

Each module has ``HELP`` (its line in ``rfmweb --help``) and ``add_parser(subparsers)``, whose parser
sets ``run=callable(args)``; only the command run has its parser built (building one imports what
the command needs: torch and the renderers take seconds, and ``rfmweb --help`` took 4-7 s). Bad input
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

#: Sub-commands and their modules, in the order ``rfmweb --help`` lists them.
COMMANDS = {
    "serve": "rfmweb.app.cli",
    "render": "rfmweb.commands.render",
    "samples": "rfmweb.commands.samples",
    "export-ply": "rfmweb.commands.export_ply",
    "views": "rfmweb.commands.views",
    "fit-6dgs": "rfmweb.commands.fit_6dgs",
    "evaluate-splats": "rfmweb.commands.evaluate_splats",
    "finetune": "rfmweb.commands.finetune",
    "prepare": "rfmweb.commands.prepare",
    "train-renderfm": "rfmweb.commands.train_renderfm",
    "evaluate-renderfm": "rfmweb.commands.evaluate_renderfm",
    "make-cohort": "rfmweb.commands.make_cohort",
    "train-inr": "rfmweb.commands.train_inr",
    "segment": "rfmweb.commands.segment",
    "train-cnn": "rfmweb.commands.train_cnn",
    "evaluate-inr": "rfmweb.commands.evaluate_inr",
}


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, as every other error is."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """``rfmweb``'s parser: every sub-command listed with its ``HELP``; ``command``'s built in full
    (every one when ``None``), the others as their name and line alone."""
    parser = _Parser(prog="rfmweb", description="Neural volume rendering of CT and MRI in the browser.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        if command is None or name == command:
            module.add_parser(sub)
        else:
            sub.add_parser(name, help=module.HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), "")   # options before it: -v alone
    args = build_parser(command).parse_args(argv)
    # timestamps: a server's log goes to files and containers as well as to journald
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%Y-%m-%dT%H:%M:%S%z")
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
