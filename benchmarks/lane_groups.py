"""Lanes in groups: Two-colors' aggregate rate at 16 and 64 lanes, all of a device's lanes in one
vmap against groups of 16 and 8 lanes run one after another (`lane_group`).

    python benchmarks/lane_groups.py --algo fixed --chunk-steps 20000
    python benchmarks/lane_groups.py --algo bmg --chunk-steps 4000

Each line: environment steps per second of all lanes together over 3 chunks after a warm-up
chunk, compilation excluded (BMG's target steps counted). Rates are comparable within one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from bmg.experiments.command import use_all_cpu_cores

use_all_cpu_cores()  # both cores as JAX devices, as the CLI runs

from bmg.core.config import MetaConfig  # noqa: E402
from bmg.experiments.two_colors.system import (  # noqa: E402
    TwoColorsConfig,
    make_learner,
    recorded_metrics,
    recorded_probes,
)
from bmg.train.anakin import Anakin  # noqa: E402
from bmg.train.lifetime import LifetimeConfig  # noqa: E402

SETTINGS = [(16, None), (64, None), (64, 16), (64, 8)]
"""(lanes, lane_group) pairs; None: all of a device's lanes in one vmap."""


def rate(config: TwoColorsConfig, group: int | None, chunks: int = 3) -> float:
    runner = Anakin(
        make_learner(config),
        config.meta,
        num_seeds=config.lifetime.seeds,
        meta_steps_per_chunk=config.meta_steps_per_chunk,
        num_chunks=config.num_chunks,
        metrics=recorded_metrics(config),
        probes=recorded_probes(config),
        lane_group=group,
    )
    runner.compile()
    state, _, _ = runner.run_chunk(runner.start())  # warm-up
    start = time.perf_counter()
    for _ in range(chunks):
        state, _, _ = runner.run_chunk(state)
    seconds = time.perf_counter() - start
    return (
        chunks
        * config.meta_steps_per_chunk
        * config.steps_per_meta_step
        * config.lifetime.seeds
        / seconds
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=("fixed", "bmg"), default="fixed")
    parser.add_argument("--chunk-steps", type=int, default=20_000, help="steps per lane per chunk")
    args = parser.parse_args()
    meta = {
        "fixed": MetaConfig(algo="fixed"),
        "bmg": dataclasses.replace(TwoColorsConfig.meta, inner_steps=7, bootstrap_steps=9),
    }[args.algo]
    for lanes, group in SETTINGS:
        lifetime = LifetimeConfig(steps=10**7, seeds=lanes, chunk_steps=args.chunk_steps)
        config = TwoColorsConfig(meta=meta, lifetime=lifetime)
        print(f"{args.algo} lanes {lanes} lane_group {group}: {rate(config, group):,.0f} steps/s")


if __name__ == "__main__":
    main()
