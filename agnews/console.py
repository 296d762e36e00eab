"""What every `agnews` command prints the same way: argparse's number types, the one-line
failure, the rejected-rows clause. Plain Python: `--help` imports nothing heavy."""

from __future__ import annotations

import argparse
import sys

from agnews.exit_codes import ExitCode
from components.artifacts import BLANK_LINE, rejected_counts


def fail(command: str, error: object) -> ExitCode:
    """Prints `agnews COMMAND failed: ERROR` on stderr (one line, no traceback); STOPPED."""
    print(f"agnews {command} failed: {error}", file=sys.stderr)
    return ExitCode.STOPPED


def non_negative(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError("must be a whole number of at least 0")
    return int(text)


def at_least_one(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError("must be a whole number of at least 1")
    return int(text)


def rejected_rows(rows: dict[str, int], rejected_rows_file: str | None) -> str:
    """'rejected R (reason: n, ...; see FILE)', and the blank lines skipped, of a row count."""
    rejected, blank = rejected_counts(rows), rows.get(BLANK_LINE, 0)
    return (
        f"rejected {sum(rejected.values())}"
        + (
            f" ({', '.join(f'{k}: {v}' for k, v in sorted(rejected.items()))}; "
            f"see {rejected_rows_file})"
            if rejected
            else ""
        )
        + (f"; {blank} blank line{'s' if blank != 1 else ''} skipped" if blank else "")
    )
