"""One module per ``rfmweb`` sub-command, each with ``add_parser(subparsers)``."""
