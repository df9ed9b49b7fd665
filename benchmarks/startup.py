"""Start-up cost of a short training run, cold and warm compilation cache (jaxseq.compile_cache).

For each task, with a fresh cache folder: ``python -m jaxseq train`` twice (cold, then warm), timing
the first metrics line and the whole run and comparing the two runs' metrics (timing fields left out);
then an in-process probe with the warm cache that splits the start-up into imports, env and trainer
construction, tracing, lowering, compiling, cache reads and running the first chunk (JAX's monitoring
events). Appends the table to ``benchmarks/results/startup.md`` with ``--save``.

    python benchmarks/startup.py --save
    python benchmarks/startup.py --tasks mpe:spread --total-steps 20000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASKS = ("mpe:spread", "smax:3m", "mamujoco:Hopper-3x1", "mamujoco:Humanoid-9|8")
#: Metrics fields that measure time, not learning: left out of the cold-warm comparison.
TIMING = ("seconds", "per_second", "sps")
#: JAX's monitoring events (jax._src.dispatch, jax._src.compiler) summed per phase.
EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "trace",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
    "/jax/core/compile/backend_compile_duration": "compile",
    "/jax/compilation_cache/cache_retrieval_time_sec": "cache_read",
}


def train_command(task: str, algo: str, total_steps: int, out: Path) -> list[str]:
    return [sys.executable, "-m", "jaxseq", "train", "--env", task, "--algo", algo, "--total-steps",
            str(total_steps), "--no-progress", "--out", str(out)]  # fmt: skip


def timed_run(cmd: list[str], env: dict, out: Path) -> dict:
    """Seconds to the first metrics line (in the run folder's metrics.jsonl) and to the end."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    first = None
    while proc.poll() is None:
        if first is None and any(p.stat().st_size for p in out.glob("*/metrics.jsonl")):
            first = time.perf_counter() - t0
        time.sleep(0.05)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr.read()[-2000:]}")
    return {"first_line": first, "total": time.perf_counter() - t0}


def learning_metrics(out: Path) -> list[dict]:
    """The run's metrics lines without their timing fields."""
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    return [{k: v for k, v in row.items() if not any(t in k for t in TIMING)} for row in rows]


def probe(task: str, algo: str, total_steps: int) -> dict:
    """In this process: seconds per start-up phase, to the first chunk's metrics."""
    t0 = time.perf_counter()
    import jax

    from jaxseq import run
    from jaxseq.configure import make_config
    from jaxseq.train import make_train

    phases = {"imports": time.perf_counter() - t0, **{name: 0.0 for name in EVENTS.values()}}
    counts = {name: 0 for name in EVENTS.values()}

    def listen(event: str, duration: float, **_):
        if event in EVENTS:
            phases[EVENTS[event]] += duration
            counts[EVENTS[event]] += 1

    jax.monitoring.register_event_duration_secs_listener(listen)
    config = make_config(env=task, algo=algo, total_steps=total_steps)
    t = time.perf_counter()
    trainer = make_train(config)
    phases["env_and_trainer"] = time.perf_counter() - t
    t = time.perf_counter()
    program = run._compile(trainer)
    state = trainer.init(jax.random.PRNGKey(config.seed))
    phases["chunk_and_init_programs"] = time.perf_counter() - t
    t = time.perf_counter()
    jax.block_until_ready(program(state))
    phases["first_chunk_run"] = time.perf_counter() - t
    phases["to_first_chunk"] = time.perf_counter() - t0
    phases["programs_compiled"], phases["cache_reads"] = counts["compile"], counts["cache_read"]
    return phases


def measure(task: str, algo: str, total_steps: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="jaxseq-startup-") as tmp:
        env = {**os.environ, "JAXSEQ_COMPILE_CACHE": str(Path(tmp) / "xla")}
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        runs, metrics = {}, {}
        for label in ("cold", "warm"):
            out = Path(tmp) / label
            runs[label] = timed_run(train_command(task, algo, total_steps, out), env, out)
            metrics[label] = learning_metrics(out)
        cmd = [sys.executable, __file__, "--probe", task, "--algo", algo, "--total-steps", str(total_steps)]
        probed = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        phases = json.loads(probed.splitlines()[-1])  # after the memory line the run prints
        size = sum(f.stat().st_size for f in (Path(tmp) / "xla").iterdir())
    same = metrics["cold"] == metrics["warm"]
    return {"runs": runs, "same_metrics": same, "phases": phases, "cache_mb": size / 2**20}


def table(results: dict) -> str:
    lines = [
        "| task | first line cold (s) | warm (s) | ratio | whole run cold (s) | warm (s) | ratio | metrics equal "
        "| cache (MB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task, r in results.items():
        cold, warm = r["runs"]["cold"], r["runs"]["warm"]
        name = task.replace("|", "\\|")  # a markdown table cell
        lines.append(
            f"| {name} | {cold['first_line']:.1f} | {warm['first_line']:.1f} | "
            f"{cold['first_line'] / warm['first_line']:.2f}x | {cold['total']:.1f} | {warm['total']:.1f} | "
            f"{cold['total'] / warm['total']:.2f}x | {r['same_metrics']} | {r['cache_mb']:.1f} |"
        )
    names = list(next(iter(results.values()))["phases"])
    lines += ["", "Warm start-up, in process, to the first chunk's metrics (s):", ""]
    lines += ["| task | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for task, r in results.items():
        name = task.replace("|", "\\|")
        lines.append(f"| {name} | " + " | ".join(f"{r['phases'][n]:.2f}" for n in names) + " |")
    return "\n".join(lines) + "\n\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--algo", default="a2po")
    parser.add_argument("--total-steps", type=int, default=20_000)
    parser.add_argument("--save", action="store_true", help="append to benchmarks/results/startup.md")
    parser.add_argument("--probe", metavar="TASK", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        print(json.dumps(probe(args.probe, args.algo, args.total_steps)))
        return
    from harness import header, publish

    results = {}
    for task in args.tasks:
        results[task] = measure(task, args.algo, args.total_steps)
        print(task, json.dumps(results[task]), flush=True)
    setup = f"{args.algo}, {args.total_steps} steps per run; per task a fresh cache: cold run, warm run, warm probe"
    publish(header("startup.py", argv, setup) + table(results), "startup.md", args.save)


if __name__ == "__main__":
    main()
