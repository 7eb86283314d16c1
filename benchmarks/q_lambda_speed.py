"""Q(lambda) on Two-colors against the machine's bound: the forward view (one-step Q-learning at
T = 1) and Peng's incremental Q(lambda), at 1, 10 and 100 lanes (seeds), with the bytes and FLOPs
of one lane-step beside this machine's memory bandwidth and matrix-multiply peak, all measured in
the same run.

    python benchmarks/q_lambda_speed.py [--lanes 1,10,100] [--steps 20000] [--json PATH]

Configurations: the `related` preset's Q(lambda) (Luketina et al., CoLLAs 2022, Table 4: Q-MLP
2 x 256, Adam, T = 1, an update at every environment step), fixed epsilon, with
``--learner.trace forward`` and ``--learner.trace peng``; and Peng's under BMG (K = 0,
L = 16), the published exploration row's meta-learner (15 learner updates and one target step
per meta-step).

How it measures:
- **steps/s**: the Anakin runner the CLI uses (every CPU core a JAX device, lanes sharded over
  them), compiled first, then one chunk of ``--steps`` environment steps per lane (scaled down
  for more lanes, ``steps * 10 / lanes`` from 10 lanes on), timed.
- **FLOPs, bytes per lane-step**: XLA's cost analysis of the learner's compiled parts vmapped
  over the lanes, divided by the lanes (``cost_per_lane_step``: one update; for BMG plus its
  target step and matching loss spread over the meta-step's 15 updates).
  Bytes are XLA's "bytes accessed" (every operand read and result written once; fusion inside
  an operation is not counted twice).
- **bandwidth**: ``y = x * a + b`` repeated inside one program over float32 arrays as large
  as the configuration's working set (the compiled step's arguments: every lane's learner and
  meta-learner state), sharded over every device: the bandwidth of the cache level or memory
  that holds that working set (and, printed once, at 1 GiB: main memory); **matmul peak**: a
  2048 x 2048 float32 product per device, sharded, best of 5.
- **bound**: min(bandwidth there / bytes, peak / FLOPs) lane-steps per second, and the
  measured steps/s as a fraction of it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys

from bmg.experiments.cli import use_all_cpu_cores  # noqa: E402

use_all_cpu_cores()  # before jax is imported, as the CLI does

import jax  # noqa: E402

from bmg.experiments.two_colors.system import (  # noqa: E402
    PRESET_VALUES,
    TwoColorsConfig,
    make_learner,
    make_runner,
)
from bmg.train.lifetime import LifetimeConfig  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import bandwidth_at, matmul_peak  # noqa: E402  (shared with roofline.py)

# (trace, algo, K, L)
SETTINGS = [("forward", "fixed", 1, 1), ("peng", "fixed", 1, 1), ("peng", "bmg", 0, 16)]


def config_of(trace: str, algo: str, inner: int, bootstrap: int, lanes: int, steps: int):
    """The `related` preset's Q(lambda) with `trace`, `algo`, K, L, `lanes` seeds and one chunk."""
    related = PRESET_VALUES["related"]
    preset = dataclasses.replace(
        related,
        q=dataclasses.replace(related.q, trace=trace),
        inner_steps=inner,
        meta=dataclasses.replace(related.meta, bootstrap_steps=bootstrap),
        lifetime=LifetimeConfig(steps=steps, seeds=lanes, chunk_steps=steps),
    )
    return preset.config("q", algo)


def _cost(fn, *args) -> tuple[float, float, int]:
    """(FLOPs, bytes accessed, argument bytes) of `fn` compiled for `args`."""
    compiled = jax.jit(fn).lower(*args).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    memory = compiled.memory_analysis().argument_size_in_bytes
    return float(cost["flops"]), float(cost["bytes accessed"]), memory


def cost_per_lane_step(config: TwoColorsConfig, lanes: int) -> dict:
    """XLA's FLOPs and bytes accessed of one lane-step, from the learner's compiled parts
    vmapped over `lanes`: one update (fixed), or, for bmg with K = 0, one update plus the
    target's final step and the matching loss spread over the L - 1 updates of a meta-step (the
    meta-network's Adam step, once per meta-step, is left out). Parts, not the compiled
    meta-step: XLA's cost analysis counts a loop's body once, and a meta-step compiled without
    loops counted several times the sum of its parts. The working set is the update's argument
    bytes (every lane's learner state) plus the meta-parameters."""
    learner = make_learner(config)
    keys = jax.random.split(jax.random.key(0), lanes)
    states = jax.vmap(learner.init_state)(keys)
    meta_params = jax.vmap(learner.init_meta_params)(keys)
    flops, bytes_, working_set = _cost(jax.vmap(learner.update_fn), meta_params, states, keys)
    if config.algo == "bmg":
        updates = config.meta.updates_per_step
        for part, args in (
            (learner.target_step, (meta_params, states, keys)),
            (learner.matching_fn, (states, states, meta_params)),
        ):
            part_flops, part_bytes, _ = _cost(jax.vmap(part), *args)
            flops += part_flops / updates
            bytes_ += part_bytes / updates
    steps = config.learner.rollout_length
    return {
        "flops_per_lane_step": flops / lanes / steps,
        "bytes_per_lane_step": bytes_ / lanes / steps,
        "working_set_bytes": working_set,
    }


def measure(setting: tuple, lanes: int, steps: int, bounds: dict) -> dict:
    trace, algo, inner, bootstrap = setting
    config = config_of(trace, algo, inner, bootstrap, lanes, steps)
    runner = make_runner(config)
    compile_seconds = runner.compile()
    state = runner.start()
    state, seconds, host_seconds = runner.run_chunk(state)
    env_steps = state.trace["env_steps"]
    steps_taken = int(env_steps[0, -1] - state.initial["env_steps"][0])
    rate = steps_taken * lanes / seconds
    cost = cost_per_lane_step(config, lanes)
    bandwidth = bandwidth_at(cost["working_set_bytes"])
    bound = min(
        bandwidth / cost["bytes_per_lane_step"],
        bounds["matmul_flops_per_s"] / cost["flops_per_lane_step"],
    )
    return {
        "trace": trace,
        "algo": algo,
        "k": inner,
        "l": bootstrap if algo == "bmg" else None,
        "lanes": lanes,
        "steps_per_second_all_lanes": rate,
        "compile_seconds": compile_seconds,
        "host_seconds": host_seconds,
        **cost,
        "bandwidth_bytes_per_s": bandwidth,
        "bound_steps_per_second": bound,
        "fraction_of_bound": rate / bound,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanes", default="1,10,100", help="comma-separated lane counts")
    parser.add_argument("--steps", type=int, default=20_000, help="timed steps per lane (<= 10)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    print(
        f"jax {jax.__version__}, devices {jax.devices()}, {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}"
    )
    bounds = {
        "matmul_flops_per_s": matmul_peak(),
        "dram_bandwidth_bytes_per_s": bandwidth_at(2**30),
    }
    print(
        f"measured: float32 matmul {bounds['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s, memory "
        f"bandwidth {bounds['dram_bandwidth_bytes_per_s'] / 1e9:.1f} GB/s at 1 GiB (all devices)"
    )
    results = []
    for lanes in (int(n) for n in args.lanes.split(",")):
        steps = args.steps if lanes <= 10 else max(args.steps * 10 // lanes, 200)
        for setting in SETTINGS:
            results.append(measure(setting, lanes, steps, bounds))
    print(
        "| trace | algo | lanes | steps/s (all lanes) | FLOPs / lane-step | bytes / lane-step | "
        "working set | bandwidth there | bound steps/s | of bound | compile s |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        algo = r["algo"] if r["algo"] == "fixed" else f"bmg K={r['k']} L={r['l']}"
        print(
            f"| {r['trace']} | {algo} | {r['lanes']} | {r['steps_per_second_all_lanes']:,.0f} | "
            f"{r['flops_per_lane_step'] / 1e3:,.0f}k | {r['bytes_per_lane_step'] / 1e6:.2f} MB | "
            f"{r['working_set_bytes'] / 2**20:.1f} MiB | "
            f"{r['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s | "
            f"{r['bound_steps_per_second']:,.0f} | {r['fraction_of_bound']:.2f} | "
            f"{r['compile_seconds']:.1f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"bounds": bounds, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
