"""What a run reads from earlier runs, found in ML Metadata: the window of spans to train on,
the model that was last pushed (baseline and warm start) and the previous span's statistics.

TFX's resolvers are close but not quite it: SpanRangeStrategy keeps every version of a span
(a re-ingested span would count twice), LatestBlessedModelStrategy returns blessed models that
were never pushed (the servability gate may have refused them), and the LATEST_PUSHED policy
of TFX's LatestPolicyModel op follows an input key TFX's own Pusher does not use.
"""

from __future__ import annotations

from absl import logging
from tfx import types
from tfx.dsl.components.common import resolver
from tfx.dsl.input_resolution.strategies.latest_artifact_strategy import LatestArtifactStrategy

from pipeline.metadata import inputs, latest_pushed_model_id, producer, span, training_window


def window(
    examples: list[types.Artifact], num_spans: int, last_span: int | None
) -> list[types.Artifact]:
    """The newest version of each of the `num_spans` newest spans (up to `last_span`), oldest
    span first; a span ingested again (new files, or --no-cache) counts once."""
    newest: dict[int, types.Artifact] = {}
    for artifact in examples:
        key = (
            artifact.get_int_custom_property("version"),
            artifact.mlmd_artifact.create_time_since_epoch,
            artifact.id,
        )
        current = newest.get(span(artifact))
        if current is None or key > (
            current.get_int_custom_property("version"),
            current.mlmd_artifact.create_time_since_epoch,
            current.id,
        ):
            newest[span(artifact)] = artifact
    spans = sorted(n for n in newest if last_span is None or n <= last_span)[-num_spans:]
    return [newest[n] for n in spans]


class SpanWindowStrategy(resolver.ResolverStrategy):
    """`examples`: the window of spans to train on; none (the components that need it are
    skipped) when `skip_if_trained` and the last pushed model (`model`, and `baseline_model`
    when the baseline is pushed too) was trained on exactly this window: a rerun with no new
    data pushes no new version, while a baseline never pushed yet still trains."""

    def __init__(self, num_spans: int, last_span: int = -1, skip_if_trained: bool = True):
        self._num_spans = num_spans
        self._last_span = None if last_span < 0 else last_span
        self._skip_if_trained = skip_if_trained

    def resolve_artifacts(
        self, store, input_dict: dict[str, list[types.Artifact]]
    ) -> dict[str, list[types.Artifact]]:
        spans = window(input_dict["examples"], self._num_spans, self._last_span)
        models = [key for key in input_dict if key != "examples"]
        pushed = [latest_pushed_model_id(store, {m.id for m in input_dict[key]}) for key in models]
        if self._skip_if_trained and all(
            model is not None and training_window(store, model) == {a.id for a in spans}
            for model in pushed
        ):
            logging.info(
                "Nothing new: the served model was trained on spans %s.",
                sorted(span(a) for a in spans),
            )
            spans = []
        return {"examples": spans, **{key: [] for key in models}}


class LatestOrNoneStrategy(LatestArtifactStrategy):
    """TFX's latest artifact of each input, or none yet, where TFX's own strategy fails the
    resolver node (its execution FAILED on every first run, so the run summary said "failed")."""

    def resolve_artifacts(
        self, store, input_dict: dict[str, list[types.Artifact]]
    ) -> dict[str, list[types.Artifact]]:
        return self._resolve(input_dict)


class LatestPushedModelStrategy(resolver.ResolverStrategy):
    """`model`: the model of the newest push of the input's models (one Trainer's), or none
    before their first push."""

    def resolve_artifacts(
        self, store, input_dict: dict[str, list[types.Artifact]]
    ) -> dict[str, list[types.Artifact]]:
        pushed = latest_pushed_model_id(store, {m.id for m in input_dict["model"]})
        return {"model": [m for m in input_dict["model"] if m.id == pushed]}


class PreviousSpanStatisticsStrategy(resolver.ResolverStrategy):
    """`statistics`: those of the newest span older than the span just ingested (`examples`),
    the drift gate's baseline; none for the first span."""

    def resolve_artifacts(
        self, store, input_dict: dict[str, list[types.Artifact]]
    ) -> dict[str, list[types.Artifact]]:
        current = max(span(a) for a in input_dict["examples"])

        def statistics_span(statistics: types.Artifact) -> int:
            examples = inputs(store, producer(store, statistics.id), "examples")
            return span(store.get_artifacts_by_id(examples)[0]) if examples else -1

        older = [
            (n, s.id, s)
            for s in input_dict["statistics"]
            for n in [statistics_span(s)]
            if 0 <= n < current
        ]
        return {
            "statistics": [max(older, key=lambda t: t[:2])[2]] if older else [],
            "examples": input_dict["examples"],
        }
