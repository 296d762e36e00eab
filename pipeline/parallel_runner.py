"""TFX's LocalDagRunner, with nodes whose upstream nodes are done run at the same time.

LocalDagRunner launches one node after the other (its own TODO b/171319478 asks for threads),
so on a 2-core machine the baseline's Transform and Trainer, the Evaluators and the
servability checks wait for each other while a core idles. This runner keeps everything else
of TFX's loop: the same run id substituted into the IR once, the same portable Launcher per
node with its own ML Metadata connection (so caching, lineage and the run contexts are TFX's
own), the same "Component X is running/finished" log lines; partial runs go to TFX's loop.

Two rules keep a run's results what the sequential loop gives: two nodes of one component
type never run at once (the library state a component type uses is process-wide: TFT traces a
preprocessing_fn under one global object tracker, Keras seeds random ops from one global
seed), and a failing node lets the running ones finish, starts no other, and its error is
raised as LocalDagRunner raises it. Worker threads are daemons: Ctrl-C stops the run
at once, leaving what a killed run leaves (see docs/operations.md).
"""

from __future__ import annotations

import datetime
import queue
import threading

from absl import logging
from tfx.dsl.compiler import constants
from tfx.orchestration import metadata
from tfx.orchestration.local import runner_utils
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.orchestration.portable import launcher, runtime_parameter_utils
from tfx.proto.orchestration import pipeline_pb2


class ParallelDagRunner(LocalDagRunner):
    """LocalDagRunner with up to `workers` nodes at once, never two of one component type."""

    def __init__(self, workers: int = 2):
        super().__init__()
        self._workers = workers

    def run_with_ir(
        self,
        pipeline: pipeline_pb2.Pipeline,
        run_options: pipeline_pb2.RunOptions | None = None,
    ) -> None:
        if run_options is not None or self._workers < 2:
            return super().run_with_ir(pipeline, run_options)
        runtime_parameter_utils.substitute_runtime_parameter(
            pipeline,
            {constants.PIPELINE_RUN_ID_PARAMETER_NAME: datetime.datetime.now().isoformat()},
        )
        deployment_config = runner_utils.extract_local_deployment_config(pipeline)
        connection_config = getattr(
            deployment_config.metadata_connection_config,
            deployment_config.metadata_connection_config.WhichOneof("connection_config"),
        )
        nodes = {
            node.pipeline_node.node_info.id: node.pipeline_node
            for node in pipeline.nodes
            if not node.pipeline_node.execution_options.HasField("skip")
        }

        def launch(node_id: str) -> None:
            node = nodes[node_id]
            component_launcher = launcher.Launcher(
                pipeline_node=node,
                mlmd_connection=metadata.Metadata(connection_config),
                pipeline_info=pipeline.pipeline_info,
                pipeline_runtime_spec=pipeline.runtime_spec,
                executor_spec=runner_utils.extract_executor_spec(deployment_config, node_id),
                custom_driver_spec=runner_utils.extract_custom_driver_spec(
                    deployment_config, node_id
                ),
            )
            logging.info("Component %s is running.", node_id)
            component_launcher.launch()
            logging.info("Component %s is finished.", node_id)

        _schedule(nodes, launch, self._workers)


def _schedule(nodes: dict, launch, workers: int) -> None:
    """Calls launch(node id) for every node once its upstream nodes are done, up to `workers`
    at once and one node of a component type at a time, in the IR's (topological) order among
    the ready ones; raises the first node's error once the running ones have finished."""
    finished: queue.Queue = queue.Queue()
    done: set[str] = set()
    running: set[str] = set()
    error: BaseException | None = None

    def work(node_id: str) -> None:
        try:
            launch(node_id)
            finished.put((node_id, None))
        except BaseException as failure:  # handed to the scheduling thread, which raises it
            finished.put((node_id, failure))

    while True:
        if error is None:
            for node_id, node in nodes.items():
                if len(running) >= workers:
                    break
                if (
                    node_id not in done
                    and node_id not in running
                    and set(node.upstream_nodes) <= done
                    and node.node_info.type.name
                    not in {nodes[r].node_info.type.name for r in running}
                ):
                    running.add(node_id)
                    threading.Thread(target=work, args=(node_id,), daemon=True).start()
        if not running:
            break
        node_id, failure = finished.get()
        running.discard(node_id)
        done.add(node_id)
        error = error or failure
    if error is not None:
        raise error
