"""Compiles the pipeline to KFP v2 IR (PipelineJob JSON) for Kubeflow Pipelines or Vertex AI.

The compiled file names the pipeline image (Dockerfile at the repository root) and paths as
they are inside it: the project lives at IMAGE_PROJECT_DIR there, so the curated schema and
the embedded sample are rewritten to that directory. Data, pipeline root and serving
directory should be URLs the cluster reaches (e.g. gs://). With a remote Beam runner, the
pipeline image is the Beam workers' image too (--sdk_container_image): it has agnews and
the locked dependencies installed, and TFX's image it extends has Beam's worker entrypoint.

Spans compile as locally (each run ingests the newest span, or `span`), but the window, the
drift gate and the last-pushed baseline do not: they are resolved from ML Metadata by
resolvers of our own, and TFX 1.16's KFP v2 compiler takes only its latest-artifact and
latest-blessed-model resolvers. On KFP each run trains on its span, from and against the
latest blessed model (pipeline.create_pipeline's `span_lineage=False`).
"""

from __future__ import annotations

import dataclasses
import os

from components.settings import DEFAULT_KUBEFLOW_IMAGE
from pipeline import beam_packaging, node_ids
from pipeline.config import PROJECT_DIR, PipelineConfig
from pipeline.pipeline import create_pipeline

IMAGE_PROJECT_DIR = "/pipeline"


def for_image(config: PipelineConfig, image: str = DEFAULT_KUBEFLOW_IMAGE) -> PipelineConfig:
    """The same config as it runs in `image`: this checkout's paths replaced by their place in
    the image, which also serves as the worker image of a remote Beam runner."""

    def moved(path: str) -> str:
        inside = os.path.relpath(path, PROJECT_DIR) if os.path.isabs(path) else None
        return (
            path if inside is None or inside.startswith("..") else f"{IMAGE_PROJECT_DIR}/{inside}"
        )

    return dataclasses.replace(
        config,
        data=moved(config.data),
        schema_dir=moved(config.schema_dir),
        beam_args=beam_packaging.with_image(config.beam_args, image),
    )


def compile_pipeline(
    config: PipelineConfig,
    output: str,
    image: str = DEFAULT_KUBEFLOW_IMAGE,
    trainer_accelerator: str | None = None,
) -> str:
    """Writes the KFP v2 IR to `output` and returns its path. `trainer_accelerator`
    (`TYPE[:COUNT]`, e.g. NVIDIA_TESLA_T4:1) asks KFP / Vertex AI Pipelines to run the
    Trainers' containers on a node with that many GPUs of that type."""
    # Here, not at the top: it needs kfp (the kubeflow extra), which the Airflow environment lacks.
    from tfx.orchestration.kubeflow.v2.kubeflow_v2_dag_runner import (
        KubeflowV2DagRunner,
        KubeflowV2DagRunnerConfig,
    )

    pipeline = create_pipeline(for_image(config, image), span_lineage=False)
    if trainer_accelerator:
        resources = accelerator_resources(trainer_accelerator)
        for component in pipeline.components:
            if component.id in (node_ids.MODEL_NODES.trainer, node_ids.BASELINE_NODES.trainer):
                component.with_platform_config(resources)
    runner = KubeflowV2DagRunner(
        config=KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=os.path.dirname(os.path.abspath(output)),
        output_filename=os.path.basename(output),
    )
    runner.run(pipeline, write_out=True)
    return output


def accelerator_resources(accelerator: str):
    """KFP's ResourceSpec for `TYPE[:COUNT]` (count 1 when not given)."""
    from kfp.pipeline_spec import pipeline_spec_pb2

    kind, _, count = accelerator.partition(":")
    if not kind or not (count or "1").isdigit() or int(count or "1") < 1:
        raise ValueError(
            f"--trainer-accelerator takes TYPE[:COUNT], e.g. NVIDIA_TESLA_T4:1, "
            f"not {accelerator!r}."
        )
    spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec
    return spec(accelerator=spec.AcceleratorConfig(type=kind, count=int(count or "1")))
