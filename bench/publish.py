"""Where benchmark results go: printed, and saved as bench/results/NAME.md and NAME.json."""

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def publish(name: str, table: str, data) -> None:
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.md").write_text(table + "\n")
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
