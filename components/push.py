"""TFX's Pusher and BulkInferrer, doing nothing in a run that trained no model.

When the window holds nothing new, the run trains nothing: the Evaluator and the servability
gate are skipped. Their outputs are optional inputs of Pusher and BulkInferrer, which TFX then
runs anyway: Pusher would push without validation (it only logs a warning) or fail looking for
a model, BulkInferrer failed looking for a blessing.
"""

from absl import logging
from tfx.components.bulk_inferrer import executor as bulk_inferrer_executor
from tfx.components.pusher import executor as pusher_executor
from tfx.types import standard_component_specs


class BulkInferrerExecutor(bulk_inferrer_executor.Executor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:
        if not (
            input_dict.get(standard_component_specs.MODEL_KEY)
            and input_dict.get(standard_component_specs.MODEL_BLESSING_KEY)
        ):
            logging.info("Nothing scored: no model was trained and evaluated in this run.")
            return
        super().Do(input_dict, output_dict, exec_properties)


class Executor(pusher_executor.Executor):
    def CheckBlessing(self, input_dict) -> bool:
        if not (
            input_dict.get(standard_component_specs.MODEL_BLESSING_KEY)
            and input_dict.get(standard_component_specs.INFRA_BLESSING_KEY)
        ):
            logging.info("Nothing pushed: no model was evaluated and checked in this run.")
            return False
        return super().CheckBlessing(input_dict)
