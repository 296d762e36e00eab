"""`agnews models`: the registry's versions and aliases (list), and an operator's changes
(promote, rollback), each recorded in ML Metadata with its user and reason and written at once to
the ModelServerConfig that `agnews serve --from-registry` follows."""

from __future__ import annotations

import dataclasses
import json
import os
import sys

from agnews import console
from agnews.exit_codes import ExitCode
from agnews.serving import model_config
from pipeline import metadata_connection
from pipeline.config import PipelineConfig


def _add_registry_arguments(parser) -> None:
    """Where the registry is: the store, the serving directory and the pipeline, with
    `agnews run`'s defaults."""
    defaults = PipelineConfig()
    parser.add_argument(
        "--metadata-path",
        default=defaults.metadata_path,
        help="ML Metadata sqlite file of the runs (default: %(default)s).",
    )
    console.add_metadata_server_arguments(parser)
    parser.add_argument(
        "--serving-dir",
        default=defaults.serving_dir,
        help="Pusher's base directory of versions (default: %(default)s).",
    )
    parser.add_argument(
        "--pipeline-name", default=defaults.pipeline_name, help="(default: %(default)s)"
    )


def add_models_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "models",
        help="The model registry: list versions and aliases, promote, roll back, bless.",
        description="Pushed versions and their aliases (stable: requests without a version; "
        "canary: a share of them with `agnews serve --canary-percent`). A pipeline push is "
        "registered as canary (the first one as stable) by `agnews run`, or by any `agnews "
        "models` command for pushes made by another orchestrator.",
    )
    _add_registry_arguments(parser)
    actions = parser.add_subparsers(dest="models_action", required=True)
    listing = actions.add_parser("list", help="Every registered version, newest first.")
    listing.add_argument(
        "--json",
        action="store_true",
        help="One JSON object per version: version, path, aliases, history.",
    )
    promote = actions.add_parser("promote", help="Give a version the stable or canary alias.")
    promote.add_argument("version", type=int, metavar="VERSION")
    promote.add_argument("--to", required=True, choices=("stable", "canary"), dest="alias")
    promote.add_argument("--reason", required=True, help="Recorded in the history.")
    rollback = actions.add_parser(
        "rollback", help="Move stable back to the version that held it before."
    )
    rollback.add_argument("--reason", required=True, help="Recorded in the history.")
    bless = actions.add_parser(
        "bless",
        help="Push a model the Evaluator did not bless (the manual override, recorded as such).",
        description="Pushes the model of a pipeline run that the Evaluator refused, as a new "
        "version: the servability check must have passed. Recorded as a `bless` change with "
        "your user and reason.",
    )
    bless.add_argument(
        "--run",
        type=int,
        default=None,
        help="The pipeline run (its ML Metadata pipeline_run context id; default: the newest "
        "run that evaluated a model).",
    )
    bless.add_argument("--to", choices=("stable", "canary"), default="canary", dest="alias")
    bless.add_argument("--reason", required=True, help="Recorded in the history.")


def add_card_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "card",
        help="Write a pushed version's model card (Markdown and HTML) if missing; print its path.",
    )
    parser.add_argument("version", type=int, metavar="VERSION")
    _add_registry_arguments(parser)
    parser.add_argument("--force", action="store_true", help="Write it again even if it exists.")


def _store_address(args) -> str:
    """Where the registry's ML Metadata is (MetadataStoreError for a sqlite file that no run
    made yet)."""
    address = console.metadata_address(args, args.metadata_path)
    if not metadata_connection.is_server(address) and not os.path.exists(address):
        raise metadata_connection.MetadataStoreError(
            f"no ML Metadata store at {address}: run `agnews run` first"
        )
    return address


def card(args) -> int:
    from agnews import model_card

    try:
        path = model_card.write_card(
            _store_address(args),
            os.path.dirname(os.path.abspath(args.metadata_path)),
            args.pipeline_name,
            args.serving_dir,
            args.version,
            args.force,
        )
    except model_card.CardError as error:
        return console.fail("card", error)
    print(path)
    return ExitCode.OK


def models(args) -> int:
    from agnews import registry

    book = registry.model_registry(_store_address(args), args.pipeline_name, args.serving_dir)
    # With --json, stdout is JSON lines only: what the registry took in goes to stderr.
    notes = sys.stderr if getattr(args, "json", False) else sys.stdout
    for version in book.sync():
        print(f"Registered version {version} (pushed by the pipeline).", file=notes)
    try:
        if args.models_action == "promote":
            change = book.promote(args.version, args.alias, args.reason)
        elif args.models_action == "rollback":
            change = book.rollback(args.reason)
        elif args.models_action == "bless":
            change = book.bless(args.reason, args.run, args.alias)
            print(f"Pushed the model of run {change.run} as version {change.version}.")
        else:
            _print_entries(book.entries(), args.json)
            return ExitCode.OK
    except registry.RegistryError as error:
        return console.fail(f"models {args.models_action}", error)
    previous = f" (in place of version {change.previous})" if change.previous else ""
    print(f"Version {change.version} is now {change.alias}{previous}.")
    print(f"Server config: {model_config.registry_config_path(args.serving_dir)}")
    return ExitCode.OK


def _print_entries(entries, as_json: bool) -> None:
    if as_json:
        for entry in entries:
            print(json.dumps(dataclasses.asdict(entry)))
        return
    if not entries:
        print("No registered version: nothing was pushed yet.")
        return
    row = "{:<12} {:<7} {:<26} {:<14} {:<10} {}"
    print(row.format("VERSION", "ALIAS", "LAST CHANGE", "ACTION", "BY", "REASON"))
    for entry in entries:
        last = entry.history[-1]
        aliases = ",".join(entry.aliases) or "-"
        print(row.format(entry.version, aliases, last.time, last.action, last.user, last.reason))
