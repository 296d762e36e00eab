"""What every `agnews` command prints the same way: argparse's number types, the one-line
failure, the rejected-rows clause. Plain Python: `--help` imports nothing heavy."""

from __future__ import annotations

import argparse
import sys

from agnews.exit_codes import ExitCode
from components.artifacts import BLANK_LINE, rejected_counts
from pipeline import beam_packaging, metadata_connection


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


def add_metadata_server_arguments(parser: argparse.ArgumentParser) -> None:
    """--metadata-uri and --metadata-password-file, for every command that reads or writes ML
    Metadata."""
    parser.add_argument(
        "--metadata-uri",
        metavar="mysql://USER@HOST[:PORT]/DATABASE",
        help="ML Metadata on a MySQL/MariaDB server instead of the sqlite file; the password "
        f"from ${metadata_connection.PASSWORD_VARIABLE} or --metadata-password-file.",
    )
    parser.add_argument(
        "--metadata-password-file",
        metavar="FILE",
        help="The ML Metadata server's password, on the file's first line.",
    )


def metadata_address(args: argparse.Namespace, sqlite_path: str) -> str:
    """Where the command's ML Metadata is: --metadata-uri's server, else the sqlite file."""
    if args.metadata_uri is None:
        return sqlite_path
    metadata_connection.required_server(args.metadata_uri)
    return args.metadata_uri


def add_portable_beam_arguments(parser: argparse.ArgumentParser) -> None:
    """--beam-workers and --beam-job-service, for every command that runs Beam stages."""
    parser.add_argument(
        "--beam-workers",
        metavar="HOST:PORT",
        help="Run the Beam stages through Beam's portable Job API, on the SDK workers of the "
        "`agnews beam-worker` pool at HOST:PORT (adds the --beam-arg set it stands for: "
        "--print-config shows it).",
    )
    parser.add_argument(
        "--beam-job-service",
        metavar="HOST:PORT",
        help="With --beam-workers: the Beam job service that runs the job (default: one started "
        "in this process).",
    )


def portable_beam_args(args: argparse.Namespace) -> list[str]:
    """The Beam options --beam-workers and --beam-job-service stand for (none without them);
    ValueError for a job service without workers. (`run` leaves unset flags out of `args`.)"""
    workers, job_service = (
        getattr(args, name, None) for name in ("beam_workers", "beam_job_service")
    )
    if workers is None:
        if job_service is not None:
            raise ValueError(
                "--beam-job-service needs --beam-workers HOST:PORT, the `agnews beam-worker` "
                "pool whose workers run the job."
            )
        return []
    return beam_packaging.portable_args(workers, job_service or beam_packaging.EMBEDDED_JOB_SERVICE)
