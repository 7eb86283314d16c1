"""What recording costs per meta-step at one seed, and our rate against the public PyTorch port.

    python benchmarks/recording_cost.py [--chunk-steps 40000]

For Two-colors fixed and BMG (K = 7, L = 9) at one seed: environment steps per second with the
probes and metrics a run records per meta-step (`recorded_probes`, `recorded_metrics`) and with
the two counters alone (env_steps, reward_sum), the best of 4 chunks after a warm-up, and each
beside the port's rate (MagiFeeney/Bootstrapped-Meta-Learning, one thread, measured side by side
on this kind of 2-core machine: A2C 1,051 and BMG K = 7, L = 9 435 environment steps/s).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from machine import PYTORCH_PORT  # noqa: E402  (benchmarks/machine.py)

from bmg.core.config import MetaConfig
from bmg.experiments.two_colors.system import (
    TwoColorsConfig,
    make_learner,
    recorded_metrics,
    recorded_probes,
)
from bmg.train.anakin import Anakin
from bmg.train.lifetime import LifetimeConfig

PORT = {"fixed": PYTORCH_PORT[("fixed", 1, None)], "bmg": PYTORCH_PORT[("bmg", 7, 9)]}


def rate(config: TwoColorsConfig, probes, metrics, chunks: int = 4) -> float:
    runner = Anakin(
        make_learner(config),
        config.meta,
        num_seeds=1,
        meta_steps_per_chunk=config.meta_steps_per_chunk,
        num_chunks=10**6,
        metrics=metrics,
        probes=probes,
    )
    runner.compile()
    state, _, _ = runner.run_chunk(runner.start())  # warm-up
    best = 0.0
    for _ in range(chunks):
        start = time.perf_counter()
        state, _, _ = runner.run_chunk(state)
        seconds = time.perf_counter() - start
        best = max(best, config.meta_steps_per_chunk * config.steps_per_meta_step / seconds)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunk-steps", type=int, default=40_000)
    args = parser.parse_args()
    settings = {
        "fixed": MetaConfig(algo="fixed"),
        "bmg": dataclasses.replace(TwoColorsConfig.meta, inner_steps=7, bootstrap_steps=9),
    }
    print(
        "| learner | recorded steps/s | x port | counters only steps/s | x port | recorded / bare |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    lifetime = LifetimeConfig(steps=10**7, seeds=1, chunk_steps=args.chunk_steps)
    for name, meta in settings.items():
        config = TwoColorsConfig(meta=meta, lifetime=lifetime)
        full = rate(config, recorded_probes(config), recorded_metrics(config))
        bare = rate(config, ("env_steps", "reward_sum"), ())
        port = PORT[name]
        print(
            f"| {name} | {full:,.0f} | {full / port:.1f} | {bare:,.0f} | {bare / port:.1f} | "
            f"{full / bare:.3f} |"
        )


if __name__ == "__main__":
    main()
