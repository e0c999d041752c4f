"""Subcommands of ``auxtelwep``: one module each, with ``register(subparsers)``."""
