"""CPU time of starting the command line: `mailer --help`, `--version` and `lists ls`.

    python bench/bench_startup.py [--runs 10] [--json]

Each command runs `--runs` times as `python -m mailer ...` in a fresh process; the figure is the
median CPU time (user + sys) of the child, read with os.wait4, so other load on the machine
changes it far less than wall time would. `python -c pass` is measured the same way in the same
run as the baseline (the interpreter's own start-up). `lists ls` runs in a new folder made by
`mailer init`, on its SQLite database. Targets (issue 20): --help <= 0.3 s, lists ls <= 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TARGETS = {"--help": 0.3, "--version": 0.3, "lists ls": 0.5}


def cpu_seconds(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    """User + sys CPU seconds of one run of argv (the child alone, not this process)."""
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{stderr[-2000:]}")
    return usage.ru_utime + usage.ru_stime


def median_cpu(argv: list[str], cwd: Path, env: dict[str, str], runs: int) -> float:
    return statistics.median(cpu_seconds(argv, cwd, env) for _ in range(runs))


def measure(runs: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MAILER_CONFIG", None)
    # Bytecode as an installed mailer has it (pip compiles the package when it installs it):
    # with PYTHONDONTWRITEBYTECODE set, every run would compile mailer's sources again.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        folder = Path(tmp)
        subprocess.run(
            [py, "-m", "mailer", "init"], cwd=folder, env=env, check=True, capture_output=True
        )
        # One run of each first, so the bytecode caches are written before anything is timed.
        for args in (["--help"], ["--version"], ["lists", "ls"]):
            cpu_seconds([py, "-m", "mailer", *args], folder, env)
        return {
            "python -c pass": median_cpu([py, "-c", "pass"], folder, env, runs),
            "--help": median_cpu([py, "-m", "mailer", "--help"], folder, env, runs),
            "--version": median_cpu([py, "-m", "mailer", "--version"], folder, env, runs),
            "lists ls": median_cpu([py, "-m", "mailer", "lists", "ls"], folder, env, runs),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args(argv)
    results = measure(args.runs)
    if args.json:
        print(json.dumps({"startup": results, "targets": TARGETS, "runs": args.runs}))
        return 0
    base = results["python -c pass"]
    print(f"start-up CPU time (user+sys, median of {args.runs} runs)")
    for name, seconds in results.items():
        target = TARGETS.get(name)
        verdict = (
            ""
            if target is None
            else (f"  target <= {target:.1f} s: {'met' if seconds <= target else 'MISSED'}")
        )
        extra = "" if name == "python -c pass" else f"  (+{seconds - base:.3f} s over python)"
        print(
            f"  mailer {name:<10} {seconds:.3f} s{extra}{verdict}"
            if name != "python -c pass"
            else f"  {name:<17} {seconds:.3f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
