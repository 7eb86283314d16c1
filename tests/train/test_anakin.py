"""The Anakin runner: traces against a step-by-step reference, bit-identical resume from a
checkpoint, the NaN guard (which quantity, seed and meta-step; last good checkpoint kept), the
memory check, and 2 devices = 1 device."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bmg.agents.regression import make_ill_conditioned_task, make_regression_learner, mse_loss
from bmg.core import Learner, LearnerState, MetaConfig, make_meta_learner
from bmg.train.anakin import (
    Anakin,
    NonFiniteError,
    OutOfMemoryError,
    State,
)
from bmg.train.checkpoint import Checkpointer, CheckpointError

TASK = make_ill_conditioned_task(jax.random.key(0), num_examples=64, dim=4)
META = MetaConfig(algo="bmg", inner_steps=2, bootstrap_steps=2, learning_rate=1e-2)


def regression_learner() -> Learner:
    learner = make_regression_learner(TASK, batch_size=8, init_learning_rate=0.05)

    def probes(meta_params, state):
        return {
            "learning_rate": jnp.exp(meta_params),
            "updates": state.extras,  # the learner's update counter
            "loss": mse_loss(state.params, TASK.inputs, TASK.targets),
        }

    return learner._replace(probes=probes)


def make_runner(checkpointer=None, **kwargs) -> Anakin:
    options = dict(
        num_seeds=4,
        first_seed=5,
        meta_steps_per_chunk=4,
        num_chunks=3,
        metrics=("meta/loss",),
        checkpointer=checkpointer,
    )
    return Anakin(regression_learner(), META, **{**options, **kwargs})


def host(tree):
    return [
        np.asarray(
            jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x
        )
        for x in jax.tree.leaves(tree)
    ]


def assert_bit_identical(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(host(a), host(b), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """3 chunks in one go, every checkpoint kept: (runner, result, checkpoint dir, infos)."""
    directory = tmp_path_factory.mktemp("straight") / "ckpt"
    runner = make_runner(Checkpointer(directory, max_to_keep=3))
    infos = []
    result = runner.run(on_chunk=infos.append)
    return runner, result, directory, infos


def test_trace_matches_a_step_by_step_reference(straight):
    runner, result, _, infos = straight
    trace, initial = result.state.trace, result.state.initial
    assert sorted(trace) == [
        "finite/meta_loss",
        "finite/meta_params",
        "finite/params",
        "learning_rate",
        "loss",
        "meta/loss",
        "updates",
    ]
    assert all(v.shape == (4, 12) for v in trace.values())
    # Counters: BMG continuing from x_K (continue_from="inner") keeps K = 2 learner updates per
    # meta-step (the target's L - 1 are thrown away), none before the first.
    np.testing.assert_array_equal(initial["updates"], 0)
    np.testing.assert_array_equal(trace["updates"], np.tile(2 * np.arange(1, 13), (4, 1)))
    np.testing.assert_allclose(initial["learning_rate"], 0.05, rtol=1e-6)
    assert all(trace[f"finite/{n}"].all() for n in ("params", "meta_params", "meta_loss"))
    # The reference: the same init and MetaLearner.step called one meta-step at a time, seed by
    # seed, with the runner's key discipline (split the seed key into learner / meta / run keys,
    # then split the run key once per meta-step).
    learner = regression_learner()
    meta_learner = make_meta_learner(learner, META)
    step = jax.jit(meta_learner.step)
    for index, seed in enumerate(range(5, 9)):
        learner_key, meta_key, key = jax.random.split(jax.random.key(seed), 3)
        learner_state = learner.init_state(learner_key)
        meta_state = meta_learner.init(learner.init_meta_params(meta_key))
        losses, rates = [], []
        for _ in range(12):
            key, step_key = jax.random.split(key)
            meta_state, learner_state, metrics = step(meta_state, learner_state, step_key)
            losses.append(metrics["meta/loss"])
            rates.append(jnp.exp(meta_state.meta_params))
        np.testing.assert_allclose(trace["meta/loss"][index], losses, rtol=1e-5)
        np.testing.assert_allclose(trace["learning_rate"][index], rates, rtol=1e-5)
        final = result.state.carry.meta_state.meta_params[index]
        np.testing.assert_allclose(final, meta_state.meta_params, rtol=1e-5)
    # The meta-parameters moved; the chunk reports.
    assert np.all(np.abs(trace["learning_rate"][:, -1] - 0.05) > 1e-4)
    assert [info.state.chunks_done for info in infos] == [1, 2, 3]
    assert result.meta_steps_per_second > 0 and result.compile_seconds > 0
    assert result.memory_bytes is not None and result.memory_bytes > 0
    assert all(i.chunk_seconds > 0 and i.chunk_host_seconds > 0 for i in infos)


def test_resume_continues_bit_identically(straight, tmp_path):
    """The checkpoint after chunk 1 (as if the run had stopped there), restored by a fresh
    runner and run for 2 more chunks, gives the straight run's traces and carries bit for bit."""
    _, result, directory, _ = straight
    assert Checkpointer(directory).all_steps() == [1, 2, 3]
    shutil.copytree(directory, tmp_path / "ckpt")
    for step in (2, 3):
        shutil.rmtree(tmp_path / "ckpt" / str(step))
    resumed = make_runner(Checkpointer(tmp_path / "ckpt"))  # a fresh runner, as after a restart
    state = resumed.restore()
    assert state.chunks_done == 1 and state.trace["meta/loss"].shape == (4, 4)
    assert state.carry.key.sharding == resumed.sharding
    final = resumed.run(state).state
    assert final.chunks_done == 3 and Checkpointer(tmp_path / "ckpt").all_steps() == [2, 3]
    assert sorted(final.trace) == sorted(result.state.trace)
    for name in final.trace:
        np.testing.assert_array_equal(final.trace[name], result.state.trace[name], err_msg=name)
    for name in final.initial:
        np.testing.assert_array_equal(final.initial[name], result.state.initial[name])
    assert_bit_identical(final.carry, result.state.carry)
    # and the straight run's last checkpoint restores to its final state
    resumed.checkpointer = Checkpointer(directory)
    restored = resumed.restore()
    assert_bit_identical(restored.carry, result.state.carry)
    assert restored.seconds == pytest.approx(result.state.seconds)


class Interrupted(Exception):
    pass


def assert_same_result(state: State, reference: State) -> None:
    assert state.chunks_done == reference.chunks_done and sorted(state.trace) == sorted(
        reference.trace
    )
    for name in state.trace:
        np.testing.assert_array_equal(state.trace[name], reference.trace[name], err_msg=name)
    for name in state.initial:
        np.testing.assert_array_equal(state.initial[name], reference.initial[name])
    assert_bit_identical(state.carry, reference.carry)


def test_a_runner_runs_again_after_a_failed_run_like_a_fresh_one(straight, tmp_path):
    """on_chunk raises after chunk 2. Without a checkpointer the next run() of the same runner
    is the fresh runner's lifetime. With one, a fresh start() is refused in one sentence (it
    would overwrite the failed run's trace pieces) and that run continues from its checkpoint
    to the fresh runner's lifetime, bit for bit."""
    _, reference, _, _ = straight

    def fail_after_chunk_2(info):
        if info.state.chunks_done == 2:
            raise Interrupted

    for checkpointer in (None, Checkpointer(tmp_path / "ckpt")):
        runner = make_runner(checkpointer)
        with pytest.raises(Interrupted):
            runner.run(on_chunk=fail_after_chunk_2)
        if checkpointer is None:
            assert_same_result(runner.run().state, reference.state)
            continue
        for start in (runner.start, runner.run):
            with pytest.raises(CheckpointError) as error:
                start()
            assert str(error.value) == (
                f"{tmp_path / 'ckpt'} already holds checkpoints of a lifetime (steps [1, 2]); "
                "continue it with restore(), or give this run another checkpoint directory."
            )
        assert_same_result(runner.run(runner.restore()).state, reference.state)
        assert checkpointer.all_steps() == [2, 3]


def test_a_checkpoint_does_not_grow_with_the_trace(straight):
    """The trace goes to one file per chunk beside the steps, each written once: the steps hold
    the same leaves (the carry and initial probes) whatever the lifetime so far."""
    _, result, directory, _ = straight
    checkpointer = Checkpointer(directory)
    leaves = [[leaf["path"] for leaf in checkpointer._document(step)["leaves"]] for step in (1, 3)]
    assert leaves[0] == leaves[1] and not any("trace" in path for path in leaves[0])
    pieces = sorted((directory / "trace").iterdir())
    assert [p.name for p in pieces] == ["000000.npz", "000001.npz", "000002.npz"]
    with np.load(pieces[1]) as piece:
        for name, values in result.state.trace.items():
            np.testing.assert_array_equal(piece[name], values[:, 4:8], err_msg=name)


@pytest.mark.parametrize("damage", ["changed", "missing"])
def test_a_damaged_or_missing_trace_piece_is_one_sentence(straight, tmp_path, damage):
    _, result, directory, _ = straight
    shutil.copytree(directory, tmp_path / "ckpt")
    piece = tmp_path / "ckpt" / "trace" / "000001.npz"
    if damage == "missing":
        piece.unlink()
    else:
        with np.load(piece) as data:
            arrays = {k: data[k] for k in data.files}
        arrays["meta/loss"] = arrays["meta/loss"] * 2
        np.savez(piece, **arrays)
    with pytest.raises(CheckpointError, match="the trace of chunk 2") as error:
        make_runner(Checkpointer(tmp_path / "ckpt")).restore()
    assert str(piece) in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "change, field", [({"num_seeds": 2}, "num_seeds"), ({"meta_steps_per_chunk": 5}, "meta_steps")]
)
def test_resume_with_another_layout_is_refused(straight, change, field):
    _, _, directory, _ = straight
    with pytest.raises(CheckpointError, match=f"written with {field}") as error:
        make_runner(Checkpointer(directory), **change).restore()
    assert str(directory) in str(error.value)


# --- NaN guard ---------------------------------------------------------------------------------


def exploding_learner() -> Learner:
    """x <- x * w with w = 10 held fixed: x_k = x_0 10^k overflows float32 (3.4e38) at a step
    that depends on the seed through x_0 = exp(20 u), u ~ U(0, 1)."""

    def init_state(key):
        return LearnerState(params=jnp.exp(20.0 * jax.random.uniform(key)))

    def update_fn(meta_params, state, key):
        return state._replace(params=state.params * meta_params), {}

    def meta_objective(state, key):
        return jnp.square(state.params), {}

    return Learner(
        init_state=init_state,
        init_meta_params=lambda key: jnp.float32(10.0),
        update_fn=update_fn,
        meta_objective=meta_objective,
        probes=lambda meta_params, state: {"x": state.params},
    )


def test_nan_guard_names_quantity_seed_and_step_and_keeps_last_good_checkpoint(tmp_path):
    runner = Anakin(
        exploding_learner(),
        MetaConfig(algo="fixed"),
        num_seeds=4,
        first_seed=10,
        meta_steps_per_chunk=8,
        num_chunks=20,
        checkpointer=Checkpointer(tmp_path),
    )
    state = runner.start()
    # float32 reference: the first meta-step (1-based) at which each seed's x is infinite
    x = np.asarray(state.initial["x"], np.float32)
    first_inf = []
    for value in x:
        step = 0
        while np.isfinite(value):
            with np.errstate(over="ignore"):
                value = np.float32(value * np.float32(10.0))
            step += 1
        first_inf.append(step)
    expected_step = min(first_inf)
    expected_seed = 10 + first_inf.index(expected_step)
    assert expected_step > 8  # not in the first chunk
    with pytest.raises(NonFiniteError) as error:
        runner.run(state)
    message = str(error.value)
    assert message.startswith(
        f"the learner parameters of seed {expected_seed} became NaN or infinite at meta-step "
        f"{expected_step} (chunk {(expected_step - 1) // 8 + 1})"
    ), message
    good = (expected_step - 1) // 8
    assert f"the last good checkpoint (after chunk {good}) is kept" in message
    assert Checkpointer(tmp_path).latest_step() == good
    kept = runner.restore()
    assert kept.chunks_done == good and np.isfinite(kept.trace["x"]).all()
    assert error.value.state.chunks_done == good
    assert not np.isfinite(error.value.trace["x"][expected_seed - 10, expected_step - 1])


def test_nan_guard_order_is_step_then_quantity_then_seed():
    runner = make_runner()
    state = State(None, {}, ({},), chunks_done=2, seconds=0.0, host_seconds=0.0)
    piece = {f"finite/{n}": np.ones((3, 4), bool) for n in ("params", "meta_params", "meta_loss")}
    piece["finite/params"][0, 3] = False  # later step
    piece["finite/meta_loss"][2, 1] = False
    piece["finite/meta_params"][1, 1] = False  # same step, earlier quantity
    state = state._replace(pieces=({k: np.zeros((3, 0), bool) for k in piece},))
    with pytest.raises(NonFiniteError, match="^the meta-parameters of seed 6 .* meta-step 10 "):
        runner._check_finite(state, piece)


# --- memory, names -----------------------------------------------------------------------------


def test_programs_that_do_not_fit_are_refused_before_running():
    runner = Anakin(
        exploding_learner(),
        MetaConfig(algo="fixed"),
        num_seeds=8,
        meta_steps_per_chunk=4,
        num_chunks=1,
        memory_limit=64,
    )
    with pytest.raises(OutOfMemoryError, match="need about .* per device .* seeds fit") as error:
        runner.start()
    assert isinstance(error.value, ValueError) and "\n" not in str(error.value)
    assert runner.memory_bytes > 64


def test_unknown_metric_or_probe_is_one_sentence():
    with pytest.raises(ValueError, match=r"metrics \['meta/nothing'\] are not among"):
        make_runner(metrics=("meta/nothing",)).start()
    with pytest.raises(ValueError, match=r"probes \['nothing'\] are not among"):
        make_runner(probes=("nothing",)).start()


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="num_seeds"):
        make_runner(num_seeds=0)


@pytest.mark.parametrize("group", [1, 3])
def test_lanes_in_groups_give_the_lifetime_of_all_lanes_at_once(straight, group):
    """lane_group = 1 (a lax.map over single lanes) and 3 (a group and a remainder of 1) run the
    4 seeds' lifetime of one vmap: the same trace to float reassociation (vmap's width may
    vectorise a reduction differently), the same counters exactly."""
    _, result, _, _ = straight
    grouped = make_runner(lane_group=group).run().state.trace
    assert sorted(grouped) == sorted(result.state.trace)
    for name, values in result.state.trace.items():
        np.testing.assert_allclose(grouped[name], values, rtol=1e-5, atol=1e-6, err_msg=name)


def test_lane_group_is_checked():
    with pytest.raises(ValueError, match="lane_group"):
        make_runner(lane_group=0)


# --- 2 devices -------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_forced_host_devices_give_the_same_traces(straight, tmp_path):
    script = textwrap.dedent(
        f"""
        import json, sys
        import jax, numpy as np
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_anakin import make_runner
        assert len(jax.devices()) == 2
        from bmg.train.anakin import OutOfMemoryError
        runner = make_runner()
        assert runner.sharding.mesh.size == 2
        state = runner.run().state
        host = lambda trace: {{k: np.asarray(v, float).tolist() for k, v in trace.items()}}
        grouped = make_runner(lane_group=1).run().state.trace  # each device: 1 lane at a time
        try:  # room for 1.5 devices' programs in the host's memory, which both devices share
            make_runner(memory_limit=int(runner.memory_bytes * 1.5)).compile()
            refused = ""
        except OutOfMemoryError as error:
            refused = str(error)
        out = {{"trace": host(state.trace), "grouped": host(grouped), "refused": refused}}
        print(json.dumps(out))
        """
    )
    # Keep this process's XLA flags (tests/conftest.py's optimisation level): a program compiled
    # with other flags may round differently, and the comparison below is bit for bit.
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2"
    env = {**os.environ, "XLA_FLAGS": flags.strip()}
    env["JAX_PLATFORMS"] = "cpu"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    sharded = out["trace"]
    assert "on each of 2 devices sharing the host's memory" in out["refused"]
    for name, values in out["grouped"].items():  # lanes in groups, on 2 devices
        np.testing.assert_allclose(values, sharded[name], rtol=1e-5, atol=1e-6, err_msg=name)
    if jax.default_backend() != "cpu":
        pytest.skip("the one-device reference is not on the CPU here")
    single = straight[1].state.trace
    for name, values in single.items():
        np.testing.assert_array_equal(np.asarray(sharded[name]), values.astype(float), name)
