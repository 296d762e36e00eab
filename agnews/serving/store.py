"""The served models and their versions: loaded, warmed and unloaded in the background.

As TF Serving's manager does: a poll thread lists each model's numeric version directories every
`poll_wait_s`; a version its policy wants loads and replays its warmup requests on a loader
thread while the versions already loaded keep answering; it takes traffic only once warm. A
version that fails to load is reported (state END with its error, and the load metrics) and never
replaces a working one; it is tried again `max_load_retries` times, `load_retry_interval_s`
apart, never per request. Versions the policy no longer wants are unloaded once one it wants is
available. Requests read immutable snapshots; the lock only guards swapping them, never a load.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import random
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import tensorflow as tf
from tensorflow.python.saved_model import loader_impl
from tensorflow_serving.apis import get_model_metadata_pb2

from agnews import versions as version_dirs
from agnews.serving import errors, model_config
from agnews.serving.metrics import Metrics
from agnews.serving.model_config import CANARY, STABLE
from components import features, settings

LOADING, AVAILABLE, END = "LOADING", "AVAILABLE", "END"  # TF Serving's ModelVersionStatus states
DEFAULT_MAX_LOAD_RETRIES = 5  # TF Serving's --max_num_load_retries
DEFAULT_LOAD_RETRY_INTERVAL_S = 60.0  # TF Serving's --load_retry_interval_micros


@dataclasses.dataclass(frozen=True)
class Loaded:
    model: Any  # the SavedModel object: keeps the signature's variables alive
    signature: Any  # its serving_default concrete function
    signature_defs: get_model_metadata_pb2.SignatureDefMap


@dataclasses.dataclass(frozen=True)
class Version:
    model_name: str
    number: int
    path: str
    state: str
    error: str = ""
    loaded: Loaded | None = None  # set while AVAILABLE, and only then
    attempts: int = 0
    retry_at: float = 0.0


@dataclasses.dataclass(frozen=True)
class Served:
    """An available version and what it loaded: the answer to "which version serves this?"."""

    version: Version
    loaded: Loaded


def load_version(path: str, metrics: Metrics) -> Loaded:
    """Loads a version and replays its warmup requests (agnews.versions does both), timing each
    step under TF Serving's load and warmup metrics."""
    start = time.perf_counter()
    try:
        model = version_dirs.load(path)
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        for name, signature_def in (
            loader_impl.parse_saved_model(path).meta_graphs[0].signature_def.items()
        ):
            signature_defs.signature_def[name].CopyFrom(signature_def)
    except Exception:
        metrics.load_attempts.labels(path, "fail").inc()
        raise
    metrics.load_attempts.labels(path, "success").inc()
    metrics.load_latency.labels(path).inc((time.perf_counter() - start) * 1e6)
    start, status = time.perf_counter(), "OK"
    try:
        version_dirs.warm(model, path)
    except Exception:
        status = "FAILED"
        raise
    finally:
        metrics.warmup_latency.labels(path, status).observe((time.perf_counter() - start) * 1e6)
    return Loaded(model, model.signatures[features.SERVING_DEFAULT], signature_defs)


def freeze_loaded_objects(unloaded: bool) -> None:
    """Puts the objects of the loaded versions out of the garbage collector's reach (gc.freeze):
    a loaded SavedModel is several hundred thousand Python objects, and a full collection walking
    them all pauses every request (the p99 under load; bench/README.md). After an unload,
    everything is unfrozen and collected first, so that what the unloaded version left is freed:
    one full pass per version change, not one every few thousand requests."""
    if unloaded:
        gc.unfreeze()
        gc.collect()
    else:
        gc.collect(1)
    gc.freeze()


class ModelStore:
    def __init__(
        self,
        configs: list[model_config.ModelConfig],
        metrics: Metrics,
        poll_wait_s: float = settings.DEFAULT_FILE_SYSTEM_POLL_WAIT_S,
        config_file: str | None = None,
        config_poll_s: float = 0.0,
        max_load_retries: int = DEFAULT_MAX_LOAD_RETRIES,
        load_retry_interval_s: float = DEFAULT_LOAD_RETRY_INTERVAL_S,
        canary_percent: float = 0.0,
    ):
        self.metrics = metrics
        self.canary_percent = canary_percent
        self._taken_out: set[tuple[str, int]] = set()  # canaries CanaryGuard took out
        self.poll_wait_s, self.config_file, self.config_poll_s = (
            poll_wait_s,
            config_file,
            config_poll_s,
        )
        self.max_load_retries, self.load_retry_interval_s = max_load_retries, load_retry_interval_s
        self._configs = {c.name: c for c in configs}
        self._versions: dict[str, dict[int, Version]] = {c.name: {} for c in configs}
        self._lock = threading.Lock()
        self._loads = ThreadPoolExecutor(1, thread_name_prefix="model-load")
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    # Reading: what requests see.

    def model_names(self) -> list[str]:
        return sorted(self._configs)

    def _config(self, name: str) -> model_config.ModelConfig:
        model = self._configs.get(name)
        if model is None:
            raise errors.not_found(f"Servable not found for request: Latest({name})")
        return model

    def _requested(self, name: str, version: int | None, label: str | None) -> int | None:
        if label is None:
            return version
        number = self._config(name).label_version(label)
        if number is None:
            raise errors.invalid(f"Unrecognized servable version label: {label}")
        return number

    def _routed(self, name: str) -> int | None:
        """The version a request naming none goes to when the config labels one `stable`: it,
        or `canary` for a `canary_percent` share of requests. None: the newest available."""
        labels = dict(self._config(name).labels)
        canary = labels.get(CANARY)
        if (
            canary is not None
            and (name, canary) not in self._taken_out
            and random.random() * 100 < self.canary_percent
        ):
            return canary
        return labels.get(STABLE)

    def labels(self, name: str) -> dict[str, int]:
        """The config's version labels of model `name`."""
        config = self._configs.get(name)
        return dict(config.labels) if config else {}

    def label_of(self, name: str, number: int) -> str | None:
        """The label the config gives version `number` of model `name`, if any."""
        config = self._configs.get(name)
        return next((label for label, n in config.labels if n == number), None) if config else None

    def take_out(self, name: str, number: int) -> bool:
        """Stops routing requests that name no version to canary `number` (requests naming it
        or its label still reach it); False when it was out already. Lasts until a config no
        longer labels it canary."""
        if (name, number) in self._taken_out:
            return False
        self._taken_out.add((name, number))
        return True

    def serving(self, name: str, version: int | None = None, label: str | None = None) -> Served:
        """The version that answers a request: the one named, else the routed one (stable or
        canary) while it is available, else the newest available one (as during a rollback,
        while the version rolled back to loads again)."""
        number = self._requested(name, version, label)
        versions = self._versions.get(name, {})
        if number is None and version is None and label is None:
            routed_number = self._routed(name)
            routed = versions.get(routed_number) if routed_number is not None else None
            if routed is not None and routed.state == AVAILABLE and routed.loaded is not None:
                return Served(routed, routed.loaded)
        if number is None:
            available = [
                Served(v, v.loaded)
                for v in versions.values()
                if v.state == AVAILABLE and v.loaded is not None
            ]
            if not available:
                raise errors.not_found(f"Servable not found for request: Latest({name})")
            return max(available, key=lambda served: served.version.number)
        found = versions.get(number)
        if found is None or found.state != AVAILABLE or found.loaded is None:
            raise errors.not_found(f"Servable not found for request: Specific({name}, {number})")
        return Served(found, found.loaded)

    def statuses(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> list[Version]:
        """TF Serving's model status: every version it knows, newest first, or the one asked for."""
        number = self._requested(name, version, label)
        versions = self._versions.get(name)
        if not versions:
            raise errors.not_found(f"Could not find any versions of model {name}")
        if number is None:
            return sorted(versions.values(), key=lambda v: -v.number)
        if number not in versions:
            raise errors.not_found(f"Could not find version {number} of model {name}")
        return [versions[number]]

    # Writing: the poll and loader threads.

    def start(self) -> None:
        """Loads the versions the configuration wants (as TF Serving does before it listens),
        then polls for new versions (and for a changed config file) in the background."""
        wait(self.reconcile())
        self._poller = threading.Thread(target=self._poll, name="model-poll", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        self._stop.set()
        if self._poller:
            self._poller.join()
        self._loads.shutdown(wait=True, cancel_futures=True)

    def set_configs(self, configs: list[model_config.ModelConfig]) -> None:
        """A new model list: added models start loading, removed ones are unloaded."""
        with self._lock:
            kept = {
                c.name: self._versions.get(c.name, {}) if self._same_source(c) else {}
                for c in configs
            }
            dropped = any(
                v.loaded
                for name, versions in self._versions.items()
                for number, v in versions.items()
                if number not in kept.get(name, {})
            )
            self._configs, self._versions = {c.name: c for c in configs}, kept
            self._taken_out = {
                (name, number)
                for name, number in self._taken_out
                if self.label_of(name, number) == CANARY
            }
        if dropped:
            freeze_loaded_objects(unloaded=True)

    def _same_source(self, new: model_config.ModelConfig) -> bool:
        return new.name in self._configs and self._configs[new.name].base_path == new.base_path

    def _poll(self) -> None:
        next_config_read = time.monotonic() + self.config_poll_s
        while not self._stop.wait(self.poll_wait_s):
            if self.config_file and self.config_poll_s > 0 and time.monotonic() >= next_config_read:
                next_config_read = time.monotonic() + self.config_poll_s
                try:
                    configs = model_config.read_config_file(self.config_file)
                except ValueError as error:  # the current configuration stays, as in TF Serving
                    print(
                        f"agnews serve: model config not reloaded: {error}",
                        file=sys.stderr,
                        flush=True,
                    )
                else:
                    if configs != list(self._configs.values()):
                        self.set_configs(configs)
            self.reconcile()

    def _set(self, version: Version) -> bool:
        """Swaps in a new snapshot holding `version`; False when its model left the config."""
        with self._lock:
            versions = self._versions.get(version.model_name)
            if versions is None or version.path != os.path.join(
                self._configs[version.model_name].base_path, str(version.number)
            ):
                return False
            self._versions = {
                **self._versions,
                version.model_name: {**versions, version.number: version},
            }
            return True

    def reconcile(self) -> list[Future]:
        """Starts the loads and unloads each model's policy calls for; returns the loads started."""
        started = []
        for model in list(self._configs.values()):
            try:
                available = version_dirs.model_versions(model.base_path)
            except tf.errors.OpError as error:  # a file system hiccup: look again next poll
                print(
                    f"agnews serve: cannot list {model.base_path}: {error.message}",
                    file=sys.stderr,
                    flush=True,
                )
                continue
            aspired = model.aspired(available)
            known = self._versions.get(model.name, {})
            for number in sorted(aspired):
                version = known.get(number)
                if version is None or self._may_retry(version):
                    started.append(
                        self._start_load(model, number, version.attempts if version else 0)
                    )
            if self._unload_surplus(model.name, aspired):
                freeze_loaded_objects(unloaded=True)
        return started

    def _may_retry(self, version: Version) -> bool:
        if version.state != END:
            return False
        if not version.error:  # unloaded earlier, wanted again (policy or label change)
            return True
        return (
            0 < version.attempts <= self.max_load_retries and time.monotonic() >= version.retry_at
        )

    def _start_load(self, model: model_config.ModelConfig, number: int, attempts: int) -> Future:
        path = os.path.join(model.base_path, str(number))
        self._set(Version(model.name, number, path, LOADING, attempts=attempts + 1))
        return self._loads.submit(self._load, model.name, number, path, attempts + 1)

    def _load(self, name: str, number: int, path: str, attempts: int) -> None:
        try:
            loaded = load_version(path, self.metrics)
        except Exception as error:  # noqa: BLE001  (reported in the status, never raised at a request)
            message = f"{type(error).__name__}: {error}".splitlines()[0]
            self._set(
                Version(
                    name,
                    number,
                    path,
                    END,
                    error=message,
                    attempts=attempts,
                    retry_at=time.monotonic() + self.load_retry_interval_s,
                )
            )
            print(
                f"agnews serve: version {number} of {name} failed to load: {message}",
                file=sys.stderr,
                flush=True,
            )
            return
        unloaded = False
        if self._set(Version(name, number, path, AVAILABLE, loaded=loaded, attempts=attempts)):
            config = self._configs.get(name)
            if config:
                unloaded = self._unload_surplus(
                    name, config.aspired(version_dirs.model_versions(config.base_path))
                )
        freeze_loaded_objects(unloaded)

    def _unload_surplus(self, name: str, wanted: set[int]) -> bool:
        """Unloads the available versions outside `wanted` once one of `wanted` is available;
        True when it unloaded one."""
        versions = self._versions.get(name, {})
        if not any(versions[n].state == AVAILABLE for n in wanted if n in versions):
            return False
        surplus = [v for v in versions.values() if v.state == AVAILABLE and v.number not in wanted]
        for version in surplus:
            self._set(dataclasses.replace(version, state=END, loaded=None))
        return bool(surplus)
