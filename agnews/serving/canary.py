"""Takes a canary that errors out of traffic, as KServe rolls back a canary revision that fails.

The model calls of the version labelled `canary` are judged over a sliding window of its last
`window` calls: once the window is full and more than `max_error_rate` of them failed, requests
naming no version stop going to it at once (ModelStore.take_out), and `on_taken_out` is told
(under `agnews serve --from-registry`, the registry records an automatic rollback and rewrites
the config, so the version is unloaded at the next poll). Only the model's own failures count:
a request refused before the call (bad inputs, too many rows) says nothing about the version.
"""

from __future__ import annotations

import collections
import sys
import threading
from collections.abc import Callable

from agnews.serving.model_config import CANARY
from agnews.serving.store import ModelStore, Version

# (model name, version, error rate over the window) of a canary just taken out of traffic.
TakenOut = Callable[[str, int, float], None]


class CanaryGuard:
    def __init__(
        self,
        store: ModelStore,
        max_error_rate: float,
        window: int,
        on_taken_out: TakenOut | None = None,
    ):
        self.store, self.max_error_rate, self.window = store, max_error_rate, window
        self.on_taken_out = on_taken_out
        self._calls: dict[tuple[str, int], collections.deque[bool]] = {}

    def record(self, version: Version, failed: bool) -> None:
        """Counts one model call of `version` (on the event loop: no lock needed)."""
        if self.store.label_of(version.model_name, version.number) != CANARY:
            return
        calls = self._calls.setdefault(
            (version.model_name, version.number), collections.deque(maxlen=self.window)
        )
        calls.append(failed)
        rate = sum(calls) / len(calls)
        if len(calls) < self.window or rate <= self.max_error_rate:
            return
        if not self.store.take_out(version.model_name, version.number):
            return  # already out
        print(
            f"agnews serve: canary version {version.number} of {version.model_name} taken out "
            f"of traffic: {sum(calls)} of its last {len(calls)} calls failed "
            f"(more than {self.max_error_rate:g})",
            file=sys.stderr,
            flush=True,
        )
        if self.on_taken_out:
            # Off the event loop: the registry writes ML Metadata and a file.
            threading.Thread(
                target=self.on_taken_out,
                args=(version.model_name, version.number, rate),
                name="canary-rollback",
            ).start()
