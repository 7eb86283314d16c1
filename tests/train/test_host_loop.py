"""The host-loop runner on a tiny fake system: model selection, checkpoints, exact resume, the NaN
guard and the progress callbacks (the few-shot system's own runs are in test_fewshot_experiment)."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bmg.train import host_loop
from bmg.train.checkpoint import Checkpointer


def fake_loop(num_steps=7, eval_every=3, nan_at=None, scores=None):
    """w <- w + noise from the host rng, with a PRNG key in the state; the score of a state is
    `scores[step]` when given, else -|w - 1|."""

    @jax.jit
    def update(train, noise):
        key, sub = jax.random.split(train["key"])
        w = train["w"] + 0.1 * noise + 0.01 * jax.random.normal(sub, ())
        return {"w": w, "key": key, "step": train["step"] + 1}, {"loss": (w - 1.0) ** 2}

    def step(train, rng):
        train, metrics = update(train, jnp.asarray(rng.standard_normal()))
        if nan_at is not None and int(train["step"]) == nan_at:
            metrics = {"loss": jnp.nan}
        return train, metrics

    def validate(train, progress):
        progress(1, 2)
        progress(2, 2)
        if scores is not None:
            return {"score": scores[int(train["step"])]}
        return {"score": -abs(float(train["w"]) - 1.0)}

    return host_loop.HostLoop(
        num_steps=num_steps,
        eval_every=eval_every,
        init=lambda: {"w": jnp.zeros(()), "key": jax.random.key(0), "step": jnp.zeros((), int)},
        init_rng=lambda: np.random.default_rng(0),
        step=step,
        validate=validate,
        select=lambda train: train["w"],
        watch=lambda train, metrics: {"w": train["w"], "the loss": metrics["loss"]},
        score_name="score",
        step_name="meta_step",
    )


def test_evaluations_rows_and_model_selection():
    scores = {3: 0.5, 6: 0.7, 7: 0.7}  # a tie keeps the first
    state = host_loop.run(fake_loop(scores=scores))
    assert [row["meta_step"] for row in state.rows] == [3, 6, 7]
    assert [row["score"] for row in state.rows] == [0.5, 0.7, 0.7]
    assert state.best_step == 6 and state.best_score == 0.7
    again = host_loop.run(fake_loop(num_steps=6, scores=scores))
    assert float(state.best) == float(again.train["w"])  # the model of meta-step 6
    # Rows average the metrics of the steps since the previous evaluation.
    losses = [float(host_loop.run(fake_loop(num_steps=n, eval_every=100)).rows[-1]["loss"])
              for n in (6, 7)]  # fmt: skip
    assert losses[0] != losses[1]


def test_resume_continues_to_the_same_state(tmp_path):
    reference = host_loop.run(fake_loop())
    checkpoint_dir = tmp_path / "checkpoints"
    with Checkpointer(checkpoint_dir) as checkpointer:
        partial = host_loop.run(fake_loop(num_steps=3), checkpointer)
        assert checkpointer.latest_step() == 3
    assert partial.step == 3
    with Checkpointer(checkpoint_dir) as checkpointer:
        resumed = host_loop.run(fake_loop(), checkpointer, resume=True)
        assert checkpointer.latest_step() == 7
    assert float(resumed.train["w"]) == float(reference.train["w"])
    assert jnp.array_equal(
        jax.random.key_data(resumed.train["key"]), jax.random.key_data(reference.train["key"])
    )
    assert resumed.rng_state == reference.rng_state  # 128-bit integers round-trip
    strip = lambda rows: [{k: v for k, v in r.items() if k != "train_seconds"} for r in rows]
    assert strip(resumed.rows) == strip(reference.rows)
    assert (resumed.best_step, resumed.best_score) == (reference.best_step, reference.best_score)


def test_resume_without_a_checkpoint_is_one_sentence(tmp_path):
    with Checkpointer(tmp_path / "none") as checkpointer:
        with pytest.raises(ValueError, match=r"holds no checkpoint: .* start it again\.$"):
            host_loop.run(fake_loop(), checkpointer, resume=True)


def test_the_nan_guard_stops_at_the_first_non_finite_quantity_and_keeps_the_checkpoint(tmp_path):
    with Checkpointer(tmp_path / "c") as checkpointer:
        with pytest.raises(
            host_loop.NonFiniteError,
            match=r"^the loss became non-finite \(NaN or infinite\) at meta-step 5, so training "
            r"stopped \(the checkpoint of meta-step 3 is kept\); lower the learning rates\.$",
        ):
            host_loop.run(fake_loop(nan_at=5), checkpointer)
        assert checkpointer.latest_step() == 3
        state = host_loop.restore(checkpointer, fake_loop())
    assert state.step == 3 and math.isfinite(float(state.train["w"]))
    with pytest.raises(host_loop.NonFiniteError, match="at meta-step 2, .*no checkpoint was"):
        host_loop.run(fake_loop(nan_at=2))


def test_a_run_after_a_failed_one_is_a_fresh_run(tmp_path):
    """The same loop fails once (a NaN at meta-step 5, after the checkpoint of meta-step 3).
    A fresh run on the same checkpointer is refused before anything runs (its first checkpoint
    would collide with the failed run's); resumed, or run again without a checkpointer, it
    gives an uninterrupted run's numbers."""
    reference = host_loop.run(fake_loop())
    nan_once = [5]
    plain = fake_loop()

    def flaky(train, rng):
        train, metrics = plain.step(train, rng)
        if nan_once and int(train["step"]) == nan_once[0]:
            nan_once.clear()
            metrics = {"loss": jnp.nan}
        return train, metrics

    loop = dataclasses.replace(plain, step=flaky)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "train_seconds"} for r in rows]
    with Checkpointer(tmp_path / "c") as checkpointer:
        with pytest.raises(host_loop.NonFiniteError, match="at meta-step 5"):
            host_loop.run(loop, checkpointer)
        called = []

        class Recorder(host_loop.Callbacks):
            def on_start(self, state, num_steps):
                called.append("on_start")

        with pytest.raises(ValueError) as error:
            host_loop.run(loop, checkpointer, callbacks=Recorder())
        assert str(error.value) == (
            f"{tmp_path / 'c'} already holds the checkpoint of meta-step 3 (an earlier run's); "
            "continue that run with resume=True, or give this run another checkpoint directory."
        )
        assert called == [] and checkpointer.all_steps() == [3]
        resumed = host_loop.run(loop, checkpointer, resume=True)
    for state in (resumed, host_loop.run(loop)):
        assert float(state.train["w"]) == float(reference.train["w"])
        assert state.rng_state == reference.rng_state
        assert strip(state.rows) == strip(reference.rows)


def test_callbacks_see_compilation_steps_evaluations_and_scores():
    events = []

    class Recorder(host_loop.Callbacks):
        def on_start(self, state, num_steps):
            events.append(("start", state.step, num_steps))

        def on_compile(self, step):
            events.append(("compile", step))

        def on_step(self, step, metrics):
            events.append(("step", step))

        def on_validate(self, step, done, total):
            events.append(("validate", step, done, total))

        def on_eval(self, state, is_best):
            events.append(("eval", state.step, is_best))

    host_loop.run(
        fake_loop(num_steps=4, eval_every=3, scores={3: 1.0, 4: 0.0}), callbacks=Recorder()
    )
    assert events == [
        ("start", 0, 4),
        ("compile", 1),
        ("step", 1),
        ("step", 2),
        ("step", 3),
        ("validate", 3, 1, 2),
        ("validate", 3, 2, 2),
        ("eval", 3, True),
        ("step", 4),
        ("validate", 4, 1, 2),
        ("validate", 4, 2, 2),
        ("eval", 4, False),
    ]


def test_bad_loop_sizes_are_refused():
    with pytest.raises(ValueError, match="eval_every must be an integer >= 1, got 0"):
        fake_loop(eval_every=0)
