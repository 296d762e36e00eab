"""Remote Beam workers get agnews: the Kubeflow IR names the pipeline image as their image, a
local run ships a wheel it builds; local runners and a user-named worker image get nothing."""

import json
import socket
import zipfile
from pathlib import Path

import pytest
from tfx.dsl.components.base.executor_spec import BeamExecutorSpec
from tfx.utils.dependency_utils import make_beam_dependency_flags

from pipeline import beam_packaging
from pipeline.config import PipelineConfig
from pipeline.kubeflow_runner import compile_pipeline
from pipeline.local_runner import for_beam_workers
from pipeline.pipeline import create_pipeline

IMAGE = "registry.example/agnews:1"
DATAFLOW = [
    "--runner=DataflowRunner",
    "--project=p",
    "--region=europe-west4",
    "--temp_location=gs://bucket/tmp",
]
SHIPPING_FLAGS = ("--sdk_container_image", "--worker_harness_container_image", "--extra_package")


def beam_powered() -> set[str]:
    """Ids of the components whose executor runs a Beam pipeline (in the KFP IR's graph)."""
    return {
        c.id
        for c in create_pipeline(PipelineConfig(test_split=False), span_lineage=False).components
        if isinstance(getattr(c, "executor_spec", None), BeamExecutorSpec)
    }


@pytest.mark.parametrize(
    "beam_args, added",
    [
        (DATAFLOW, [f"--sdk_container_image={IMAGE}"]),
        # A worker image the user names is trusted to carry agnews: nothing is added.
        ([*DATAFLOW, "--sdk_container_image=registry.example/own:2"], []),
        ([*DATAFLOW, "--worker_harness_container_image=registry.example/own:2"], []),
        (["--runner=DirectRunner", "--direct_num_workers=2"], []),
        ([], []),
    ],
    ids=["dataflow", "user-image", "user-image-old-flag", "direct", "no-args"],
)
def test_kubeflow_ir_gives_remote_workers_the_pipeline_image(tmp_path, beam_args, added):
    config = PipelineConfig(
        data="gs://bucket/ag_news",
        pipeline_root="gs://bucket/root",
        serving_dir="gs://bucket/serving/agnews",
        test_split=False,
        spans=False,
        beam_args=beam_args,
    )
    ir = json.loads(
        Path(compile_pipeline(config, str(tmp_path / "p.json"), image=IMAGE)).read_text()
    )
    executors = ir["pipelineSpec"]["deploymentSpec"]["executors"]
    beam_ids = beam_powered()
    assert {"FileBasedExampleGen", "StatisticsGen", "Transform", "Evaluator"} <= beam_ids
    expected = [*beam_args, *added]
    for component_id in beam_ids:
        args = executors[f"{component_id}_executor"]["container"]["args"]
        # TFX's container entrypoint takes the arguments after its own as the Beam args.
        assert args[len(args) - len(expected) :] == expected, component_id
        assert [a for a in args if a.startswith(SHIPPING_FLAGS)] == [
            a for a in expected if a.startswith(SHIPPING_FLAGS)
        ], component_id


def test_a_local_dataflow_run_ships_a_wheel_of_this_package(tmp_path):
    run_dir = tmp_path / "run"
    config = PipelineConfig(
        beam_args=DATAFLOW, metadata_path=str(run_dir / "metadata.sqlite"), test_split=False
    )
    beam_args = for_beam_workers(config).beam_args
    assert beam_args[: len(DATAFLOW)] == DATAFLOW
    (wheel,) = [a.split("=", 1)[1] for a in beam_args if a.startswith(SHIPPING_FLAGS)]
    assert Path(wheel).parent == run_dir / "dist" and Path(wheel).name.startswith("agnews-")
    # With a dependency flag given, TFX adds no package of its own: ours must bring TFX.
    assert make_beam_dependency_flags(beam_args) == beam_args
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(
            archive.read(n).decode() for n in names if n.endswith(".dist-info/METADATA")
        )
    assert {"components/rows.py", "components/preprocessing.py", "pipeline/pipeline.py"} <= names
    assert "Requires-Dist: tfx==1.16.0" in metadata.splitlines()


@pytest.mark.parametrize(
    "beam_args",
    [
        [],
        ["--direct_num_workers=2"],
        ["--runner=direct"],
        ["--runner=FlinkRunner", "--flink_master=host:8081", "--environment_type=LOOPBACK"],
        [*DATAFLOW, "--sdk_container_image=registry.example/own:2"],
        [*DATAFLOW, "--extra_package=/wheels/own.whl"],
        [*DATAFLOW, "--setup_file=/src/setup.py"],
    ],
    ids=[
        "no-args",
        "direct-default",
        "direct",
        "flink-loopback",
        "user-image",
        "user-package",
        "user-setup-file",
    ],
)
def test_local_runners_and_named_images_get_no_wheel(tmp_path, beam_args):
    config = PipelineConfig(
        beam_args=beam_args, metadata_path=str(tmp_path / "metadata.sqlite"), test_split=False
    )
    assert for_beam_workers(config).beam_args == beam_args
    assert not (tmp_path / "dist").exists()


def test_a_portable_runs_services_that_do_not_answer_are_named():
    """What `agnews run` names when a portable run fails: the job service and the worker pool
    that refuse a connection now; an embedded job service is this process, never named."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        answering = f"127.0.0.1:{listening.getsockname()[1]}"
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            silent = f"127.0.0.1:{closed.getsockname()[1]}"  # bound, not listening: refused
            down = beam_packaging.unreachable_portable_services(
                beam_packaging.portable_args(silent, answering)
            )
            assert down == [f"the Beam worker pool at {silent}"]
            down = beam_packaging.unreachable_portable_services(
                beam_packaging.portable_args(answering, silent)
            )
            assert down == [f"the Beam job service at {silent}"]
            assert beam_packaging.unreachable_portable_services(
                beam_packaging.portable_args(silent)
            ) == [f"the Beam worker pool at {silent}"]
    assert beam_packaging.unreachable_portable_services(["--runner=DirectRunner"]) == []
    # Beam's other ways to name a pool: JSON with a "url", a bracketed IPv6 address; and one
    # that cannot be read is not probed (only a refusal counts, so no failure is mislabelled).
    port = silent.rsplit(":", 1)[1]
    for config in (f'{{"url": "{silent}"}}', f"[::1]:{port}"):
        assert beam_packaging.unreachable_portable_services(
            beam_packaging.portable_args(config, "embed")
        ) == [f"the Beam worker pool at {config}"]
    assert (
        beam_packaging.unreachable_portable_services(beam_packaging.portable_args("not-an-address"))
        == []
    )


def test_a_portable_run_names_the_job_service_and_its_workers_and_ships_nothing(tmp_path):
    """The worker pool (`agnews beam-worker`) runs in an environment with agnews installed:
    Beam's Python pool installs nothing staged, so no wheel is built or uploaded for it."""
    beam_args = beam_packaging.portable_args("workers.example:50000", "jobs.example:8099")
    assert beam_args == [
        "--runner=PortableRunner",
        "--job_endpoint=jobs.example:8099",
        "--environment_type=EXTERNAL",
        "--environment_config=workers.example:50000",
    ]
    assert beam_packaging.portable_args("w:1")[1] == "--job_endpoint=embed"
    config = PipelineConfig(
        beam_args=beam_args, metadata_path=str(tmp_path / "metadata.sqlite"), test_split=False
    )
    assert for_beam_workers(config).beam_args == beam_args
    assert not (tmp_path / "dist").exists()
    # A portable runner whose workers are containers of Beam's default image does need agnews.
    assert beam_packaging.needs_shipping(["--runner=PortableRunner", "--job_endpoint=j:1"])
