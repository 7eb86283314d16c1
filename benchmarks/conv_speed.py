"""Convolutions on CPU inside and outside a loop: flax's `nn.Conv` (XLA's convolution) against
bmg's `Conv` (the same layer as one matrix product over patches), for the MinAtar and IMPALA
torsos.

Each row times the gradient of a torso's summed features with respect to its parameters on one
batch, jitted alone ("direct") and inside a one-step `lax.scan` ("in a loop": where every
meta-step of the compiled runner runs), mean of `--repeats` calls after one warm-up (compile not
included). On CPU, XLA's convolution kernel gradient is 10-15x slower inside a loop (JAX issue
#12868); the ratio column is xla / patches in the same run.

    python benchmarks/conv_speed.py [--batch 320] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from bmg.agents.torsos import ImpalaTorso, MinAtarTorso

TORSOS = {
    "minatar 10x10x4": (lambda conv: MinAtarTorso(conv=conv), (10, 10, 4)),
    "impala 84x84x4 (channels 16,32,32)": (lambda conv: ImpalaTorso(conv=conv), (84, 84, 4)),
}


def seconds(fn, params, repeats: int) -> float:
    jax.block_until_ready(fn(params))
    start = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(fn(params))
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=320, help="frames per batch (B x T)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, batch {args.batch}")
    print("| torso | conv | direct s | in a loop s | loop / direct |")
    print("|---|---|---:|---:|---:|")
    for name, (make, shape) in TORSOS.items():
        obs = jax.random.uniform(jax.random.key(1), (args.batch, *shape))
        times = {}
        for conv in ("xla", "patches"):
            torso = make(conv)
            params = torso.init(jax.random.key(0), obs[:1])

            def grad_sum(params, torso=torso, obs=obs):
                grads = jax.grad(lambda p: jnp.sum(torso.apply(p, obs)))(params)
                return sum(jnp.sum(g) for g in jax.tree.leaves(grads))

            def in_loop(params, grad_sum=grad_sum):
                return jax.lax.scan(lambda c, _: (c + grad_sum(params), None), 0.0, length=1)[0]

            direct = seconds(jax.jit(grad_sum), params, args.repeats)
            looped = seconds(jax.jit(in_loop), params, args.repeats)
            times[conv] = (direct, looped)
            print(f"| {name} | {conv} | {direct:.3f} | {looped:.3f} | {looped / direct:.1f}x |")
        (xd, xl), (pd, pl) = times["xla"], times["patches"]
        print(f"| {name} | xla / patches | {xd / pd:.1f}x | {xl / pl:.1f}x | |")


if __name__ == "__main__":
    main()
