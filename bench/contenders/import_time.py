"""Time one import in a fresh interpreter and print the seconds as JSON.

python bench/contenders/import_time.py function_app
python bench/contenders/import_time.py azure.functions
"""

from __future__ import annotations

import importlib
import json
import sys
import time


def main() -> None:
    module = sys.argv[1]
    started = time.perf_counter()
    importlib.import_module(module)
    elapsed_s = time.perf_counter() - started
    sys.stdout.write(json.dumps({"module": module, "import_s": elapsed_s}) + "\n")


if __name__ == "__main__":
    main()
