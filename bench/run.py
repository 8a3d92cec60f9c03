"""Run every `bench/bench_*.py` in turn; exit non-zero if any missed its target.

Each benchmark runs in its own interpreter (so one cannot warm or slow the next), with this
interpreter, and prints its own figures and a one-line summary. This script repeats the
summaries at the end. `make bench` runs it: `.venv/bin/python bench/run.py`.

Not part of the test suite: the figures depend on the machine, and each script measures its
own baseline in the same run so that its verdict is a ratio, not an absolute time.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    results: list[tuple[str, int, str, float]] = []
    for script in scripts:
        start = time.perf_counter()
        lines: list[str] = []
        with subprocess.Popen(
            [sys.executable, str(script)],
            cwd=HERE.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:  # echoed as it comes: a run takes a while
                print(line, end="", flush=True)
                if line.strip():
                    lines.append(line.strip())
        code = proc.returncode
        elapsed = time.perf_counter() - start
        last = lines[-1] if lines else "(no output)"
        results.append((script.stem, code, last, elapsed))
        print(flush=True)
    print("== summary")
    for name, code, last, elapsed in results:
        shown = last if last.startswith(f"{name}: ") else f"{name}: crashed (see above)"
        print(f"   [exit {code}] {elapsed:5.1f}s  {shown}")
    missed = [name for name, code, _, _ in results if code != 0]
    if missed:
        print(f"missed or failed: {', '.join(missed)}")
        return 1
    print(f"all {len(results)} benchmarks met their targets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
