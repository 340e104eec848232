"""Worker-path extraction on CPython: `consumer.extract.page.extract` (markdown + text + links + metadata) vs. the
stdlib reference parser, CPU time per page (`time.process_time_ns`), same pages as the Pyodide row.

    .venv/bin/python benchmarks/extract_cpython.py --site DIR --base-url http://127.0.0.1:PORT [--step 10]
"""

from __future__ import annotations

import argparse
import platform
import time

from childproc import emit
from extract_timing import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--step", type=int, default=10)
    args = parser.parse_args()
    result = run(args.site, step=args.step, base_url=args.base_url, clock=time.process_time_ns)
    emit({"runtime": "cpython", "python": platform.python_version(), "clock": "process_time_ns", **result})


if __name__ == "__main__":
    main()
