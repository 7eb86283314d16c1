"""Few-shot cost: time per meta-step and compiled memory of MAML and BMG against inner steps and L.

    python benchmarks/fewshot_cost.py --size 84 --repeats 3          # the MiniImagenet shape
    python benchmarks/fewshot_cost.py --size 84 --formulations-only   # task batching x inner loops

One meta-step = a meta-batch of 5-way tasks (random images of the real shape; the cost does not
depend on the pixels), the inner support steps differentiated (MAML: back-propagation through all
of them; BMG: one VJP through them), and for BMG a target L-1 support steps plus one query step
ahead, then Adam.
Compiled steps are timed interleaved (a shuffled order per round) so background load spreads over
all configurations; the table gives the median. Memory is XLA's compiled memory analysis
(temporary buffers: the working memory of the step), which on CPU is what the step allocates.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from core_cost import fmt, machine_description, memory_stats, parse_ints, ratio, time_interleaved  # noqa: E402

from bmg.agents.fewshot import CORE_ALGO, Task, make_learner, task_states  # noqa: E402
from bmg.core import MetaConfig, make_meta_learner, over_batch  # noqa: E402
from bmg.fewshot.conv4 import Conv4  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=84, help="image side")
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--meta-batch-size", type=int, default=4)
    parser.add_argument("--maml-inner-steps", type=parse_ints, default=(1, 5, 10))
    parser.add_argument("--bmg-inner-steps", type=parse_ints, default=(1, 5))
    parser.add_argument("--bootstrap-steps", type=parse_ints, default=(1, 5, 10))
    parser.add_argument("--batching", default="unroll", choices=("vmap", "map", "unroll"))
    parser.add_argument(
        "--loops",
        default="unrolled",
        choices=("unrolled", "scan"),
        help="inner and target steps as straight-line code or lax.scan loops",
    )
    parser.add_argument(
        "--formulations-only",
        action="store_true",
        help="compare task batchings x inner-loop forms for MAML with 5 inner steps",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed meta-steps per config")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--json", type=str, default=None, help="also write results here")
    args = parser.parse_args()
    if args.repeats < 1 or args.warmup < 0 or args.size < 16:
        parser.error("--repeats must be >= 1, --warmup >= 0 and --size >= 16")
    return args


def random_tasks(args) -> Task:
    rng = np.random.default_rng(0)
    b, w = args.meta_batch_size, args.ways

    def images(per_class):
        return jnp.asarray(rng.random((b, w * per_class, args.size, args.size, 3)), jnp.float32)

    def labels(per_class):
        return jnp.tile(jnp.repeat(jnp.arange(w), per_class), (b, 1))

    return Task(images(args.shots), labels(args.shots), images(args.queries), labels(args.queries))


def compile_meta_step(args, algo: str, inner: int, boot: int, batching: str, loops: str):
    """`MetaLearner.step` of the few-shot learner over a meta-batch, compiled."""
    model = Conv4(num_classes=args.ways)
    init = lambda key: model.init(key, jnp.zeros((1, args.size, args.size, 3)))
    learner = make_learner(
        model.apply, init, inner_learning_rate=0.01, first_order=algo == "fomaml", matching="kl"
    )
    config = MetaConfig(
        algo=CORE_ALGO[algo],
        inner_steps=inner,
        bootstrap_steps=max(boot, 1) if algo == "bmg" else 1,  # L is BMG's alone
        learning_rate=1e-3,
        target_step_size=0.01,
        unroll_loop=loops == "unrolled",
    )
    meta_learner = make_meta_learner(learner, config, reduce=over_batch(batching))

    def step(meta_state, tasks, key):
        return meta_learner.step(meta_state, task_states(meta_state.meta_params, tasks), key)

    meta_state = meta_learner.init(init(jax.random.key(0)))
    tasks = random_tasks(args)
    start = time.perf_counter()
    compiled = jax.jit(step).lower(meta_state, tasks, jax.random.key(0)).compile()
    compile_s = time.perf_counter() - start
    return (compiled, meta_state, tasks), {"compile_s": compile_s, **memory_stats(compiled)}


def main() -> None:
    args = parse_args()
    if args.formulations_only:
        configs = [
            ("maml", 5, 0, batching, loops)
            for loops in ("unrolled", "scan")
            for batching in ("unroll", "map", "vmap")
        ]
    else:
        form = (args.batching, args.loops)
        configs = [("maml", k, 0, *form) for k in args.maml_inner_steps]
        configs += [("fomaml", 5, 0, *form)]
        configs += [
            ("bmg", i, b, *form) for i in args.bmg_inner_steps for b in args.bootstrap_steps
        ]
    runs, stats = [], []
    for algo, inner, boot, batching, loops in configs:
        label = f"{algo} {inner} inner steps L={boot} ({batching}, {loops} loops)"
        print(f"compiling {label} ...", flush=True)
        run, stat = compile_meta_step(args, algo, inner, boot, batching, loops)
        runs.append(run)
        stats.append(stat)
    keys = list(jax.random.split(jax.random.key(1), args.repeats))
    times = time_interleaved(runs, keys, args.warmup)
    # The unit: MAML with 5 inner steps (the protocol's) when it ran, else the first config;
    # the ratio columns name the one that was used.
    reference = next((i for i, c in enumerate(configs) if c[0] == "maml" and c[1] == 5), 0)
    unit = f"x {configs[reference][0]} ({configs[reference][1]} inner steps)"
    ref_ms = statistics.median(times[reference])
    ref_mib = stats[reference]["temp_mib"]
    rows = []
    for (algo, inner, boot, batching, loops), stat, ms in zip(configs, stats, times, strict=True):
        median = statistics.median(ms)
        rows.append(
            dict(
                algo=algo, inner_steps=inner, bootstrap_steps=boot if algo == "bmg" else None,
                batching=batching, loops=loops,
                ms_per_meta_step=median, time_vs_unit=ratio(median, ref_ms),
                temp_mib=stat["temp_mib"], memory_vs_unit=ratio(stat["temp_mib"], ref_mib),
                compile_s=stat["compile_s"],
            )
        )  # fmt: skip
    title = (
        f"{args.ways}-way {args.shots}-shot, {args.queries} queries, {args.size}x{args.size}, "
        f"meta-batch {args.meta_batch_size}, median of {args.repeats}"
    )
    print(f"\n{title}\n")
    print(f"| algo | inner steps | L | batching | loops | s / meta-step | {unit} | "
          f"temp memory (MiB) | {unit} | compile (s) |")  # fmt: skip
    print("|---|---:|---:|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['algo']} | {r['inner_steps']} | {r['bootstrap_steps'] or '-'} | "
            f"{r['batching']} | {r['loops']} | "
            f"{r['ms_per_meta_step'] / 1e3:.3f} | {fmt(r['time_vs_unit'], '.2f')} | "
            f"{fmt(r['temp_mib'], '.1f')} | {fmt(r['memory_vs_unit'], '.2f')} | "
            f"{r['compile_s']:.1f} |"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"setting": title, "machine": machine_description(), "unit": unit, "rows": rows},
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
