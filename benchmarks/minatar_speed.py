"""MinAtar throughput: env frames/s of IMPALA, STACX and STACX + BMG (L = 1, 4), and BMG's cost
per learner update relative to STACX, measured in one run.

    python benchmarks/minatar_speed.py [--envs 1,16] [--updates 16] [--env Breakout-MinAtar]
                                       [--rollout-length 20] [--json PATH]

For each number of environments B (one seed, T = --rollout-length steps per environment per
batch, the default STACX learner: MinAtar torso, 3 heads) every setting is compiled first
(compile time reported apart), then one chunk of about --updates learner updates is timed on the
Anakin runner. A learner update consumes one batch of B x T frames; BMG's meta-step takes
K + L - 1 of them (the target's L - 1 updates train the learner, continue_from="target"), plus
the target step and the matching backward pass. "cost / update vs STACX" is BMG's seconds per
learner update over STACX's (the same as the inverse ratio of their frames/s); "memory" is XLA's
estimate of the chunk's peak (``Anakin.memory_bytes``), to check that BMG's memory is flat in L.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform

from bmg.experiments.command import use_all_cpu_cores  # noqa: E402

use_all_cpu_cores()  # before jax is imported, as the CLI does

import jax  # noqa: E402

from bmg.agents.stacx import StacxConfig  # noqa: E402
from bmg.experiments.minatar.system import MinAtarConfig, make_runner, stacx_select  # noqa: E402
from bmg.train.lifetime import LifetimeConfig  # noqa: E402

SETTINGS = [("impala", 1), ("stacx", 1), ("bmg", 1), ("bmg", 4)]  # (algo, L)


def measure(env: str, algo: str, bootstrap: int, envs: int, length: int, updates: int) -> dict:
    """Compile, then time one chunk of about `updates` learner updates (one seed)."""
    stacx = StacxConfig(num_envs=envs, rollout_length=length)
    per_step = bootstrap if algo == "bmg" else 1  # learner updates per meta-step (K = 1)
    meta_steps = max(1, math.ceil(updates / per_step))
    frames = meta_steps * per_step * envs * length
    # as `bmg minatar --algo ALGO --l L` makes it: bmg goes on from the target
    config = stacx_select(MinAtarConfig(env=env, stacx=stacx), {"algo": algo})
    meta = config.meta
    if algo == "bmg":
        meta = dataclasses.replace(meta, bootstrap_steps=bootstrap)
    lifetime = LifetimeConfig(steps=frames, seeds=1, chunk_steps=frames)
    config = dataclasses.replace(config, meta=meta, lifetime=lifetime)
    runner = make_runner(config)
    compile_seconds = runner.compile()
    state = runner.start()
    state, seconds, _ = runner.run_chunk(state)
    taken = int(state.trace["env_steps"][0, -1] - state.initial["env_steps"][0])
    return {
        "algo": algo,
        "l": bootstrap if algo == "bmg" else None,
        "envs": envs,
        "frames_per_second": taken / seconds,
        "seconds_per_update": seconds / (meta_steps * per_step),
        "seconds_per_meta_step": seconds / meta_steps,
        "memory_bytes": runner.memory_bytes,
        "compile_seconds": compile_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", default="1,16", help="comma-separated numbers of environments")
    parser.add_argument("--updates", type=int, default=16, help="timed learner updates")
    parser.add_argument("--env", default="Breakout-MinAtar")
    parser.add_argument("--rollout-length", type=int, default=20)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    print(
        f"jax {jax.__version__}, {jax.devices()[0].platform} x {jax.device_count()}, "
        f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; {args.env}, "
        f"T = {args.rollout_length}, {args.updates} learner updates timed"
    )
    results = []
    for envs in (int(e) for e in args.envs.split(",")):
        rows = []
        for algo, bootstrap in SETTINGS:
            rows.append(measure(args.env, algo, bootstrap, envs, args.rollout_length, args.updates))
            r = rows[-1]
            print(  # as it goes: compiling dominates on small machines
                f"  measured {algo} L={bootstrap} envs={envs}: {r['frames_per_second']:,.0f} "
                f"frames/s, compile {r['compile_seconds']:.0f} s",
                flush=True,
            )
        stacx = next(r for r in rows if r["algo"] == "stacx")
        for r in rows:
            r["cost_per_update_vs_stacx"] = r["seconds_per_update"] / stacx["seconds_per_update"]
            r["cost_per_meta_step_vs_stacx"] = (
                r["seconds_per_meta_step"] / stacx["seconds_per_meta_step"]
            )
        results += rows
    print(
        "| algo | L | envs | frames/s | ms / learner update | cost / update vs STACX "
        "| cost / meta-step vs STACX | memory MiB | compile s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        memory = "-" if r["memory_bytes"] is None else f"{r['memory_bytes'] / 2**20:.1f}"
        print(
            f"| {r['algo']} | {r['l'] or '-'} | {r['envs']} | {r['frames_per_second']:,.0f} "
            f"| {1000 * r['seconds_per_update']:.1f} | {r['cost_per_update_vs_stacx']:.2f} "
            f"| {r['cost_per_meta_step_vs_stacx']:.2f} | {memory} | {r['compile_seconds']:.1f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
