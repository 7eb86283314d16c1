"""The Two-colors lifetime on the Anakin runner: determinism, seeds, step and reward accounting,
exact resume from the orbax checkpoint, and the configuration's validation and sizes.

Every run is tiny (16-unit networks, 4-step rollouts, a 3 x 3 grid, a few meta-steps); the
learner's reward context is made long enough to hold every rollout of a run, so the trace (built
from the cumulative `reward_sum` probe) can be checked against the learner's own record of each
rollout's mean reward. The seed axis sharded over two devices is the runner's own test
(tests/train/test_anakin.py); here the experiment's learner and report trace are checked.
Each lifetime compiles a program (tens of seconds on 2 shared cores): those tests are slow.
"""

import dataclasses

import jax
import numpy as np
import pytest

from bmg.agents.actor_critic import ActorCriticConfig
from bmg.agents.configs import QLambdaConfig
from bmg.core.config import MetaConfig
from bmg.experiments.two_colors.system import (
    MAX_STEPS,
    PRESET_VALUES,
    RELATED_GRID,
    EnvConfig,
    Trace,
    TwoColorsConfig,
    make_runner,
    report_trace,
)
from bmg.train.anakin import State
from bmg.train.checkpoint import CheckpointError
from bmg.train.lifetime import LifetimeConfig

T = 4
AGENT = ActorCriticConfig(hidden_size=16, rollout_length=T, context_length=17, meta_hidden_size=8)
ENV = EnvConfig(grid_size=3, switch_every=24, step_penalty=0.05)
# fixed: 2 chunks of 8 meta-steps of one update each: 1 + 16 rollouts (= context_length).
AC = TwoColorsConfig(
    meta=MetaConfig(algo="fixed"),
    lifetime=LifetimeConfig(steps=64, seeds=2, seed=0, chunk_steps=32),
    learner=AGENT,
    env=ENV,
)
# One chunk of 32 steps each: 1 + 8 rollouts. (BMG with continue_from="target", the default, is
# the CLI tests' tiny run: tests/experiments/test_cli.py checks its step accounting.)
SHORT = dataclasses.replace(AC.lifetime, steps=32)
META = {
    "mg": dataclasses.replace(
        AC, meta=MetaConfig(algo="mg", inner_steps=2, adam_eps=1e-4), lifetime=SHORT
    ),
    "bmg-inner-params": dataclasses.replace(
        AC,
        meta=MetaConfig(
            algo="bmg",
            inner_steps=2,
            bootstrap_steps=3,
            adam_eps=1e-4,
            continue_from="inner_params",
        ),
        lifetime=SHORT,
    ),
}


def with_lifetime(config, **fields):
    """`config` with some of its lifetime's fields replaced."""
    return dataclasses.replace(config, lifetime=dataclasses.replace(config.lifetime, **fields))


def host(tree):
    def leaf(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        return np.asarray(x)

    return jax.tree.map(leaf, tree)


def lifetime(runner, state=None, on_chunk=None):
    """(first rewards, report Trace [seeds, meta-steps], final carry on the host)."""
    result = runner.run(state, on_chunk=on_chunk)
    trace, first = report_trace(result.state.initial, result.state.trace)
    return first, trace, host(result.state.carry)


def assert_same_lifetime(a, b):
    for x, y, name in ((a[0], b[0], "first"), *zip(a[1], b[1], Trace._fields, strict=True)):
        np.testing.assert_array_equal(x, y, err_msg=name)
    for x, y in zip(jax.tree.leaves(a[2]), jax.tree.leaves(b[2]), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def ac_runner():
    return make_runner(AC)


@pytest.fixture(scope="module")
def ac_run(ac_runner):
    return lifetime(ac_runner)


# --- Determinism, resume and seeds ---------------------------------------------------------------


@pytest.mark.slow
def test_same_config_and_seed_give_identical_lifetimes(ac_runner, ac_run):
    assert_same_lifetime(lifetime(ac_runner), ac_run)


class Interrupted(Exception):
    pass


@pytest.mark.slow
def test_a_resumed_lifetime_equals_the_uninterrupted_one(ac_runner, ac_run, tmp_path):
    """Stopped after chunk 1 of 2 (its checkpoint saved) and restored from run_dir/checkpoints:
    bit-identical trace and final carry."""
    runner = make_runner(AC, tmp_path)
    assert runner.checkpointer.directory == tmp_path / "checkpoints"
    ac_runner.checkpointer = runner.checkpointer  # the compiled runner, checkpointing there

    def stop_after_chunk_1(info):
        if info.state.chunks_done == 1:
            raise Interrupted

    try:
        with pytest.raises(Interrupted):
            lifetime(ac_runner, on_chunk=stop_after_chunk_1)
        assert runner.checkpointer.all_steps() == [1]
        state = ac_runner.restore()
        assert state.chunks_done == 1
        assert state.trace["reward_sum"].shape == (2, AC.meta_steps_per_chunk)
        assert_same_lifetime(lifetime(ac_runner, state), ac_run)
    finally:
        ac_runner.checkpointer = None

    # A checkpoint of another configuration is refused, naming the mismatch; no checkpoint too.
    with pytest.raises(CheckpointError, match=r"checkpoints: the checkpoint was written with "):
        make_runner(with_lifetime(AC, seeds=3), tmp_path).restore()
    with pytest.raises(CheckpointError, match=r"holds no complete checkpoint"):
        make_runner(AC, tmp_path / "nowhere").restore()


@pytest.mark.slow
def test_different_seeds_give_different_lifetimes(ac_run):
    _, trace, carry = ac_run
    assert not np.array_equal(trace.reward[0], trace.reward[1])
    assert not np.array_equal(trace.policy_entropy[0], trace.policy_entropy[1])
    kernels = [x for x in jax.tree.leaves(carry.learner_state.params) if x.ndim == 3]
    assert kernels and not np.array_equal(kernels[0][0], kernels[0][1])


def assert_same_seed(single, trace, seed):
    """`single` (1 seed) is seed `seed` of the batched `trace` (float32 tolerance)."""
    np.testing.assert_array_equal(single.env_steps[0], trace.env_steps[seed])
    for name in ("reward", "schedule", "policy_entropy", "meta_loss"):
        np.testing.assert_allclose(
            getattr(single, name)[0],
            getattr(trace, name)[seed],
            rtol=1e-5,
            atol=1e-6,
            err_msg=name,
        )


@pytest.mark.slow
def test_two_seeds_equal_single_seed_runs(ac_runner, ac_run):
    """The 2-seed run with seed=0 is seeds 0 and 1 run alone, side by side."""
    first, trace, _ = ac_run
    # Seed 1 alone: a 1-seed runner with seed=1.
    single = make_runner(with_lifetime(AC, seeds=1, seed=1))
    single_first, single_trace, _ = lifetime(single)
    np.testing.assert_allclose(single_first, first[1:], rtol=1e-6)
    assert_same_seed(single_trace, trace, 1)

    # Seed 0 alone: its initial state, cut from the 2-seed start, through the 1-seed chunks.
    start = ac_runner.start()
    carry = jax.device_put(jax.tree.map(lambda x: x[:1], start.carry), single.sharding)
    initial = {k: v[:1] for k, v in start.initial.items()}
    state = State(carry, initial, single.start().pieces, 0, 0.0, 0.0)
    _, seed_0, _ = lifetime(single, state)
    assert_same_seed(seed_0, trace, 0)


# --- Step and reward accounting ------------------------------------------------------------------


def check_accounting(config, first, trace, carry):
    """env_steps, the trace's rewards and the learner's own per-rollout reward context agree."""
    steps = config.steps_per_meta_step
    updates = config.meta.updates_per_step
    seeds, meta_steps = trace.reward.shape
    assert meta_steps == config.num_chunks * config.meta_steps_per_chunk
    assert steps == updates * T

    # Exactly steps_per_meta_step environment steps per meta-step, targets' included; the first
    # rollout (collected at initialisation) counts. The stream's counter and clock agree.
    np.testing.assert_array_equal(np.diff(trace.env_steps, axis=1), steps)
    np.testing.assert_array_equal(trace.env_steps[:, 0], T + steps)
    np.testing.assert_array_equal(trace.env_steps[:, -1], config.total_env_steps)
    stream = carry.learner_state.extras.stream
    np.testing.assert_array_equal(stream.env_steps, trace.env_steps[:, -1])
    switch = config.env.switch_every
    np.testing.assert_array_equal(stream.env_state.time, trace.env_steps[:, -1] % (2 * switch))

    # The learner's context holds the mean reward of every rollout of the run (oldest first).
    rollouts = 1 + meta_steps * updates
    history = carry.learner_state.extras.reward_history.astype(np.float64)
    assert history.shape == (seeds, config.learner.context_length) and rollouts <= history.shape[1]
    np.testing.assert_array_equal(history[:, :-rollouts], 0.0)
    rollout_rewards = T * history[:, -rollouts:]
    np.testing.assert_allclose(rollout_rewards[:, 0], first, atol=1e-5)
    per_meta_step = rollout_rewards[:, 1:].reshape(seeds, meta_steps, updates).sum(axis=-1)
    np.testing.assert_allclose(trace.reward, per_meta_step, atol=1e-5)
    np.testing.assert_allclose(stream.reward_sum, rollout_rewards.sum(axis=1), atol=1e-5)
    # At most 1 in size per step, and the run sees more than one rollout reward.
    assert np.all(np.abs(trace.reward) <= steps + 1e-6)
    assert len(np.unique(np.round(rollout_rewards, 3))) > 1


@pytest.mark.slow
def test_fixed_accounting(ac_run):
    first, trace, carry = ac_run
    assert AC.steps_per_meta_step == T and AC.num_chunks == 2
    check_accounting(AC, first, trace, carry)
    np.testing.assert_allclose(trace.schedule, AGENT.entropy_cost, rtol=1e-6)
    np.testing.assert_array_equal(trace.meta_loss, 0.0)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(META))
def test_meta_learner_accounting(name):
    config = META[name]
    expected_updates = {"mg": 2, "bmg-inner-params": 2 + 3 - 1}[name]
    assert config.steps_per_meta_step == expected_updates * T
    assert config.num_chunks == 1
    first, trace, carry = lifetime(make_runner(config))
    check_accounting(config, first, trace, carry)
    # The meta-parameters move: the entropy cost leaves its initial value.
    assert np.all(trace.meta_loss != 0)
    assert np.any(np.abs(trace.schedule[:, -1] - AGENT.entropy_cost) > 0)


# --- Configuration ------------------------------------------------------------------------------


def preset(name, agent=None, algo=None):
    """The preset's config for `agent` and `algo` (as --agent / --algo choose it)."""
    return PRESET_VALUES[name].config(agent, algo)


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: TwoColorsConfig(meta=MetaConfig(algo="mg", inner_steps=0)), r"inner_steps \(K\)"),
        (lambda: TwoColorsConfig(meta=MetaConfig(inner_steps=-1)), r"inner_steps \(K\)"),
        (lambda: preset("default", agent="q", algo="ac"), "algo"),
        (lambda: preset("default", algo="decay"), "algo"),  # decay is Q(lambda)'s only
        (lambda: TwoColorsConfig(learner="x"), "learner"),
        (
            lambda: TwoColorsConfig(
                meta=MetaConfig(inner_steps=0, bootstrap_steps=1, continue_from="target"),
                learner=QLambdaConfig(),
            ),
            r"inner_steps \+ bootstrap_steps - 1",
        ),
        (lambda: TwoColorsConfig(meta=MetaConfig(inner_steps=True)), r"inner_steps \(K\)"),
        (lambda: TwoColorsConfig(meta=MetaConfig(bootstrap_steps=0)), r"bootstrap_steps \(L\)"),
        (lambda: TwoColorsConfig(meta=MetaConfig(algo="x")), "algo"),
        # fixed takes one learner update per step and bootstraps no target
        (lambda: TwoColorsConfig(meta=MetaConfig(algo="fixed", inner_steps=5)), "inner_steps"),
        (lambda: TwoColorsConfig(meta=MetaConfig(algo="fixed", bootstrap_steps=7)), r"\(L\)"),
        (lambda: TwoColorsConfig(lifetime=LifetimeConfig(steps=-1)), "steps"),
        (lambda: TwoColorsConfig(lifetime=LifetimeConfig(steps=1.5)), "steps"),
        (lambda: TwoColorsConfig(lifetime=LifetimeConfig(seeds=0)), "seeds"),
        (lambda: TwoColorsConfig(lifetime=LifetimeConfig(seed=-1)), "seed"),
        (lambda: TwoColorsConfig(lifetime=LifetimeConfig(chunk_steps=0)), "chunk_steps"),
        (lambda: TwoColorsConfig(meta=MetaConfig(learning_rate=0.0)), "learning_rate"),
        (lambda: TwoColorsConfig(meta=MetaConfig(learning_rate=float("inf"))), "learning_rate"),
        (lambda: TwoColorsConfig(meta=MetaConfig(adam_eps=float("nan"))), "adam_eps"),
        (lambda: TwoColorsConfig(meta=MetaConfig(target_step_size=-0.1)), "target_step_size"),
        (lambda: TwoColorsConfig(meta=MetaConfig(continue_from="x")), "continue_from"),
        # BMG's learner on Two-colors goes on from the target or the inner parameters
        (lambda: TwoColorsConfig(meta=MetaConfig(continue_from="inner")), "continue_from"),
        (
            lambda: TwoColorsConfig(
                meta=MetaConfig(algo="mg"), learner=QLambdaConfig(epsilon_decay=True)
            ),
            "epsilon_decay",
        ),
        (
            lambda: TwoColorsConfig(learner=ActorCriticConfig(entropy_cost=1.5)),
            "entropy_cost",
        ),
        (
            lambda: TwoColorsConfig(
                meta=MetaConfig(algo="mg"), learner=ActorCriticConfig(entropy_cost=0.0)
            ),
            "entropy_cost",
        ),
        (
            lambda: TwoColorsConfig(learner=ActorCriticConfig(entropy_cost=0.0)),  # bmg
            "entropy_cost",
        ),
        (lambda: ActorCriticConfig(entropy_cost=-0.1), "entropy_cost"),
        (lambda: ActorCriticConfig(meta_initial=1.0), "meta_initial"),
        (lambda: ActorCriticConfig(optimizer="rmsprop"), "optimizer"),
        (lambda: ActorCriticConfig(context_normalization="z"), "context_normalization"),
        (lambda: ActorCriticConfig(hidden_size=0), "hidden_size"),
        (lambda: ActorCriticConfig(discount=1.5), "discount"),
        (lambda: ActorCriticConfig(max_grad_norm=-1.0), "max_grad_norm"),
        (lambda: ActorCriticConfig(context="x"), "context"),
        (lambda: ActorCriticConfig(matching="x"), "matching"),
        (lambda: TwoColorsConfig(env=EnvConfig(switch_every=0)), "switch_every"),
        (lambda: TwoColorsConfig(env=EnvConfig(grid_size=1)), "grid_size"),
        (lambda: TwoColorsConfig(env=EnvConfig(respawn="x")), "respawn"),
        (lambda: TwoColorsConfig(env=EnvConfig(step_penalty=-0.1)), "step_penalty"),
        (
            lambda: TwoColorsConfig(lifetime=LifetimeConfig(seed=2**31 - 1, seeds=2)),
            r"seed \+ seeds",
        ),
    ],
)
def test_bad_configuration_raises_naming_the_field(make, field):
    with pytest.raises(ValueError, match=rf"(^|\W){field}\W"):
        make()


def test_a_meta_step_longer_than_the_lifetime_is_refused():
    with pytest.raises(ValueError, match=r"one meta-step takes 16,000,000 environment steps .*"):
        TwoColorsConfig(
            meta=MetaConfig(algo="mg", inner_steps=1_000_000),
            lifetime=LifetimeConfig(steps=1_000),
        )
    # BMG: K + L - 1 rollouts of T = 16; 16 * 16 = 256 steps is more than 200.
    bmg = dataclasses.replace(TwoColorsConfig.meta, inner_steps=1, bootstrap_steps=16)
    with pytest.raises(ValueError, match=r"\(16 rollouts of 16\), more than lifetime.steps = 200"):
        TwoColorsConfig(meta=bmg, lifetime=LifetimeConfig(steps=200))
    assert TwoColorsConfig(meta=bmg, lifetime=LifetimeConfig(steps=256)).num_chunks


def test_more_steps_than_an_int32_counter_holds_are_refused():
    fixed = MetaConfig(algo="fixed")
    with pytest.raises(ValueError, match=r"int32 step counter holds \(2,147,483,647\)"):
        TwoColorsConfig(meta=fixed, lifetime=LifetimeConfig(steps=3_000_000_000))
    # The largest run the message allows fits, whole chunks and the first rollout included.
    config = TwoColorsConfig(meta=fixed, lifetime=LifetimeConfig(steps=MAX_STEPS - 200_000))
    assert config.total_env_steps <= MAX_STEPS


def test_meta_step_sizes():
    small = dict(learner=AGENT, env=ENV)
    fixed = TwoColorsConfig(
        meta=MetaConfig(algo="fixed"), lifetime=LifetimeConfig(steps=50, chunk_steps=10), **small
    )
    assert (fixed.meta.updates_per_step, fixed.steps_per_meta_step) == (1, T)
    assert (fixed.meta_steps_per_chunk, fixed.num_chunks) == (3, 5)  # 12-step chunks, 50 steps
    assert fixed.total_env_steps == 5 * 12 + T
    mg = TwoColorsConfig(
        meta=MetaConfig(algo="mg", inner_steps=3),
        lifetime=LifetimeConfig(steps=12, chunk_steps=1),
        **small,
    )
    assert (mg.meta.updates_per_step, mg.meta_steps_per_chunk, mg.num_chunks) == (3, 1, 1)
    bmg = TwoColorsConfig(
        meta=MetaConfig(algo="bmg", inner_steps=3, bootstrap_steps=4, continue_from="target"),
        lifetime=LifetimeConfig(steps=100, chunk_steps=100),
        **small,
    )
    assert (bmg.meta.updates_per_step, bmg.steps_per_meta_step) == (6, 24)
    assert (bmg.meta_steps_per_chunk, bmg.num_chunks) == (5, 1)


def test_each_algo_builds_its_meta_learner_from_the_preset():
    """--algo (`Preset.config`) sets the meta-learner: fixed and decay one learner update per
    step, L = 1 and continue_from inner but for bmg, K = 0 for bmg on epsilon; decay sets
    learner.epsilon_decay."""
    meta = {
        (agent, algo): preset("default", agent, algo).meta
        for agent, algo in (("ac", "fixed"), ("ac", "mg"), ("ac", "bmg"), ("q", "bmg"))
    }
    fields = ("algo", "inner_steps", "bootstrap_steps", "continue_from")
    assert {key: tuple(getattr(m, name) for name in fields) for key, m in meta.items()} == {
        ("ac", "fixed"): ("fixed", 1, 1, "inner"),
        ("ac", "mg"): ("mg", 1, 1, "inner"),
        ("ac", "bmg"): ("bmg", 1, 8, "target"),
        ("q", "bmg"): ("bmg", 0, 8, "target"),
    }
    q_decay = preset("default", agent="q", algo="decay")
    assert (q_decay.meta.algo, q_decay.meta.inner_steps, q_decay.learner.epsilon_decay) == (
        "fixed",
        1,
        True,
    )
    assert (q_decay.agent, q_decay.algo, preset("default", agent="q", algo="fixed").algo) == (
        "q",
        "decay",
        "fixed",
    )


def test_new_configuration_errors_are_one_sentence():
    for make in (
        lambda: TwoColorsConfig(
            meta=MetaConfig(algo="mg"), learner=ActorCriticConfig(entropy_cost=0.0)
        ),
        lambda: TwoColorsConfig(meta=MetaConfig(continue_from="inner")),
        lambda: TwoColorsConfig(meta=MetaConfig(algo="fixed", inner_steps=2)),
        lambda: TwoColorsConfig(
            meta=MetaConfig(algo="mg"), learner=QLambdaConfig(epsilon_decay=True)
        ),
        lambda: TwoColorsConfig(learner="x"),
        lambda: preset("default", algo="decay"),
        lambda: ActorCriticConfig(optimizer="rmsprop"),
        lambda: ActorCriticConfig(context_normalization="z"),
        lambda: QLambdaConfig(meta_initial=0.0),
        lambda: QLambdaConfig(adam_b2=1.0),
    ):
        with pytest.raises(ValueError) as error:
            make()
        message = str(error.value)
        assert message.endswith(".") and ". " not in message and "\n" not in message, message


def test_a_zero_entropy_cost_is_accepted_for_the_fixed_baseline_and_with_meta_initial():
    fixed = TwoColorsConfig(
        meta=MetaConfig(algo="fixed"), learner=ActorCriticConfig(entropy_cost=0.0)
    )
    assert fixed.learner.entropy_cost == 0
    config = TwoColorsConfig(learner=ActorCriticConfig(entropy_cost=0.0, meta_initial=0.5))  # bmg
    assert config.learner.initial_entropy_cost == 0.5


def test_small_entropy_preset_is_the_old_default():
    """`small-entropy` is the configuration every earlier report ran (the defaults before the
    related preset), field for field, for both agents."""
    old = preset("small-entropy")
    assert old == TwoColorsConfig() == preset("default")
    assert preset("small-entropy", agent="q") == preset("default", agent="q")
    assert (old.lifetime.steps, old.lifetime.seeds) == (6_400_000, 10)
    assert (old.meta.bootstrap_steps, old.meta.learning_rate) == (8, 1e-4)
    ac, q = old.learner, preset("small-entropy", agent="q").learner
    assert (ac.entropy_cost, ac.meta_initial, ac.value_cost, ac.outer_entropy_cost) == (
        0.01,
        None,
        0.5,
        0.0,
    )
    assert (ac.hidden_size, ac.rollout_length, ac.optimizer, ac.learning_rate) == (
        256,
        16,
        "sgd",
        0.1,
    )
    for learner in (ac, q):
        assert (learner.meta_hidden_size, learner.meta_hidden_layers) == (32, 1)
        assert (learner.context_length, learner.context_normalization) == (10, "none")
        assert learner.max_grad_norm == 1.0
    assert (q.optimizer, q.learning_rate, q.rollout_length, q.epsilon) == ("sgd", 0.1, 16, 0.1)


def test_related_preset_holds_the_published_values():
    """Luketina et al., CoLLAs 2022, appendix A.3, Tables 3 (actor-critic) and 4 (Q(lambda))."""
    config = preset("related")
    assert (config.lifetime.steps, config.lifetime.seeds, config.meta.adam_eps) == (
        10_000_000,
        10,
        1e-4,
    )
    ac = config.learner
    assert (ac.optimizer, ac.learning_rate, ac.rollout_length, ac.discount) == (
        "sgd",
        0.1,
        16,
        0.99,
    )
    assert (ac.hidden_size, ac.value_cost, ac.meta_initial) == (256, 1.0, 0.5)
    assert (ac.meta_hidden_size, ac.meta_hidden_layers, ac.context_length) == (64, 2, 10)
    assert ac.context == "reward" and ac.context_normalization == "running"
    q = preset("related", agent="q", algo="bmg")
    assert q.meta.inner_steps == 0  # K = 0 [Table 4]
    q = q.learner
    assert (q.optimizer, q.learning_rate, q.adam_eps, q.adam_b1, q.adam_b2) == (
        "adam",
        3e-5,
        1e-4,
        0.9,
        0.999,
    )
    assert (q.rollout_length, q.trace_lambda, q.discount, q.hidden_size) == (1, 0.9, 0.99, 256)
    assert (q.meta_hidden_size, q.meta_hidden_layers, q.context_length) == (128, 2, 100)
    assert q.meta_initial == 0.5 and q.context_normalization == "running"
    # Each value the preset picks from a published grid is one of its candidates.
    grid = RELATED_GRID
    assert ac.entropy_cost in grid["ac"]["learner.entropy_cost"]
    assert ac.outer_entropy_cost in grid["ac"]["learner.outer_entropy_cost"]
    assert config.meta.learning_rate in grid["ac"]["meta.learning_rate"]
    assert config.meta.inner_steps in grid["ac"]["meta.inner_steps"]
    assert config.meta.bootstrap_steps in grid["ac"]["meta.bootstrap_steps"]
    assert config.meta.bootstrap_steps in grid["q"]["meta.bootstrap_steps"]
    assert q.learning_rate in grid["q"]["learner.learning_rate"]
    assert q.epsilon in grid["q"]["learner.epsilon"]
    assert config.meta.learning_rate in grid["q"]["meta.learning_rate"]
    assert grid["ac"]["learner.entropy_cost"] == (0.0, 0.1, 0.2, 0.4, 0.8)
    # Every algorithm of both agents accepts the preset (building the config checks it).
    for agent, algos in (("ac", ("fixed", "mg", "bmg")), ("q", ("fixed", "decay", "mg", "bmg"))):
        for algo in algos:
            assert preset("related", agent=agent, algo=algo).algo == algo


def test_demo_preset_is_the_related_preset_scaled_down_in_steps_and_seeds_only():
    """`make demo` runs the published values: every field but the budget is
    `related`'s, for both agents."""
    for agent in ("ac", "q"):
        demo, related = preset("demo", agent), preset("related", agent)
        assert demo.lifetime == LifetimeConfig(steps=1_000_000, seeds=4, chunk_steps=100_000)
        assert dataclasses.replace(demo, lifetime=related.lifetime) == related
    demo = preset("demo")
    assert demo.learner.entropy_cost == 0.2 and demo.learner.max_grad_norm == 10.0


def test_a_lifetime_shorter_than_one_chunk_is_not_inflated_to_a_chunk():
    """steps below chunk_steps: one chunk of the lifetime's own length (rounded up to whole
    meta-steps only), not a whole 200k-step chunk; MinAtar alike."""
    from bmg.experiments.minatar.system import MinAtarConfig
    from bmg.experiments.two_colors.system import TwoColorsConfig

    config = TwoColorsConfig(lifetime=dataclasses.replace(TwoColorsConfig.lifetime, steps=1000))
    assert config.num_chunks == 1 and 1000 <= config.total_env_steps < 1000 + 16 * 9
    minatar = MinAtarConfig(lifetime=dataclasses.replace(MinAtarConfig.lifetime, steps=1000))
    assert minatar.num_chunks == 1 and 1000 <= minatar.total_env_steps < 1000 + 2 * 640
