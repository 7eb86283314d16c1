"""The compiled Two-colors lifetime: determinism, seeds, step and reward accounting, sharding.

Every run is tiny (16-unit networks, 4-step rollouts, a 3 x 3 grid, a few meta-steps); the
learner's reward history is made long enough to hold every rollout of a run, so the trace can be
checked against the learner's own record of each rollout's mean reward.
"""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from bmg.agents.actor_critic import ActorCriticConfig
from bmg.experiments.two_colors import (
    EnvConfig,
    Lifetime,
    TwoColorsConfig,
    load_checkpoint,
    make_train,
    run_lifetime,
    save_checkpoint,
)

T = 4
AGENT = ActorCriticConfig(hidden_size=16, rollout_length=T, context_length=17, meta_hidden_size=8)
ENV = EnvConfig(grid_size=3, switch_every=24, step_penalty=0.05)
# ac: 2 chunks of 8 meta-steps of one update each: 1 + 16 rollouts.
AC = TwoColorsConfig(algo="ac", seeds=2, seed=0, steps=64, chunk_steps=32, ac=AGENT, env=ENV)
# One chunk of 32 steps each: 1 + 8 rollouts.
META = {
    "mg": dataclasses.replace(AC, algo="mg", k=2, steps=32),
    "bmg-target": dataclasses.replace(AC, algo="bmg", k=1, l=2, steps=32, continue_from="target"),
    "bmg-inner": dataclasses.replace(AC, algo="bmg", k=2, l=3, steps=32, continue_from="inner"),
}


def to_host(tree):
    def leaf(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        return np.asarray(x)

    return jax.tree.map(leaf, tree)


def run_fast(fn, *args):
    """`jax.jit(fn)(*args)`, compiled with XLA's backend optimisation off (same program, faster
    to compile on a small CPU)."""
    options = {"xla_backend_optimization_level": 0}
    return jax.jit(fn).lower(*args).compile(compiler_options=options)(*args)


def run(config, lifetime=None):
    """Every chunk of a Lifetime: (first rewards, Trace [seeds, meta-steps], final carry)."""
    lifetime = Lifetime(config) if lifetime is None else lifetime
    carry, first = lifetime.start()
    traces = []
    for _ in range(config.num_chunks):
        carry, trace = lifetime.run_chunk(carry)
        traces.append(trace)
    trace = type(traces[0])(*(np.concatenate(x, axis=1) for x in zip(*traces, strict=True)))
    return first, trace, to_host(carry)


# --- The same AC run with the seed axis sharded over two host devices, in a subprocess ---------

SHARDED = """
import json
import jax
import numpy as np
from bmg.agents.actor_critic import ActorCriticConfig
from bmg.agents.q_learning import QLearningConfig
from bmg.experiments.two_colors import EnvConfig, Lifetime, TwoColorsConfig

assert len(jax.devices()) == 2, jax.devices()
config = {config}
lifetime = Lifetime(config)
assert lifetime.sharding.mesh.devices.size == 2, lifetime.sharding
carry, first = lifetime.start()


def check_sharded(tree):
    for x in jax.tree.leaves(tree):
        assert len(x.sharding.device_set) == 2, x.sharding
        assert [s.data.shape[0] for s in x.addressable_shards] == [1, 1], x.sharding


check_sharded(carry)
traces = []
for _ in range(config.num_chunks):
    carry, trace = lifetime.run_chunk(carry)
    check_sharded(carry)
    traces.append(trace)
print(json.dumps({{
    "first": first.tolist(),
    "env_steps": np.concatenate([t.env_steps for t in traces], 1).tolist(),
    "reward": np.concatenate([t.reward for t in traces], 1).astype(float).tolist(),
    "entropy": np.concatenate([t.policy_entropy for t in traces], 1).astype(float).tolist(),
}}))
"""


@pytest.fixture(scope="module")
def sharded_subprocess():
    """Started first, so that it compiles on the second core while this process compiles."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    process = subprocess.Popen(
        [sys.executable, "-c", SHARDED.format(config=repr(AC))],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield process
    if process.poll() is None:
        process.kill()
        process.communicate()


@pytest.fixture(scope="module")
def ac_lifetime(sharded_subprocess):
    return Lifetime(AC)


@pytest.fixture(scope="module")
def ac_run(ac_lifetime):
    return run(AC, ac_lifetime)


# --- Determinism and seeds -----------------------------------------------------------------------


def test_same_config_and_seed_give_identical_traces(ac_lifetime, ac_run):
    first, trace, carry = ac_run
    again_first, again_trace, again_carry = run(AC, ac_lifetime)
    np.testing.assert_array_equal(again_first, first)
    for name, x, y in zip(trace._fields, again_trace, trace, strict=True):
        np.testing.assert_array_equal(x, y, err_msg=name)
    for x, y in zip(jax.tree.leaves(again_carry), jax.tree.leaves(carry), strict=True):
        np.testing.assert_array_equal(x, y)


class Interrupted(Exception):
    pass


def test_a_resumed_lifetime_equals_the_uninterrupted_one(ac_lifetime, ac_run, tmp_path):
    """Stopped after chunk 1 of 2 and resumed from its checkpoint files: the same numbers."""
    first, trace, carry = ac_run

    def stop_after_saving(checkpoint):
        save_checkpoint(tmp_path, checkpoint)
        raise Interrupted

    with pytest.raises(Interrupted):
        run_lifetime(AC, stop_after_saving, lifetime=ac_lifetime)
    resume = load_checkpoint(tmp_path, ac_lifetime)
    assert resume.chunks_done == 1 and resume.trace.reward.shape == (2, AC.meta_steps_per_chunk)
    resumed_trace, resumed_first, _ = run_lifetime(AC, lifetime=ac_lifetime, resume=resume)
    np.testing.assert_array_equal(resumed_first, first)
    for name, x, y in zip(trace._fields, resumed_trace, trace, strict=True):
        np.testing.assert_array_equal(x, y, err_msg=name)

    # A checkpoint of another configuration is refused, naming the file and the mismatch.
    with pytest.raises(ValueError, match=r"checkpoint.npz does not fit config.json.*needs"):
        load_checkpoint(tmp_path, Lifetime(dataclasses.replace(AC, seeds=3)))
    with pytest.raises(ValueError, match=r"does not exist: the run stopped before"):
        load_checkpoint(tmp_path / "nowhere", ac_lifetime)


def test_different_seeds_give_different_traces(ac_run):
    _, trace, carry = ac_run
    assert not np.array_equal(trace.reward[0], trace.reward[1])
    assert not np.array_equal(trace.policy_entropy[0], trace.policy_entropy[1])
    params = carry.learner_state.params["policy"]["params"]["Dense_0"]["kernel"]
    assert not np.array_equal(params[0], params[1])


def assert_same_seed(single, trace, seed):
    """`single` (1 seed) is seed `seed` of the batched `trace` (float32 tolerance)."""
    np.testing.assert_array_equal(single.env_steps, trace.env_steps[seed])
    for name in ("reward", "schedule", "policy_entropy", "meta_loss"):
        np.testing.assert_allclose(
            getattr(single, name), getattr(trace, name)[seed], rtol=1e-5, atol=1e-6, err_msg=name
        )


def test_two_seeds_equal_single_seed_runs(ac_lifetime, ac_run):
    """The 2-seed run with seed=0 is seeds 0 and 1 run alone, side by side."""
    first, trace, _ = ac_run
    # Seed 1 alone: a 1-seed Lifetime with seed=1.
    single_config = dataclasses.replace(AC, seeds=1, seed=1)
    lifetime = Lifetime(single_config)
    single_first, single, _ = run(single_config, lifetime)
    np.testing.assert_allclose(single_first, first[1:], rtol=1e-6)
    assert_same_seed(jax.tree.map(lambda x: x[0], single), trace, 1)

    # Seed 0 alone: its initial carry, cut from the 2-seed start, through the 1-seed chunks.
    carry, _ = ac_lifetime.start()
    carry = jax.tree.map(lambda x: x[:1], carry)
    chunks = []
    for _ in range(AC.num_chunks):
        carry, chunk = lifetime.run_chunk(carry)
        chunks.append(chunk)
    single = type(chunks[0])(*(np.concatenate(x, axis=1)[0] for x in zip(*chunks, strict=True)))
    assert_same_seed(single, trace, 0)


# --- Step and reward accounting ------------------------------------------------------------------


def check_accounting(config, first, trace, carry):
    """env_steps, trace rewards and the learner's own per-rollout reward history agree."""
    steps = config.steps_per_meta_step
    updates = config.updates_per_meta_step
    seeds, meta_steps = trace.reward.shape
    assert meta_steps == config.num_chunks * config.meta_steps_per_chunk

    # Exactly steps_per_meta_step environment steps per meta-step, targets' included; the first
    # rollout (collected at initialisation) counts. The environment's clock agrees.
    np.testing.assert_array_equal(np.diff(trace.env_steps, axis=1), steps)
    np.testing.assert_array_equal(trace.env_steps[:, 0], T + steps)
    extras = carry.learner_state.extras
    np.testing.assert_array_equal(extras.env_steps, trace.env_steps[:, -1])
    np.testing.assert_array_equal(extras.env_state.time, trace.env_steps[:, -1])
    np.testing.assert_array_equal(extras.reward_sum, 0.0)  # read and reset every meta-step

    # The learner's history holds the mean reward of every rollout of the run (oldest first).
    rollouts = 1 + meta_steps * updates
    history = extras.reward_history.astype(np.float64)
    assert history.shape == (seeds, config.ac.context_length) and rollouts <= history.shape[1]
    np.testing.assert_array_equal(history[:, :-rollouts], 0.0)
    rollout_rewards = T * history[:, -rollouts:]
    np.testing.assert_allclose(rollout_rewards[:, 0], first, atol=1e-5)
    per_meta_step = rollout_rewards[:, 1:].reshape(seeds, meta_steps, updates).sum(axis=-1)
    np.testing.assert_allclose(trace.reward, per_meta_step, atol=1e-5)
    np.testing.assert_allclose(
        first + trace.reward.sum(axis=1), rollout_rewards.sum(axis=1), atol=1e-5
    )
    # At most 1 in size per step, and the run sees more than one rollout reward.
    assert np.all(np.abs(trace.reward) <= steps + 1e-6)
    assert len(np.unique(np.round(rollout_rewards, 3))) > 1


def test_ac_accounting(ac_run):
    first, trace, carry = ac_run
    assert AC.steps_per_meta_step == T and AC.num_chunks == 2
    check_accounting(AC, first, trace, carry)
    np.testing.assert_allclose(trace.schedule, AGENT.entropy_weight, rtol=1e-6)
    np.testing.assert_array_equal(trace.meta_loss, 0.0)


@pytest.fixture(scope="module")
def meta_start():
    """The initial carry of every META run (same learner, same Adam meta-optimiser), 2 seeds."""
    init, _ = make_train(META["mg"])
    keys = jax.vmap(jax.random.key)(np.arange(2))
    return keys, run_fast(jax.vmap(init), keys)


@pytest.mark.parametrize("name", list(META))
def test_meta_learner_accounting(name, meta_start):
    config = META[name]
    expected_updates = {"mg": 2, "bmg-target": 1 + 2 - 1, "bmg-inner": 2 + 3 - 1}[name]
    assert config.steps_per_meta_step == expected_updates * T
    assert config.num_chunks == 1
    keys, carry = meta_start
    init, run_chunk = make_train(config)
    assert jax.eval_shape(jax.vmap(init), keys) == jax.eval_shape(lambda: carry)
    first = np.asarray(carry.learner_state.extras.reward_sum)
    carry, trace = to_host(run_fast(jax.vmap(run_chunk), carry))
    check_accounting(config, first, trace, carry)
    # The meta-parameters move: the entropy weight leaves its initial value.
    assert np.all(trace.meta_loss != 0)
    assert np.any(np.abs(trace.schedule[:, -1] - AGENT.entropy_weight) > 0)


# --- Sharding over two devices -------------------------------------------------------------------


def test_seed_axis_sharded_over_two_devices_gives_the_same_run(sharded_subprocess, ac_run):
    stdout, stderr = sharded_subprocess.communicate(timeout=300)
    assert sharded_subprocess.returncode == 0, stderr[-3000:]
    sharded = json.loads(stdout.strip().splitlines()[-1])
    first, trace, _ = ac_run
    if jax.default_backend() != "cpu":
        pytest.skip("the reference run is not on the CPU here")
    np.testing.assert_array_equal(sharded["env_steps"], trace.env_steps)
    np.testing.assert_allclose(sharded["first"], first, atol=1e-5)
    np.testing.assert_allclose(sharded["reward"], trace.reward, atol=1e-5)
    np.testing.assert_allclose(sharded["entropy"], trace.policy_entropy, rtol=1e-5)


# --- Configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: TwoColorsConfig(algo="mg", k=0), "k"),
        (lambda: TwoColorsConfig(algo="bmg", k=-1), "k"),
        (lambda: TwoColorsConfig(agent="q", algo="ac"), "algo"),
        (lambda: TwoColorsConfig(agent="q", algo="bmg", k=0, l=1), "k \\+ l - 1"),
        (lambda: TwoColorsConfig(k=True), "k"),
        (lambda: TwoColorsConfig(l=0), "l"),
        (lambda: TwoColorsConfig(algo="x"), "algo"),
        (lambda: TwoColorsConfig(steps=-1), "steps"),
        (lambda: TwoColorsConfig(steps=1.5), "steps"),
        (lambda: TwoColorsConfig(seeds=0), "seeds"),
        (lambda: TwoColorsConfig(chunk_steps=0), "chunk_steps"),
        (lambda: TwoColorsConfig(meta_learning_rate=0.0), "meta_learning_rate"),
        (lambda: TwoColorsConfig(target_step_size=-0.1), "target_step_size"),
        (lambda: TwoColorsConfig(continue_from="x"), "continue_from"),
        (lambda: TwoColorsConfig(ac=ActorCriticConfig(entropy_weight=1.5)), "entropy_weight"),
        (lambda: ActorCriticConfig(entropy_weight=0.0), "entropy_weight"),
        (lambda: ActorCriticConfig(hidden_size=0), "hidden_size"),
        (lambda: ActorCriticConfig(discount=1.5), "discount"),
        (lambda: ActorCriticConfig(max_grad_norm=-1.0), "max_grad_norm"),
        (lambda: ActorCriticConfig(context="x"), "context"),
        (lambda: ActorCriticConfig(matching="x"), "matching"),
        (lambda: TwoColorsConfig(env=EnvConfig(switch_every=0)), "switch_every"),
        (lambda: TwoColorsConfig(env=EnvConfig(grid_size=1)), "grid_size"),
        (lambda: TwoColorsConfig(env=EnvConfig(respawn="x")), "respawn"),
        (lambda: TwoColorsConfig(env=EnvConfig(step_penalty=-0.1)), "step_penalty"),
    ],
)
def test_bad_configuration_raises_naming_the_field(make, field):
    with pytest.raises(ValueError, match=rf"(^|\W){field}\W"):
        make()


def test_meta_step_sizes():
    small = dict(ac=AGENT, env=ENV)
    ac = TwoColorsConfig(algo="ac", k=5, l=7, chunk_steps=10, steps=50, **small)
    assert (ac.updates_per_meta_step, ac.steps_per_meta_step) == (1, T)
    assert (ac.meta_steps_per_chunk, ac.num_chunks) == (3, 5)  # 12-step chunks cover 50 steps
    mg = TwoColorsConfig(algo="mg", k=3, l=7, chunk_steps=1, steps=1, **small)
    assert (mg.updates_per_meta_step, mg.meta_steps_per_chunk, mg.num_chunks) == (3, 1, 1)
    bmg = TwoColorsConfig(algo="bmg", k=3, l=4, chunk_steps=100, steps=100, **small)
    assert (bmg.updates_per_meta_step, bmg.steps_per_meta_step) == (6, 24)
    assert (bmg.meta_steps_per_chunk, bmg.num_chunks) == (5, 1)
