"""One exception root for all of Earmark, and what each kind of failure means for a process.

Every error Earmark raises on purpose is an `EarmarkError`. Each carries the exit code a
command ends with when it escapes, mapped at one place per CLI (`exit_code_for`):

- `UsageError` (exit 2): a configuration, a flag, a file or a set-up a person must fix.
  Restarting cannot help, so the systemd units do not restart on it
  (`RestartPreventExitStatus=2`).
- `TransientError` (exit 75, EX_TEMPFAIL): the environment is not ready yet and may become
  so by itself: a broker or database not reachable, a microphone not yet enumerated, a port
  still in use. The units restart on it, with backoff.
- anything else (exit 1): the command ran and its answer is "no" (a check failed, a clip
  was rejected), or a refusal that needs a person to look (an export that aborted).

Subclasses also inherit the standard type they resemble (`ConfigError` is a `ValueError`),
so callers that know only the standard library still catch them.
"""

from __future__ import annotations

import errno

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TEMPFAIL = 75  # sysexits.h EX_TEMPFAIL: try again later


class EarmarkError(Exception):
    """The root of every error Earmark raises on purpose; its message is one line for a person."""

    exit_code = EXIT_FAILED


class UsageError(EarmarkError):
    """Something a person must fix (config, flags, files, set-up); retrying will not help."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError, ValueError):
    """A configuration value or flag that is wrong; the message names the key (`key`, the
    setting's dotted path, when one setting's value is at fault; `why`, what is wrong with it)."""

    def __init__(self, message: str, key: str | None = None, why: str | None = None) -> None:
        super().__init__(message)
        self.key, self.why = key, why


class TransientError(EarmarkError):
    """The environment is not ready (yet): worth retrying or restarting later."""

    exit_code = EXIT_TEMPFAIL


# OSErrors that say a named path is wrong: a person must fix the path or its permissions.
_USAGE_ERRNOS = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EROFS,
                 errno.ENAMETOOLONG, errno.ELOOP}


def from_os_error(exc: OSError, doing: str) -> EarmarkError:
    """An OSError that escaped while `doing` something, as the Earmark error it amounts to:
    a bad path or permission is a UsageError; anything else (disk full, address in use,
    connection refused) may pass, so it is a TransientError."""
    where = f" {exc.filename}" if exc.filename else ""
    message = f"{doing}:{where} {exc.strerror or exc}"
    if exc.errno in _USAGE_ERRNOS:
        return UsageError(message)
    return TransientError(message)


def exit_code_for(exc: BaseException, doing: str = "failed") -> tuple[int, str]:
    """(exit code, one-line message) for an exception that reached a CLI's top level, or
    re-raises it if it is a bug (a traceback is for bugs)."""
    if isinstance(exc, OSError) and not isinstance(exc, EarmarkError):
        exc = from_os_error(exc, doing)
    if isinstance(exc, EarmarkError):
        text = str(exc).strip().splitlines()
        return exc.exit_code, text[0] if text else exc.__class__.__name__
    raise exc
