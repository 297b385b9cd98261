"""How both command lines run a parsed command: logging set up once, then the command, with
every error turned into one line on stderr and its exit code (earmark.wire.errors)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from earmark.wire.errors import UsageError, exit_code_for


def run_command(prog: str, args: argparse.Namespace,
                translate: Callable[[Exception], Exception] = lambda exc: exc) -> int:
    """Run `args.handler(args)`; `translate` maps a library's own errors to Earmark's first."""
    logging.basicConfig(level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except Exception as exc:  # the one place errors become exit codes
        code, message = exit_code_for(translate(exc), f"{prog} {args.command}")
        print(f"{prog}: error: {message}", file=sys.stderr)
        return code


def version() -> str:
    """The installed distribution's version (`--version` on both command lines)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("earmark")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown"


def confirmed(yes: bool, what: str, question: str, word: str) -> bool:
    """Whether a step that cannot be undone may go ahead: `--yes`, or a person at a terminal
    typed `word` in answer to `question`. Off a terminal without `--yes` it is a UsageError, so
    a script never hangs on a prompt nor goes ahead by accident. `what` names the step."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError(f"{what}: confirm on a terminal, or pass --yes")
    if input(f"{question} Type {word!r} to confirm: ").strip() == word:
        return True
    print("nothing done")
    return False
