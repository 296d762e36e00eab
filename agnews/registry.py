"""The model registry: which pushed version is `stable` and which is `canary`, and every change
with its time, user and reason, kept in ML Metadata beside the pipeline's lineage.

What Vertex AI Model Registry's version aliases and MLflow's aliases do, in TF Serving's terms:
each alias is a `version_labels` entry of the ModelServerConfig file the registry writes beside
the serving directory (`models.config`), which `agnews serve --from-registry` follows (as TF
Serving does with --model_config_file and --model_config_file_poll_wait_seconds).

One record: each change is an ML Metadata execution (type `agnews.RegistryChange`) in one context
per model, with an INPUT event on the PushedModel it is about; the aliases are replayed from those
changes, never stored twice. A version holds at most one alias.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import functools
import getpass
import os
import time
from typing import Any

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from agnews.serving import model_config
from components import settings
from components.artifacts import (
    BLESSED_PROPERTY,
    PUSHED_DESTINATION_PROPERTY,
    PUSHED_PROPERTY,
    PUSHED_VERSION_PROPERTY,
    STAMPED_MODEL_DIR,
)
from pipeline import metadata, metadata_connection, run_lock
from pipeline.node_ids import MODEL_NODES

STABLE, CANARY = model_config.STABLE, model_config.CANARY
ALIASES = (STABLE, CANARY)
# Actions a change records: a pipeline push taken in, an operator's promotion, a rollback of
# `stable` to the version that held it before.
REGISTER, PROMOTE, ROLLBACK = "register", "promote", "rollback"
# The server took an erroring canary out of traffic (`agnews serve --canary-max-error-rate`).
AUTO_ROLLBACK = "auto_rollback"
# An operator pushed a model the Evaluator did not bless: the manual override, never silent.
BLESS = "bless"
CONTEXT_TYPE = "agnews.ModelRegistry"
CHANGE_TYPE = "agnews.RegistryChange"
_CHANGE_PROPERTIES = {
    "action": metadata_store_pb2.STRING,
    "version": metadata_store_pb2.INT,
    "alias": metadata_store_pb2.STRING,  # the alias the version got ("" for none)
    "previous": metadata_store_pb2.INT,  # the version that held the alias before (0 for none)
    "user": metadata_store_pb2.STRING,
    "reason": metadata_store_pb2.STRING,
    "run": metadata_store_pb2.INT,  # bless: the pipeline run whose model it pushed (0 otherwise)
}


class RegistryError(ValueError):
    """A registry command that cannot be done, said in one line."""


@dataclasses.dataclass(frozen=True)
class Change:
    time: str  # ISO 8601, UTC
    action: str
    version: int
    alias: str
    previous: int | None
    user: str
    reason: str
    run: int | None = None  # bless: the pipeline run whose model it pushed


@dataclasses.dataclass(frozen=True)
class Entry:
    """One registered version: where it is, the alias it holds, and every change about it."""

    version: int
    path: str
    aliases: list[str]
    history: list[Change]


# How long a registry change waits for another one on a server store (each takes milliseconds).
_CHANGE_WAIT_S = 60


@contextlib.contextmanager
def _changing(metadata_address: str):
    """Serializes registry changes on one store (a short blocking lock, unlike the run lock: a
    rollback must go through while a pipeline run is in progress): a file lock beside a sqlite
    store, the server's named lock on a server store (changes come from any host)."""
    server = metadata_connection.metadata_server(metadata_address)
    if server is not None:
        with run_lock.server_lock(server, "registry", "another registry change", _CHANGE_WAIT_S):
            yield
        return
    with open(f"{metadata_address}.registry.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


class Registry:
    """The registry of the model that `pusher_node` of `pipeline_name` pushes to `serving_dir`,
    served under `model_name`."""

    def __init__(
        self,
        metadata_address: str,
        pipeline_name: str,
        serving_dir: str,
        model_name: str,
        pusher_node: str,
    ):
        self.metadata_address, self.pipeline_name = metadata_address, pipeline_name
        self.serving_dir, self.model_name, self.pusher_node = serving_dir, model_name, pusher_node
        self.store = metadata.open_store(metadata_address)
        self._change_type = self.store.put_execution_type(
            metadata_store_pb2.ExecutionType(name=CHANGE_TYPE, properties=_CHANGE_PROPERTIES),
            can_add_fields=True,
        )
        context_type = self.store.put_context_type(
            metadata_store_pb2.ContextType(name=CONTEXT_TYPE)
        )
        name = f"{pipeline_name}.{model_name}"
        found = self.store.get_context_by_type_and_name(CONTEXT_TYPE, name)
        self._context = (
            found.id
            if found
            else self.store.put_contexts(
                [metadata_store_pb2.Context(type_id=context_type, name=name)]
            )[0]
        )

    # Reading.

    def _pushes(self) -> dict[int, Any]:
        """The PushedModel artifacts of the pipeline's pushes and of manual blesses, by version."""
        manual = [
            artifact
            for artifact in self.store.get_artifacts_by_context(self._context)
            if artifact.custom_properties[PUSHED_PROPERTY].int_value
        ]
        return {
            int(push.custom_properties[PUSHED_VERSION_PROPERTY].string_value): push
            for push in [
                *metadata.pushes(self.store, self.pipeline_name, self.pusher_node),
                *manual,
            ]
        }

    def push(self, version: int):
        """The PushedModel artifact of a registered or pushed version (KeyError if none)."""
        return self._pushes()[version]

    def changes(self) -> list[Change]:
        """Every change, oldest first."""
        executions = self.store.get_executions_by_context(
            self._context,
            list_options=metadata_store.ListOptions(
                order_by=metadata_store.OrderByField.ID, is_asc=True
            ),
        )
        return [_change(execution) for execution in executions]

    def aliases(self, changes: list[Change] | None = None) -> dict[str, int]:
        """Which version holds each alias, replayed from the changes."""
        held: dict[str, int] = {}
        for change in self.changes() if changes is None else changes:
            held = {alias: version for alias, version in held.items() if version != change.version}
            if change.alias:
                held[change.alias] = change.version
        return held

    def entries(self) -> list[Entry]:
        """The registered versions, newest first."""
        changes, pushes = self.changes(), self._pushes()
        aliases = self.aliases(changes)
        versions = sorted({change.version for change in changes}, reverse=True)
        return [
            Entry(
                version=version,
                path=pushes[version].custom_properties[PUSHED_DESTINATION_PROPERTY].string_value
                if version in pushes
                else "",
                aliases=[alias for alias, held in aliases.items() if held == version],
                history=[c for c in changes if version in (c.version, c.previous)],
            )
            for version in versions
        ]

    # Changing: each under the registry lock, then the server config written.

    def sync(self, new_alias: str = CANARY) -> list[int]:
        """Registers the pipeline's pushes not registered yet, oldest first, each with
        `new_alias`. On the registry's first sync the newest push becomes `stable` instead (what a
        server following the newest version served until then) and older ones get no alias.
        Returns the versions registered."""
        with _changing(self.metadata_address):
            registered = {change.version for change in self.changes()}
            new = [v for v in sorted(self._pushes()) if v not in registered]
            first_sync_newest = new[-1] if new and not registered else None
            for version in new:
                if first_sync_newest is None:
                    alias = new_alias
                else:
                    alias = STABLE if version == first_sync_newest else ""
                self._record(
                    REGISTER, version, alias, "pipeline", "blessed and pushed by the pipeline"
                )
            if new:
                self.write_server_config()
            return new

    def promote(self, version: int, alias: str, reason: str) -> Change:
        """Gives `version` the alias (taking it from the version that held it)."""
        with _changing(self.metadata_address):
            if alias not in ALIASES:
                raise RegistryError(f"unknown alias {alias!r}: use one of {', '.join(ALIASES)}")
            self._check_servable(version)
            if self.aliases().get(alias) == version:
                raise RegistryError(f"version {version} is already {alias}")
            change = self._record(PROMOTE, version, alias, _user(), reason)
            self.write_server_config()
            return change

    def rollback(self, reason: str) -> Change:
        """Moves `stable` back to the version that held it before the current one (skipping
        versions rolled back from and versions no longer on disk)."""
        with _changing(self.metadata_address):
            changes = self.changes()
            current = self.aliases(changes).get(STABLE)
            rolled_back = {c.previous for c in changes if c.action == ROLLBACK}
            servable = set(self._pushes()) & set(self._on_disk())
            earlier = [
                c.version
                for c in reversed(changes)
                if c.alias == STABLE
                and c.version not in (current, *rolled_back)
                and c.version in servable
            ]
            if current is None or not earlier:
                raise RegistryError(
                    f"no earlier stable version to roll back to (stable is {current}); "
                    "`agnews models list` shows the history"
                )
            change = self._record(ROLLBACK, earlier[0], STABLE, _user(), reason)
            self.write_server_config()
            return change

    def take_out_canary(self, version: int, reason: str) -> Change | None:
        """Removes the canary alias from `version` (an automatic rollback: the server found it
        erroring); None when `version` is no longer the canary (an operator moved it first)."""
        with _changing(self.metadata_address):
            if self.aliases().get(CANARY) != version:
                return None
            change = self._record(AUTO_ROLLBACK, version, "", _user(), reason)
            self.write_server_config()
            return change

    def bless(self, reason: str, run: int | None = None, alias: str = CANARY) -> Change:
        """Pushes the model of pipeline run `run` (default: the newest run that evaluated one)
        that the Evaluator did not bless, as a new version holding `alias`: TFX users' "force
        bless", recorded as a `bless` change with its user and reason. Refused for a model the
        Evaluator blessed (the pipeline pushed it, or its summary said why not), for one that
        failed the servability check (a model that does not load and answer is never pushed),
        and for a run already blessed."""
        from agnews.versions import copy_version

        with _changing(self.metadata_address):
            run = run or metadata.latest_run_id(
                self.store, self.pipeline_name, with_node=MODEL_NODES.evaluator
            )
            if run is None:
                raise RegistryError(f"no run of {self.pipeline_name!r} evaluated a model yet")
            output = functools.partial(metadata.output_in_run, self.store, self.pipeline_name, run)
            model = output(MODEL_NODES.trainer, "Model")
            evaluation = output(MODEL_NODES.evaluator, "ModelBlessing")
            servable = output(MODEL_NODES.servability_gate, "InfraBlessing")
            if model is None or evaluation is None:
                raise RegistryError(f"no model evaluated in run {run} of {self.pipeline_name!r}")
            if evaluation.custom_properties[BLESSED_PROPERTY].int_value:
                raise RegistryError(
                    f"the model of run {run} was blessed by the Evaluator: the pipeline pushed it, "
                    "or its summary said why not"
                )
            if servable is None or not servable.custom_properties[BLESSED_PROPERTY].int_value:
                raise RegistryError(
                    f"the model of run {run} failed the servability check: a model that does "
                    "not load and answer is never pushed"
                )
            earlier = [c.version for c in self.changes() if c.action == BLESS and c.run == run]
            if earlier:
                raise RegistryError(f"run {run} was blessed already: version {earlier[0]}")
            version = max(int(time.time()), max(self._on_disk(), default=0) + 1)
            destination = os.path.join(self.serving_dir, str(version))
            copy_version(os.path.join(servable.uri, STAMPED_MODEL_DIR), destination)
            push = metadata_store_pb2.Artifact(
                type_id=self.store.get_artifact_type("PushedModel").id, uri=destination
            )
            push.custom_properties[PUSHED_PROPERTY].int_value = 1
            push.custom_properties[PUSHED_VERSION_PROPERTY].string_value = str(version)
            push.custom_properties[PUSHED_DESTINATION_PROPERTY].string_value = destination
            change = self._record(
                BLESS, version, alias, _user(), reason, run=run, push=push, model=model
            )
            self.write_server_config()
            return change

    def _check_servable(self, version: int) -> None:
        if version not in self._pushes():
            raise RegistryError(
                f"version {version} was not pushed by pipeline {self.pipeline_name!r}: "
                "`agnews models list` shows the registered versions"
            )
        if version not in self._on_disk():
            raise RegistryError(
                f"version {version} is no longer in {self.serving_dir} (removed by --keep?)"
            )

    def _on_disk(self) -> list[int]:
        from agnews.versions import model_versions  # TensorFlow's file systems (gs://, ...)

        return model_versions(self.serving_dir)

    def _record(
        self,
        action: str,
        version: int,
        alias: str,
        user: str,
        reason: str,
        run: int = 0,
        push=None,
        model=None,
    ) -> Change:
        """One change, linked to the version's PushedModel (INPUT); a bless links the PushedModel
        it made (`push`, OUTPUT) and the Model it pushed (`model`, INPUT)."""
        previous = self.aliases().get(alias, 0) if alias else 0
        execution = metadata_store_pb2.Execution(
            type_id=self._change_type, last_known_state=metadata_store_pb2.Execution.COMPLETE
        )
        for name, value in {
            "action": action,
            "version": version,
            "alias": alias,
            "previous": previous,
            "user": user,
            "reason": reason,
            "run": run,
        }.items():
            field = "string_value" if isinstance(value, str) else "int_value"
            setattr(execution.properties[name], field, value)
        events = metadata_store_pb2.Event
        linked = (
            [(push, events(type=events.OUTPUT)), (model, events(type=events.INPUT))]
            if push is not None
            else [(self._pushes()[version], events(type=events.INPUT))]
        )
        [execution_id, _, _] = self.store.put_execution(
            execution,
            linked,
            self.store.get_contexts_by_id([self._context]),
            reuse_context_if_already_exist=True,
        )
        return _change(self.store.get_executions_by_id([execution_id])[0])

    def write_server_config(self) -> str:
        """Writes the ModelServerConfig serving the aliased versions, with their labels, in one
        rename (no reader sees half a file); returns its path."""
        path = model_config.registry_config_path(self.serving_dir)
        base_path = (
            self.serving_dir if "://" in self.serving_dir else os.path.abspath(self.serving_dir)
        )
        text = model_config.labelled_config_text(self.model_name, base_path, self.aliases())
        model_config.write_atomically(path, text)
        return path


def model_registry(metadata_address: str, pipeline_name: str, serving_dir: str) -> Registry:
    """The registry of the pipeline's model (Pusher's pushes, served as settings'
    SERVING_MODEL_NAME): what `agnews run`, `agnews models` and `agnews serve` use."""
    return Registry(
        metadata_address,
        pipeline_name,
        serving_dir,
        settings.SERVING_MODEL_NAME,
        MODEL_NODES.pusher,
    )


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container's bare uid)
        return str(os.getuid())


def _change(execution) -> Change:
    properties = execution.properties
    return Change(
        time=datetime.datetime.fromtimestamp(
            execution.create_time_since_epoch / 1000, datetime.timezone.utc
        ).isoformat(timespec="seconds"),
        action=properties["action"].string_value,
        version=properties["version"].int_value,
        alias=properties["alias"].string_value,
        previous=properties["previous"].int_value or None,
        user=properties["user"].string_value,
        reason=properties["reason"].string_value,
        run=properties["run"].int_value or None,
    )
