"""Running tasks of the compiled KFP v2 IR as Kubeflow / Vertex AI runs them: the task's own
container command line, `{{$}}` filled in with the ExecutorInput JSON KFP would pass."""

import json
from pathlib import Path

from pipeline.config import PROJECT_DIR, PipelineConfig
from pipeline.kubeflow_runner import IMAGE_PROJECT_DIR, compile_pipeline
from tests.helpers.data import newest_output, transform_outputs


def executor_input(
    spec: dict,
    task: str,
    workdir: Path,
    outputs: Path,
    artifacts: dict[str, dict] | None = None,
    custom_config: dict | None = None,
) -> dict:
    """What KFP passes as `{{$}}` (ExecutorInput JSON) to `task`: its constant parameters, with
    the image's project directory at `workdir` and `custom_config` updated (a JSON parameter);
    input `artifacts` (key → {"uri", "metadata"}: what upstream tasks produced); fresh output
    artifacts under `outputs`."""

    def local(name: str, value: dict) -> dict:
        text = value.get("stringValue", "")
        if name == "custom_config" and custom_config:
            return {"stringValue": json.dumps({**json.loads(text), **custom_config})}
        if text.startswith(IMAGE_PROJECT_DIR + "/"):
            return {"stringValue": str(workdir) + text[len(IMAGE_PROJECT_DIR) :]}
        return value

    parameters = spec["root"]["dag"]["tasks"][task]["inputs"]["parameters"]
    component = spec["components"][task]
    inputs = component["inputDefinitions"].get("artifacts", {})
    return {
        "inputs": {
            "parameters": {
                name: local(name, p["runtimeValue"]["constantValue"])
                for name, p in parameters.items()
            },
            "artifacts": {
                key: {
                    "artifacts": [
                        {"name": f"upstream-{key}", "type": inputs[key]["artifactType"], **given}
                    ]
                }
                for key, given in (artifacts or {}).items()
            },
        },
        "outputs": {
            "artifacts": {
                key: {
                    "artifacts": [
                        {
                            "name": f"{task}-{key}",
                            "type": output["artifactType"],
                            "uri": str(outputs / task / key),
                            "metadata": {},
                        }
                    ]
                }
                for key, output in component["outputDefinitions"]["artifacts"].items()
            },
            "outputFile": str(outputs / task / "executor_output.json"),
        },
    }


def container_argv(container: dict, filled_in: dict) -> list[str]:
    """One container command line of the IR, `{{$}}` replaced by `filled_in` (ExecutorInput)."""
    argv = [
        *container["command"],
        *(json.dumps(filled_in) if arg == "{{$}}" else arg for arg in container["args"]),
    ]
    assert argv[0] == "python"  # resolved on PATH, as in the image
    return argv


def trainer_task(root: Path, workdir: Path, epochs: int) -> tuple[list[str], dict, Path]:
    """(the Trainer task's container command line from the compiled Kubeflow IR, the URIs of its
    output artifacts, its executor output file): its ExecutorInput names the Transform outputs
    and schema of the pipeline run under `root` as KFP would (the tasks upstream produced them),
    `epochs`, batches of 32, and outputs under `workdir`."""
    ir = compile_pipeline(PipelineConfig(test_split=False), str(workdir / "ir.json"))
    spec = json.loads(Path(ir).read_text())["pipelineSpec"]
    examples, graph = transform_outputs(root)
    filled_in = executor_input(
        spec,
        "Trainer",
        PROJECT_DIR,
        workdir / "outputs",
        artifacts={
            "examples": {"uri": examples.uri, "metadata": {"split_names": examples.split_names}},
            "transform_graph": {"uri": graph, "metadata": {}},
            "schema": {"uri": newest_output(root, "ImportSchemaGen", "schema"), "metadata": {}},
        },
        custom_config={"epochs": epochs, "batch_size": 32, "patience": epochs},
    )
    outputs = filled_in["outputs"]
    uris = {key: found["artifacts"][0]["uri"] for key, found in outputs["artifacts"].items()}
    container = spec["deploymentSpec"]["executors"]["Trainer_executor"]["container"]
    return container_argv(container, filled_in), uris, Path(outputs["outputFile"])
