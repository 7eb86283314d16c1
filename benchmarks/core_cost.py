"""Cost of one meta-step: MG(K) against BMG(K, L) on an MLP regression learner.

For every configuration this script jit-compiles `meta_learner.step`, reports

  * the wall-clock time of one compiled meta-step (median over `--repeats` rounds that call
    every configuration once, in a shuffled order),
  * XLA's compiled memory analysis (temporary buffers = the working memory of forward, backward
    and target computations; argument and output sizes), and
  * the time spent lowering and compiling,

and prints a markdown table with ratios against MG with the same K. The claim it checks: BMG's
memory does not grow with the target horizon L (the target is computed from the primal x_K,
outside differentiation, in `bmg.core.make_bmg`), while MG's grows with K.

  python benchmarks/core_cost.py [--repeats 20] [--hidden 256,256] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import optax
from machine import cpu_model  # noqa: E402  (benchmarks/machine.py)

from bmg.agents.regression import make_ill_conditioned_task, make_regression_learner
from bmg.core import make_bmg, make_metagradient, make_target_bootstrap, parameter_matching

MIB = 1024.0 * 1024.0


def parse_ints(text: str) -> tuple[int, ...]:
    text = text.strip()
    return tuple(int(part) for part in text.split(",") if part.strip()) if text else ()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed meta-steps per config")
    parser.add_argument("--warmup", type=int, default=2, help="untimed meta-steps per config")
    parser.add_argument("--hidden", type=parse_ints, default=(256, 256), help="e.g. 256,256")
    parser.add_argument("--dim", type=int, default=32, help="input dimension")
    parser.add_argument("--num-examples", type=int, default=1024, help="dataset size")
    parser.add_argument("--batch-size", type=int, default=64, help="examples per learner update")
    parser.add_argument("--ks", type=parse_ints, default=(1, 4, 16), help="inner steps K")
    parser.add_argument("--ls", type=parse_ints, default=(1, 4, 16), help="target steps L")
    parser.add_argument("--json", type=str, default=None, help="also write results here")
    args = parser.parse_args()
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    return args


def machine_description() -> dict[str, Any]:
    devices = jax.devices()
    return {
        "devices": [str(d) for d in devices],
        "device_kind": devices[0].device_kind,
        "platform": devices[0].platform,
        "jax": jax.__version__,
        "optax": optax.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": cpu_model() or platform.processor(),
    }


def memory_stats(compiled) -> dict[str, float | None]:
    """Compiled memory analysis in MiB; every entry None when the backend gives none."""
    names = ("temp", "argument", "output", "alias")
    try:
        analysis = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - some backends raise instead of returning None.
        analysis = None
    if analysis is None:
        return {f"{name}_mib": None for name in names}
    stats = {}
    for name in names:
        value = getattr(analysis, f"{name}_size_in_bytes", None)
        stats[f"{name}_mib"] = None if value is None else value / MIB
    return stats


def compile_step(meta_learner, meta_state, learner_state, key) -> tuple[Any, dict]:
    """Lower and compile `meta_learner.step`; return the executable, compile time and memory."""
    start = time.perf_counter()
    lowered = jax.jit(meta_learner.step).lower(meta_state, learner_state, key)
    compiled = lowered.compile()
    compile_s = time.perf_counter() - start
    return compiled, {"compile_s": compile_s, **memory_stats(compiled)}


def time_interleaved(runs: list[tuple], keys: list[jax.Array], warmup: int) -> list[list[float]]:
    """Time one call of every compiled step per round, in a shuffled order each round.

    Interleaving spreads background load (a shared 2-core machine is noisy) over all
    configurations instead of letting it land on whichever happened to run at the time.
    """
    for compiled, meta_state, learner_state in runs:
        for _ in range(warmup):
            jax.block_until_ready(compiled(meta_state, learner_state, keys[0]))
    times_ms: list[list[float]] = [[] for _ in runs]
    order = list(range(len(runs)))
    rng = random.Random(0)
    for key in keys:
        rng.shuffle(order)
        for index in order:
            compiled, meta_state, learner_state = runs[index]
            start = time.perf_counter()
            jax.block_until_ready(compiled(meta_state, learner_state, key))
            times_ms[index].append(1e3 * (time.perf_counter() - start))
    return times_ms


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def main() -> None:
    args = parse_args()
    machine = machine_description()
    config = {
        "dim": args.dim,
        "hidden_sizes": list(args.hidden),
        "batch_size": args.batch_size,
        "num_examples": args.num_examples,
        "meta_lr": "diagonal",
        "dtype": "float32",
        "meta_optimizer": "adam(1e-3)",
        "target": "make_target_bootstrap(update_fn, L, meta_objective=f, step_size=0.1)",
        "matching": "parameter_matching()",
        "repeats": args.repeats,
        "warmup": args.warmup,
    }
    print(f"devices: {machine['devices']} ({machine['device_kind']})")
    print(
        f"jax {machine['jax']}, optax {machine['optax']}, python {machine['python']}, "
        f"cpu_count {machine['cpu_count']} ({machine['processor']})"
    )
    print(f"config: {config}\n", flush=True)

    task = make_ill_conditioned_task(
        jax.random.key(0), num_examples=args.num_examples, dim=args.dim
    )
    learner = make_regression_learner(
        task, hidden_sizes=args.hidden, batch_size=args.batch_size, meta_lr="diagonal"
    )
    learner_state = learner.init_state(jax.random.key(1))
    meta_params = learner.init_meta_params(jax.random.key(3))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(meta_params))
    num_params = sum(leaf.size for leaf in jax.tree.leaves(learner_state.params))
    print(f"learner parameters: {num_params} (and as many meta-parameters)\n", flush=True)
    key = jax.random.key(2)

    configs: list[tuple[str, int, int | None]] = [("MG", k, None) for k in args.ks]
    configs += [("BMG", k, ell) for k in args.ks for ell in args.ls]
    results, runs = [], []
    for algo, k, ell in configs:
        if algo == "MG":
            meta_learner = make_metagradient(
                learner.update_fn, learner.meta_objective, optax.adam(1e-3), num_inner_steps=k
            )
        else:
            bootstrap = make_target_bootstrap(
                learner.update_fn, ell, meta_objective=learner.meta_objective, step_size=0.1
            )
            meta_learner = make_bmg(
                learner.update_fn,
                bootstrap,
                parameter_matching(),
                optax.adam(1e-3),
                num_inner_steps=k,
            )
        meta_state = meta_learner.init(meta_params)
        compiled, stats = compile_step(meta_learner, meta_state, learner_state, key)
        runs.append((compiled, meta_state, learner_state))
        results.append({"algo": algo, "K": k, "L": ell, **stats})
        print(
            f"  compiled {algo:>3} K={k:<2} L={'-' if ell is None else ell:<2} "
            f"in {stats['compile_s']:.2f} s, temp {fmt(stats['temp_mib'], '.2f')} MiB",
            flush=True,
        )

    print(f"\ntiming: {args.warmup} warm-up + {args.repeats} interleaved rounds...", flush=True)
    keys = jax.block_until_ready(list(jax.random.split(key, args.repeats)))
    all_times = time_interleaved(runs, keys, args.warmup)
    for row, times_ms in zip(results, all_times, strict=True):
        row["ms_median"] = statistics.median(times_ms)
        row["ms_min"] = min(times_ms)
        row["ms_max"] = max(times_ms)

    mg_by_k = {row["K"]: row for row in results if row["algo"] == "MG"}
    for row in results:
        mg = mg_by_k.get(row["K"])
        row["time_ratio_vs_mg"] = ratio(row["ms_median"], mg and mg["ms_median"])
        row["temp_ratio_vs_mg"] = ratio(row["temp_mib"], mg and mg["temp_mib"])

    header = (
        "| algo | K | L | ms/meta-step (median) | min ms | time / MG(K) | temp MiB "
        "| temp / MG(K) | args MiB | out MiB | compile s |"
    )
    print()
    print(header)
    print("|" + "|".join(["---"] * 3 + ["---:"] * 8) + "|")
    for row in results:
        print(
            f"| {row['algo']} | {row['K']} | {'-' if row['L'] is None else row['L']} "
            f"| {row['ms_median']:.2f} | {row['ms_min']:.2f} "
            f"| {fmt(row['time_ratio_vs_mg'], '.2f')} "
            f"| {fmt(row['temp_mib'], '.2f')} | {fmt(row['temp_ratio_vs_mg'], '.2f')} "
            f"| {fmt(row['argument_mib'], '.2f')} | {fmt(row['output_mib'], '.2f')} "
            f"| {row['compile_s']:.2f} |"
        )

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "config": config, "results": results}, f, indent=2)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
