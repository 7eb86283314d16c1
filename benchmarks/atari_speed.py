"""Atari (ALE) throughput of the Sebulba runner: actors alone, learner alone, the whole system.

    python benchmarks/atari_speed.py [--game Breakout] [--threads 1,2,4] [--envs-per-thread 8]
                                     [--rollout-length 20] [--algo stacx] [--seconds 20]
                                     [--small] [--learner-only] [--json PATH]

Frames are emulator frames (agent steps x frame skip 4; ``bmg.envs.atari``). On each setting the
programs are compiled first by a short warm-up run (not timed), then:

* actors alone: ``Sebulba.run(..., learn=False)`` for about --seconds: the actor threads act
  with the policy and step their games; the learner takes the rollouts and drops them;
* learner alone: the meta-step (``--algo``: impala = fixed, stacx = MG K = 1, bmg = BMG L = 2)
  repeated on one fixed batch of B = --envs-per-thread streams x T steps on the host, including
  its transfer to the learner devices;
* whole system: ``Sebulba.run`` learning for about --seconds, with its time split: actors'
  env / inference / queue-put wait / parameter wait (summed over threads), the learner's
  queue-get wait / stack / transfer / step / publish, and the policy lag.

The STACX learner is the paper's (IMPALA ResNet torso, 3 heads) unless --small, which uses 8
filters per section and 64 hidden units (for CPUs). --learner-only measures the learner alone
(one actor thread's games are made for their shapes, never stepped).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time

import jax
import numpy as np

from bmg.agents.stacx import StacxConfig, sebulba_agent
from bmg.core import MetaConfig
from bmg.envs.atari import AtariConfig, make_vector_env
from bmg.experiments.atari.config import SETTINGS, AtariExperimentConfig
from bmg.train.sebulba import Sebulba, SebulbaConfig, Stats


def system_meta(algo: str, **fields) -> MetaConfig:
    """The meta-learner `bmg atari --algo ALGO` runs (its Adam, K = 1), with ``fields`` set."""
    config = SETTINGS.select(AtariExperimentConfig(), {"algo": algo}, "default")
    return dataclasses.replace(config.meta, **fields)


ALGOS = {
    "impala": system_meta("impala"),  # fixed
    "stacx": system_meta("stacx"),  # MG, K = 1
    "bmg": system_meta("bmg", bootstrap_steps=2),  # BMG, K = 1, L = 2, from the target
}


def make(args, threads: int) -> Sebulba:
    stacx = StacxConfig(torso="impala")
    if args.small:
        stacx = dataclasses.replace(stacx, impala_channels=(8, 8, 8), hidden_size=64)
    config = SebulbaConfig(
        num_actor_threads=threads,
        envs_per_thread=args.envs_per_thread,
        rollout_length=args.rollout_length,
        queue_size=max(1, threads),
    )
    atari = AtariConfig(game=args.game, num_envs=args.envs_per_thread)
    return Sebulba(
        config, sebulba_agent(stacx), ALGOS[args.algo], lambda i: make_vector_env(atari, 1000 * i)
    )


def timed_run(runner: Sebulba, seconds: float, learn: bool) -> Stats:
    """A warm-up update (compiles), then a run stopped after about ``seconds``."""
    state, _ = runner.run(1, learn=learn)
    runner.stats = Stats()
    start = time.perf_counter()
    stop = lambda version, metrics, stats: time.perf_counter() - start > seconds and runner.stop()
    if learn:
        runner.run(10**9, state=state, learn=True, on_update=stop)
    else:
        deadline = threading_stop(runner, seconds)
        runner.run(10**9, state=state, learn=False)
        deadline.cancel()
    return runner.stats


def threading_stop(runner: Sebulba, seconds: float):
    import threading

    timer = threading.Timer(seconds, runner.stop)
    timer.start()
    return timer


def learner_alone(runner: Sebulba, seconds: float) -> dict:
    """Meta-steps on one fixed host batch (compiled first), transfer included."""
    shapes = jax.eval_shape(runner.agent.learner.init_state, jax.random.key(0)).extras.rollouts
    rng = np.random.default_rng(0)
    batch = jax.tree.map(
        lambda s: (
            rng.integers(0, 2, s.shape).astype(s.dtype)
            if s.dtype != np.uint8
            else rng.integers(0, 256, s.shape, dtype=np.uint8)
        ),
        shapes,
    )
    batch = batch._replace(discount_t=np.ones_like(batch.discount_t))
    logits = np.zeros((*shapes.actions.shape, runner.envs[0].num_actions), np.float32)
    state = runner.init_learner()
    start = time.perf_counter()
    state, metrics = runner.learner_step(state, batch, logits)
    jax.block_until_ready(metrics)
    compile_seconds = time.perf_counter() - start
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        state, metrics = runner.learner_step(state, batch, logits)
        jax.block_until_ready(metrics)
        steps += 1
    elapsed = time.perf_counter() - start
    frames = steps * runner.num_batches * runner.config.batch_size
    frames *= runner.config.rollout_length * runner.frames_per_step
    return {
        "compile_s": compile_seconds,
        "step_s": elapsed / steps,
        "fps": frames / elapsed,
    }


def row(threads: int, acting: dict, learner_fps: float, whole: dict) -> str:
    """One Markdown table row: frames/s and the time shares (percent of each side's time)."""
    actor = ("env", "inference", "put_wait", "params_wait")
    learner = ("get_wait", "stack", "transfer", "step", "publish")
    actor_total = max(sum(whole[f"actor/{k}"] for k in actor), 1e-9)
    learner_total = max(sum(whole[f"learner/{k}"] for k in learner), 1e-9)
    a = {k: 100 * whole[f"actor/{k}"] / actor_total for k in actor}
    c = {k: 100 * whole[f"learner/{k}"] / learner_total for k in learner}
    return (
        f"| {threads} | {acting['fps_acted']:,.0f} | {learner_fps:,.0f} | "
        f"{whole['fps_learned']:,.0f} | {a['env']:.0f} / {a['inference']:.0f} / "
        f"{a['put_wait']:.0f} / {a['params_wait']:.0f} | {c['get_wait']:.0f} / "
        f"{c['stack'] + c['transfer']:.0f} / {c['step']:.0f} | "
        f"{whole['lag_mean']:.2f} ({whole['lag_max']}) |"
    )


def main() -> None:
    # The runners of 1, 2, 4 threads compile the same programs: compile them once.
    jax.config.update("jax_compilation_cache_dir", "/tmp/bmg-atari-speed-cache")
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default="Breakout")
    parser.add_argument("--threads", default="1,2,4")
    parser.add_argument("--envs-per-thread", type=int, default=8)
    parser.add_argument("--rollout-length", type=int, default=20)
    parser.add_argument("--algo", choices=sorted(ALGOS), default="stacx")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--learner-only", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{jax.devices()[0].platform} x {jax.device_count()}; {args.game}, {args.algo}, "
        f"E = {args.envs_per_thread} envs/thread, T = {args.rollout_length}"
        f"{', small torso' if args.small else ''}"
    )
    rows, results = [], {}
    if args.learner_only:
        with make(args, 1) as runner:
            learner = learner_alone(runner, args.seconds)
        print(
            f"learner alone: {learner['step_s']:.3f} s per meta-step, {learner['fps']:,.0f} "
            f"frames/s, compile {learner['compile_s']:.1f} s"
        )
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"learner": learner}, f, indent=1)
        return
    for threads in [int(t) for t in args.threads.split(",")]:
        with make(args, threads) as runner:
            acting = timed_run(runner, args.seconds, learn=False).summary(runner.stats.seconds)
            learner = learner_alone(runner, args.seconds) if threads == 1 or not rows else None
            whole = timed_run(runner, args.seconds, learn=True)
            whole = whole.summary(whole.seconds)
        if learner is not None:
            results["learner"] = learner
        results[threads] = {"actors": acting, "system": whole}
        rows.append(row(threads, acting, results["learner"]["fps"], whole))
    print(
        "\n| actor threads | actors alone (frames/s) | learner alone (frames/s) | whole system "
        "(frames/s learned) | actor time % env / inference / put wait / params wait | learner "
        "time % get wait / stack+transfer / step | policy lag mean (max) |"
    )
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(
        f"\nlearner alone: {results['learner']['step_s']:.3f} s per meta-step, compile "
        f"{results['learner']['compile_s']:.1f} s"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({str(k): v for k, v in results.items()}, f, indent=1)


if __name__ == "__main__":
    main()
