"""Two-colors sweeps as one compiled program: aggregate throughput against lanes, one sweep
against its configurations run one after another, and where the time between chunks goes.

    python benchmarks/two_colors_sweep.py [--lanes 16,64,256] [--configs 4] [--chunks 3]
        [--meta-steps 20] [--hidden 32] [--json PATH]

The configuration is tiny but real: the actor-critic on the 5 x 5 Two-colors world, BMG with
K = 1, L = 2, T = 16, a running-normalised reward context, 2 x `--hidden` networks; the lanes
are `--configs` meta-learning rates x (lanes / configs) seeds. Like the CLI, every CPU core is a
JAX device and lanes are sharded over them.

Part 1 (lanes): for each lane count, compile, then run `--chunks` chunks of `--meta-steps`
meta-steps, checkpointing every chunk (orbax, into a temporary directory) as `bmg two-colors
sweep` does; the first chunk is left out of the rates (warm-up). Reported per chunk: device
seconds (`Anakin.run_chunk`'s), host seconds of the trace transfer and NaN check, and of the
checkpoint (the runner's own save), and aggregate environment steps per second.

Part 3 (checkpoint cost against trace length, `--trace-sizes`): a `Checkpointer.save` of a
small carry plus a trace of 7 records [lanes, meta-steps] (4 float32 / int32 + 3 bool, as a
Two-colors run records), for growing meta-steps: what a checkpoint of the whole trace so far costs
(the runner's layout when this was measured; it now writes each chunk's trace once, to its own
file, so its saves no longer grow with the lifetime).

Part 2 (one program vs one by one): the same `--configs` configurations x (16 / configs) seeds
as one sweep, and as `--configs` single runs one after another (each its own compile), wall
clock including compiles.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

from bmg.experiments.command import use_all_cpu_cores  # noqa: E402

use_all_cpu_cores()  # before jax is imported, as the CLI does

import jax  # noqa: E402

from bmg.agents.configs import ActorCriticConfig  # noqa: E402
from bmg.experiments.two_colors.system import (  # noqa: E402
    TwoColorsConfig,
    make_runner,
    make_sweep_runner,
    sweep_configs,
)
from bmg.train.checkpoint import Checkpointer  # noqa: E402
from bmg.train.lifetime import LifetimeConfig  # noqa: E402

RATES = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 3e-3, 3e-4, 3e-5)


def base_config(seeds: int, meta_steps: int, chunks: int, hidden: int) -> TwoColorsConfig:
    steps_per_meta_step = 3 * 16  # K + L = 3 rollouts of T = 16
    return TwoColorsConfig(
        meta=dataclasses.replace(
            TwoColorsConfig.meta, inner_steps=1, bootstrap_steps=2, learning_rate=1e-3
        ),
        lifetime=LifetimeConfig(
            steps=steps_per_meta_step * meta_steps * chunks,
            seeds=seeds,
            chunk_steps=steps_per_meta_step * meta_steps,
        ),
        learner=ActorCriticConfig(
            hidden_size=hidden,
            rollout_length=16,
            meta_hidden_size=16,
            meta_initial=0.5,
            context_normalization="running",
        ),
    )


def grid(configs: int) -> dict:
    return {"meta.learning_rate": RATES[:configs]}


def measure_lanes(lanes: int, args) -> dict:
    base = base_config(lanes // args.configs, args.meta_steps, args.chunks, args.hidden)
    with tempfile.TemporaryDirectory() as tmp:
        runner = make_sweep_runner(base, grid(args.configs))
        compile_seconds = runner.compile()
        runner.checkpointer = Checkpointer(Path(tmp) / "checkpoints")
        state = runner.start()
        device, transfer, save = [], [], []
        for _ in range(args.chunks):
            state, seconds, host_seconds = runner.run_chunk(state)
            start = time.perf_counter()
            runner.save(state)
            save.append(time.perf_counter() - start)
            device.append(seconds)
            transfer.append(host_seconds)
    steps = base.steps_per_meta_step * base.meta_steps_per_chunk * lanes
    timed = slice(1, None) if args.chunks > 1 else slice(None)
    mean = lambda xs: sum(xs[timed]) / len(xs[timed])  # noqa: E731
    return {
        "lanes": lanes,
        "devices": len(runner.sharding.device_set),
        "compile_seconds": compile_seconds,
        "device_seconds_per_chunk": mean(device),
        "trace_seconds_per_chunk": mean(transfer),
        "checkpoint_seconds_per_chunk": mean(save),
        "env_steps_per_chunk": steps,
        "steps_per_second_device": steps / mean(device),
        "steps_per_second_with_host": steps / (mean(device) + mean(transfer) + mean(save)),
    }


def measure_sequential(args, lanes: int = 16) -> dict:
    base = base_config(lanes // args.configs, args.meta_steps, args.chunks, args.hidden)
    start = time.perf_counter()
    sweep = make_sweep_runner(base, grid(args.configs))
    sweep.run()
    one_program = time.perf_counter() - start
    start = time.perf_counter()
    for config in sweep_configs(base, grid(args.configs)):
        make_runner(dataclasses.replace(config)).run()
    one_by_one = time.perf_counter() - start
    steps = base.total_env_steps * lanes
    return {
        "configs": args.configs,
        "seeds_per_config": lanes // args.configs,
        "one_program_seconds": one_program,
        "one_by_one_seconds": one_by_one,
        "one_program_steps_per_second": steps / one_program,
        "one_by_one_steps_per_second": steps / one_by_one,
        "speed_up": one_by_one / one_program,
    }


def measure_checkpoint(lanes: int, meta_steps: int) -> dict:
    import numpy as np

    rng = np.random.default_rng(0)  # incompressible values, as a real trace's floats are
    trace = {
        name: rng.random((lanes, meta_steps), np.float32).astype(dtype)
        for name, dtype in (
            ("env_steps", np.int32),
            ("reward_sum", np.float32),
            ("policy_entropy", np.float32),
            ("entropy_cost", np.float32),
            ("finite/params", bool),
            ("finite/meta_params", bool),
            ("finite/meta_loss", bool),
        )
    }
    carry = {"params": np.zeros((lanes, 30_000), np.float32)}
    with tempfile.TemporaryDirectory() as tmp:
        checkpointer = Checkpointer(Path(tmp) / "checkpoints")
        seconds = []
        for step in range(1, 4):
            start = time.perf_counter()
            checkpointer.save(step, {"carry": carry, "trace": trace}, {"chunks_done": step})
            seconds.append(time.perf_counter() - start)
    megabytes = sum(v.nbytes for v in trace.values()) / 1e6
    return {"lanes": lanes, "meta_steps": meta_steps, "trace_mb": megabytes,
            "save_seconds": min(seconds)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanes", default="16,64,256")
    parser.add_argument("--configs", type=int, default=4)
    parser.add_argument("--chunks", type=int, default=3)
    parser.add_argument("--meta-steps", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--skip-sequential", action="store_true")
    parser.add_argument("--skip-lanes", action="store_true")
    parser.add_argument(
        "--trace-sizes", default="", help="lanes x meta-steps, e.g. 16x1000,16x100000 (part 3)"
    )
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    print(f"{platform.node()}: {jax.device_count()} {jax.devices()[0].platform} devices")
    rows = []
    result = {}
    if args.trace_sizes:
        print("| lanes | meta-steps in the trace | trace MB | checkpoint save s |")
        print("|---|---|---|---|")
        result["checkpoint"] = []
        for size in args.trace_sizes.split(","):
            lanes, meta_steps = (int(n) for n in size.split("x"))
            row = measure_checkpoint(lanes, meta_steps)
            result["checkpoint"].append(row)
            print(
                f"| {lanes} | {meta_steps:,} | {row['trace_mb']:.1f} | {row['save_seconds']:.2f} |",
                flush=True,
            )
    if args.skip_lanes:
        args.lanes = ""
    print(
        "| lanes | compile s | device s/chunk | trace s/chunk | checkpoint s/chunk | "
        "steps/s (device) | steps/s (with host) |"
    )
    print("|---|---|---|---|---|---|---|")
    for lanes in (int(n) for n in args.lanes.split(",") if n):
        row = measure_lanes(lanes, args)
        rows.append(row)
        print(
            f"| {lanes} | {row['compile_seconds']:.1f} | {row['device_seconds_per_chunk']:.3f} | "
            f"{row['trace_seconds_per_chunk']:.3f} | {row['checkpoint_seconds_per_chunk']:.3f} | "
            f"{row['steps_per_second_device']:,.0f} | {row['steps_per_second_with_host']:,.0f} |",
            flush=True,
        )
    result["lanes"] = rows
    if not args.skip_sequential:
        seq = measure_sequential(args)
        result["sequential"] = seq
        print(
            f"\n{seq['configs']} configurations x {seq['seeds_per_config']} seeds: one program "
            f"{seq['one_program_seconds']:.1f} s ({seq['one_program_steps_per_second']:,.0f} "
            f"steps/s), one by one {seq['one_by_one_seconds']:.1f} s "
            f"({seq['one_by_one_steps_per_second']:,.0f} steps/s): {seq['speed_up']:.2f}x "
            "(wall clock, compiles included)"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
