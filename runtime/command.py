"""How both command lines run a parsed command: logging set up once, then the command, with
every error turned into one line on stderr and its exit code (earmark.wire.errors).

Logs go to stderr in one of three shapes (`--log-format`, or $EARMARK_LOG_FORMAT):
  text     2026-11-23T13:55:01.123Z WARNING <logger name>: message
  journal  <4><logger name>: message   (journald's priority prefix; it adds the time)
  json     {"ts": "...", "level": "warning", "logger": "...", "msg": "..."}
`auto` (the default) is journal when stderr is journald's stream (systemd sets
$JOURNAL_STREAM), else text, so `journalctl -p warning` finds the warnings.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from earmark.wire.errors import UsageError, exit_code_for

LOG_FORMATS = ("auto", "text", "journal", "json")
EXIT_BROKEN_PIPE = 141  # what a shell reports for a writer killed by SIGPIPE (`| head`)
# syslog priorities, as journald reads them from a "<N>" prefix
PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


def _stamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{_stamp(record)} {record.levelname} {record.name}: {record.getMessage()}" + _exc(self, record)


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        priority = PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        return f"<{priority}>{record.name}: {record.getMessage()}" + _exc(self, record).replace("\n", " | ")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": _stamp(record), "level": record.levelname.lower(), "logger": record.name,
                 "msg": record.getMessage()}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _exc(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    return "\n" + formatter.formatException(record.exc_info) if record.exc_info else ""


def under_journald() -> bool:
    """Whether stderr is the journal stream systemd named in $JOURNAL_STREAM ("dev:inode")."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return bool(stream) and stream == f"{st.st_dev}:{st.st_ino}"


def setup_logging(log_format: str = "auto", verbose: bool = False) -> None:
    chosen = log_format if log_format != "auto" else ("journal" if under_journald() else "text")
    formatter = {"text": TextFormatter, "journal": JournalFormatter, "json": JsonFormatter}[chosen]()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("pika", "urllib3"):  # libraries' own INFO chatter is not the operator's business
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # pika logs each failed connection attempt (each node of a cluster, with a traceback), which
    # the AMQP source's own line, with the reason, already says once
    logging.getLogger("pika").setLevel(logging.DEBUG if verbose else logging.CRITICAL)


def add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Options every command takes, before or after the command's name: on the top-level
    parser with their defaults, on each subcommand with none, so either place works."""
    suppress: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    parser.add_argument("--json", action="store_true", help="machine-readable output (errors too)", **suppress)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail", **suppress)
    parser.add_argument("--log-format", choices=LOG_FORMATS,
                        help="text, journal (<N> priority prefixes) or json lines; auto: journal under "
                             "systemd, else text (default: $EARMARK_LOG_FORMAT or auto)", **suppress)


def run_command(prog: str, args: argparse.Namespace,
                translate: Callable[[Exception], Exception] = lambda exc: exc) -> int:
    """Run `args.handler(args)`; `translate` maps a library's own errors to Earmark's first."""
    log_format = getattr(args, "log_format", None) or os.environ.get("EARMARK_LOG_FORMAT", "auto")
    setup_logging(log_format if log_format in LOG_FORMATS else "auto", bool(getattr(args, "verbose", False)))
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except BrokenPipeError:
        # The reader went away (`clips list | head`): nothing more to say, and nobody to say it to.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # the one place errors become exit codes
        code, message = exit_code_for(translate(exc), f"{prog} {args.command}")
        if getattr(args, "json", False):
            print(json.dumps({"error": message, "exit_code": code, "kind": _kind(code)}), file=sys.stderr)
        else:
            print(f"{prog}: error: {message}", file=sys.stderr)
        return code


def _kind(code: int) -> str:
    return {2: "usage", 75: "temporary"}.get(code, "refused")


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
