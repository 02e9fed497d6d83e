"""One `error:` line, exit status 2, for every user error of a command-line entry point.

A bad argument, a missing or damaged file or an unusable checkpoint is the user's to fix, so the CLI prints
what is wrong and how to fix it, without a traceback. ``--debug`` (anywhere on the command line) or
``NRL_DEBUG=1`` re-raises instead, for the traceback. Imports nothing heavy.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["USER_ERRORS", "ConfigError", "debug_requested", "one_line", "run_cli"]



class ConfigError(ValueError):
    """A bad config key or value, with the fix in the message."""


USAGE_EXIT = 2  # the convention of argparse and of our train/evaluate CLIs
# ConfigError, DataSourceError and SweepError are ValueErrors; missing paths are FileNotFoundError.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
                                               PermissionError)


def debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("NRL_DEBUG", "").lower() in ("1", "true", "yes")


def one_line(e: BaseException) -> str:
    """The message on one line (multi-line messages joined with '; ')."""
    parts = [p.strip() for p in str(e).splitlines() if p.strip()]
    return "; ".join(parts) or type(e).__name__


def run_cli(main: Callable[[list[str]], Any], argv: list[str] | None = None,
            user_errors: tuple[type[BaseException], ...] = USER_ERRORS) -> Any:
    """``main(argv)`` with user errors turned into one ``error:`` line and exit status 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = debug_requested(argv)
    argv = [a for a in argv if a != "--debug"]
    try:
        return main(argv)
    except user_errors as e:
        if debug:
            raise
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(USAGE_EXIT)
