"""`earmark-cloud`: the command line over the cloud library (parser in main.py, one function
per command in commands.py)."""

from earmark.cloud.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
