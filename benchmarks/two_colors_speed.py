"""Two-colors throughput: environment steps per second for fixed, mg and bmg at 1 and 16 seeds.

    python benchmarks/two_colors_speed.py [--steps 100000] [--seeds 1,16] [--json PATH]

Each configuration is compiled first (compile time reported separately), then one chunk of
`--steps` environment steps per seed is timed. Steps taken to build BMG targets count. Like the
CLI, every CPU core is exposed as a JAX device and the seed axis is sharded over them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform

from bmg.experiments.command import use_all_cpu_cores  # noqa: E402

use_all_cpu_cores()  # before jax is imported, as the CLI does

import jax  # noqa: E402
from machine import PYTORCH_PORT  # noqa: E402  (benchmarks/machine.py)

from bmg.experiments.two_colors.system import PRESET_VALUES, make_runner  # noqa: E402
from bmg.train.lifetime import LifetimeConfig  # noqa: E402

# (algo, K, L): the demo/report settings and the public PyTorch port's BMG (K=7, L=9).
SETTINGS = [("fixed", 1, 1), ("mg", 1, 1), ("bmg", 1, 8), ("mg", 7, 1), ("bmg", 7, 9)]


def measure(algo: str, inner: int, bootstrap: int, seeds: int, steps: int) -> dict:
    """Compile, then time one chunk of `steps` environment steps per seed on the Anakin runner."""
    preset = PRESET_VALUES["default"]  # its config for `algo` (as --algo), with this K and L
    config = dataclasses.replace(
        preset,
        inner_steps=inner,
        meta=dataclasses.replace(preset.meta, bootstrap_steps=bootstrap),
        lifetime=LifetimeConfig(steps=steps, seeds=seeds, chunk_steps=steps),
    ).config(algo=algo)
    runner = make_runner(config)
    compile_seconds = runner.compile()
    state = runner.start()
    state, seconds, host_seconds = runner.run_chunk(state)
    env_steps = state.trace["env_steps"]
    steps_taken = int(env_steps[0, -1] - state.initial["env_steps"][0])
    return {
        "algo": algo,
        "k": inner,
        "l": bootstrap if algo == "bmg" else None,
        "seeds": seeds,
        "devices": len(runner.sharding.device_set),
        "steps_per_second_all_seeds": steps_taken * seeds / seconds,
        "steps_per_second_per_seed": steps_taken / seconds,
        "compile_seconds": compile_seconds,
        "seconds": seconds,
        "host_seconds": host_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000, help="timed steps per seed")
    parser.add_argument("--seeds", default="1,16", help="comma-separated seed counts")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    seed_counts = [int(s) for s in args.seeds.split(",")]
    print(
        f"jax {jax.__version__}, devices {jax.devices()}, {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}"
    )
    results = [
        measure(algo, inner, bootstrap, seeds, args.steps)
        for seeds in seed_counts
        for algo, inner, bootstrap in SETTINGS
    ]
    print(
        "| algo | K | L | seeds | devices | steps/s (all seeds) | steps/s per seed "
        "| vs PyTorch port (1 seed, same K, L) | compile s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        port = PYTORCH_PORT.get((r["algo"], r["k"], r["l"]))
        ratio = f"{r['steps_per_second_all_seeds'] / port:.0f}x" if port else "-"
        print(
            f"| {r['algo']} | {r['k']} | {r['l'] or '-'} | {r['seeds']} | {r['devices']} "
            f"| {r['steps_per_second_all_seeds']:,.0f} | {r['steps_per_second_per_seed']:,.0f} "
            f"| {ratio} | {r['compile_seconds']:.1f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
