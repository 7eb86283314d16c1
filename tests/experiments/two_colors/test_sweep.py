"""Two-colors sweeps as one compiled program: lane i of a sweep (its numbers as data in the
carry, its learner and meta-optimiser built inside the traced function) equals the single run of
its configuration and seed, bit for bit; a resumed sweep equals the uninterrupted one; bad grids
are refused with one sentence naming the field.

Tiny lifetimes (16-unit networks, 4-step rollouts, a 3 x 3 grid, a few meta-steps). Each
comparison compiles the sweep and one single run per configuration: slow.
"""

import dataclasses
import re

import jax
import numpy as np
import pytest

from bmg.agents.actor_critic import ActorCriticConfig
from bmg.agents.configs import QLambdaConfig
from bmg.core.config import MetaConfig
from bmg.experiments.api import SWEEP_CONFIG
from bmg.experiments.two_colors.system import (
    SWEEPABLE,
    EnvConfig,
    TwoColorsConfig,
    make_runner,
    make_sweep_runner,
    parse_grid,
    sweep_configs,
    sweep_lanes,
)
from bmg.train.lifetime import LifetimeConfig

T = 4
ENV = EnvConfig(grid_size=3, switch_every=24, step_penalty=0.05)
AC = TwoColorsConfig(
    meta=MetaConfig(algo="fixed"),
    lifetime=LifetimeConfig(steps=32, seeds=2, seed=3, chunk_steps=16),
    learner=ActorCriticConfig(
        hidden_size=16, rollout_length=T, context_length=3, meta_hidden_size=8
    ),
    env=ENV,
)
Q = dataclasses.replace(
    AC,
    lifetime=dataclasses.replace(AC.lifetime, seed=0),
    learner=QLambdaConfig(hidden_size=16, rollout_length=T, context_length=3, meta_hidden_size=8),
)
BMG = dataclasses.replace(
    AC,
    meta=dataclasses.replace(TwoColorsConfig.meta, inner_steps=1, bootstrap_steps=2),
    lifetime=dataclasses.replace(AC.lifetime, steps=48, chunk_steps=24),
    learner=dataclasses.replace(AC.learner, meta_initial=0.3, context_normalization="running"),
)

CASES = {
    "ac fixed, entropy cost": (AC, {"learner.entropy_cost": (0.0, 0.4)}),
    "ac bmg, meta learning rate": (BMG, {"meta.learning_rate": (1e-1, 1e-3)}),
    "q fixed, epsilon": (Q, {"learner.epsilon": (0.3, 0.01)}),
}


def host(tree):
    def leaf(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        return np.asarray(x)

    return jax.tree.map(leaf, tree)


def lanes(carry, lanes_of):
    """The learner and meta state of some lanes (the lane's `hyper` left out)."""
    carry = host(carry)
    return jax.tree.map(lambda x: x[lanes_of], (carry.meta_state, carry.learner_state, carry.key))


def assert_trees_equal(a, b, what):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb), what
    for i, (x, y) in enumerate(zip(la, lb, strict=True)):
        np.testing.assert_array_equal(x, y, err_msg=f"{what}, leaf {i}")


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_each_lane_of_a_sweep_is_bit_identical_to_its_single_run(case):
    """Traces (probes, metrics, finite flags), initial probes and the final carry of lanes
    c * seeds ... (c + 1) * seeds - 1 equal the single run of configuration c."""
    base, grid = CASES[case]
    sweep = make_sweep_runner(base, grid).run().state
    configs = sweep_configs(base, grid)
    assert sweep.trace["reward_sum"].shape == (
        len(configs) * base.lifetime.seeds,
        base.num_chunks * (base.meta_steps_per_chunk),
    )
    for index, config in enumerate(configs):
        single = make_runner(config).run().state
        lanes_of = slice(index * base.lifetime.seeds, (index + 1) * base.lifetime.seeds)
        what = f"{case}: configuration {index} ({config_values(config, grid)})"
        assert sorted(sweep.trace) == sorted(single.trace), what
        for name in single.trace:
            np.testing.assert_array_equal(
                sweep.trace[name][lanes_of], single.trace[name], err_msg=f"{what}: {name}"
            )
        for name in single.initial:
            np.testing.assert_array_equal(sweep.initial[name][lanes_of], single.initial[name])
        assert_trees_equal(lanes(sweep.carry, lanes_of), lanes(single.carry, slice(None)), what)
    # The configurations differ: the sweep is not one lifetime repeated.
    rewards = sweep.trace["reward_sum"][:: base.lifetime.seeds, -1]
    schedule = sweep.trace["entropy_cost" if base.agent == "ac" else "epsilon"][
        :: base.lifetime.seeds, -1
    ]
    assert len(set(schedule.tolist())) == len(configs) or len(set(rewards.tolist())) > 1


def config_values(config, grid):
    from bmg.experiments.two_colors.system import _get_field

    return ", ".join(f"{field} = {_get_field(config, field)}" for field in grid)


class Interrupted(Exception):
    pass


@pytest.mark.slow
def test_a_resumed_sweep_equals_the_uninterrupted_one(tmp_path):
    base, grid = AC, {"learner.entropy_cost": (0.0, 0.2), "learner.learning_rate": (0.1, 0.05)}
    whole = make_sweep_runner(base, grid).run().state
    runner = make_sweep_runner(base, grid, tmp_path / "checkpoints")

    def stop_after_chunk_1(info):
        if info.state.chunks_done == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        runner.run(on_chunk=stop_after_chunk_1)
    restored = make_sweep_runner(base, grid, tmp_path / "checkpoints").restore()
    assert restored.chunks_done == 1
    np.testing.assert_array_equal(  # the lanes' numbers came back from the checkpoint
        np.asarray(restored.carry.hyper["entropy_cost"]), np.float32([0.0] * 4 + [0.2] * 4)
    )
    resumed = runner.run(restored).state
    for name in whole.trace:
        np.testing.assert_array_equal(resumed.trace[name], whole.trace[name], err_msg=name)
    assert_trees_equal(host(resumed.carry), host(whole.carry), "final carry")


def test_lanes_are_configurations_times_seeds():
    grid = {"learner.entropy_cost": (0.0, 0.1), "learner.learning_rate": (0.1, 0.05, 0.01)}
    hyper, seeds = sweep_lanes(AC, grid)
    assert seeds == [3, 4] * 6
    configs = sweep_configs(AC, grid)
    assert [(c.learner.entropy_cost, c.learner.learning_rate) for c in configs] == [
        (0.0, 0.1),
        (0.0, 0.05),
        (0.0, 0.01),
        (0.1, 0.1),
        (0.1, 0.05),
        (0.1, 0.01),
    ]
    np.testing.assert_array_equal(
        hyper["learning_rate"], np.float32([0.1, 0.1, 0.05, 0.05, 0.01, 0.01] * 2)
    )
    np.testing.assert_array_equal(hyper["entropy_cost"], np.float32([0] * 6 + [0.1] * 6))


def test_parse_grid_reads_tyro_spellings():
    assert parse_grid(["learner.entropy-cost=0,0.1", "meta.learning-rate=1e-3,1e-4"]) == {
        "learner.entropy_cost": (0.0, 0.1),
        "meta.learning_rate": (1e-3, 1e-4),
    }


@pytest.mark.parametrize(
    "specs, match",
    [
        (
            ["learner.hidden-size=16,32"],
            r"'learner.hidden_size' is not a sweepable number; sweepable",
        ),
        (["meta.inner-steps=1,3"], r"'meta.inner_steps' is not a sweepable number.*K, L"),
        (["learner.entropy-cost"], r"must read FIELD=V1,V2"),
        (["learner.entropy-cost=0,x"], r"learner.entropy_cost values must be numbers"),
        (["learner.entropy-cost=0,0"], r"repeats a value"),
        (["learner.epsilon=0.1", "learner.epsilon=0.2"], r"given twice"),
        ([], r"at least one --grid"),
    ],
)
def test_bad_grid_specs_are_one_sentence(specs, match):
    with pytest.raises(ValueError, match=match):
        parse_grid(specs)


@pytest.mark.parametrize(
    "base, grid, match",
    [
        (
            AC,
            {"learner.entropy_cost": (0.1, 1.5)},
            r"--grid learner.entropy_cost=1.5: entropy_cost must",
        ),
        (AC, {"learner.epsilon": (0.1, 0.2)}, r"belongs to agent q, this sweep runs agent ac"),
        (
            AC,
            {"meta.learning_rate": (1e-3,)},
            r"--grid meta.learning_rate has no effect with --algo fixed \(nothing is meta",
        ),
        (
            dataclasses.replace(Q, learner=dataclasses.replace(Q.learner, epsilon_decay=True)),
            {"learner.epsilon": (0.1, 0.2)},  # one program, two identical lanes
            r"--grid learner.epsilon has no effect with --algo decay \(epsilon follows",
        ),
        (Q, {"learner.epsilon": (0.0, 0.1)}, r"--grid learner.epsilon=0: epsilon must"),
        (BMG, {"meta.learning_rate": (1e-3, -1.0)}, r"meta.learning_rate=-1: learning_rate"),
    ],
)
def test_bad_grid_values_fail_before_compiling(base, grid, match):
    with pytest.raises(ValueError, match=match):
        make_sweep_runner(base, grid)


def test_every_sweepable_field_is_a_number_of_the_config():
    from bmg.experiments.two_colors.system import _get_field

    for field, (agent, _) in SWEEPABLE.items():
        for base in (AC, Q):
            if agent in (None, base.agent):
                learner = dataclasses.replace(base.learner, meta_initial=0.5)
                value = _get_field(dataclasses.replace(base, learner=learner), field)
                assert isinstance(value, float), (field, base.agent)


TINY_FLAGS = [
    "default",
    "--algo",
    "fixed",
    "--steps",
    "32",
    "--seeds",
    "2",
    "--chunk-steps",
    "16",
    "--learner.hidden-size",
    "16",
    "--learner.rollout-length",
    "4",
    "--env.grid-size",
    "3",
    "--env.switch-every",
    "24",
]


@pytest.mark.slow
def test_cli_sweep_interrupted_and_resumed_writes_runs_and_a_ranked_table(tmp_path, monkeypatch):
    """`bmg two-colors sweep` stopped by Ctrl-C before its first checkpoint, resumed (it starts
    over) and stopped after its first checkpoint, then `bmg two-colors resume SWEEP_DIR`: one
    run directory per configuration (readable by `bmg compare`), whose totals are the single
    runs' (bit-identical lanes), and sweep.json ranked by total reward."""
    import json

    from bmg.experiments import cli
    from bmg.experiments.two_colors import report
    from bmg.train.anakin import Anakin
    from bmg.train.rundir import read_config

    out = tmp_path / "sweep"
    argv = ["two-colors", "sweep", *TINY_FLAGS, "--grid", "learner.entropy-cost=0,0.3", "--out"]
    save = Anakin.save

    def save_then_interrupt(self, state):
        save(self, state)
        raise KeyboardInterrupt

    def interrupt_before_saving(self, state):
        raise KeyboardInterrupt

    resume_hint = r"interrupted; continue with `bmg two-colors resume "
    monkeypatch.setattr(Anakin, "save", interrupt_before_saving)
    with pytest.raises(SystemExit, match=resume_hint):  # nothing saved yet: the grid restarts
        cli.main([*argv, str(out)])
    assert not any((out / "checkpoints").glob("[0-9]*"))
    monkeypatch.setattr(Anakin, "save", save_then_interrupt)
    with pytest.raises(SystemExit, match=resume_hint):
        cli.main(["two-colors", "resume", str(out)])
    monkeypatch.setattr(Anakin, "save", save)
    assert not (out / "sweep.json").exists()
    cli.main(["two-colors", "resume", str(out)])

    table = json.loads((out / "sweep.json").read_text())
    totals = [row["total_reward_mean"] for row in table["rows"]]
    assert totals == sorted(totals, reverse=True)
    assert [row["rank"] for row in table["rows"]] == ["1", "2"]
    runs = sorted(p for p in out.iterdir() if p.is_dir())
    assert [p.name for p in runs] == ["00-learner.entropy_cost=0", "01-learner.entropy_cost=0.3"]
    for run_dir, cost in zip(runs, (0.0, 0.3), strict=True):
        assert len(report.comparison_rows([run_dir])) == 1
        config = read_config(run_dir, TwoColorsConfig)
        assert config.learner.entropy_cost == cost and config.learner.hidden_size == 16
        summary = json.loads((run_dir / "summary.json").read_text())
        single = make_runner(config).run().state
        np.testing.assert_array_equal(  # the first rollout's reward included, as the report does
            summary["total_reward"]["per_seed"], single.trace["reward_sum"][:, -1]
        )
    with pytest.raises(SystemExit, match=r"holds a finished sweep"):
        cli.main(["two-colors", "resume", str(out)])


def test_grid_values_equal_in_float32_are_refused():
    """Two values that round to one float32 (the lanes' precision) would be two lanes of one
    configuration, ranked as two settings."""
    with pytest.raises(ValueError, match=r"values 0.1 and 0.1000000001 are one number in float32"):
        parse_grid(["learner.entropy-cost=0,0.1,0.1000000001"])
    assert parse_grid(["learner.entropy-cost=0.1,0.1000001"])  # two float32 numbers


def started_sweep(tmp_path, monkeypatch, *grid_flags):
    """`bmg two-colors sweep` stopped by Ctrl-C as it starts (nothing compiled): its directory
    holds sweep_config.json only; `run_sweep` must not be reached again."""
    from bmg.experiments import cli
    from bmg.experiments.two_colors import system as tc

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    out = tmp_path / "sweep"
    monkeypatch.setattr(tc, "run_sweep", interrupted)
    with pytest.raises(SystemExit, match="interrupted; continue with"):
        cli.main(["two-colors", "sweep", *TINY_FLAGS, *grid_flags, "--out", str(out)])
    return out / SWEEP_CONFIG


def test_a_field_in_the_grid_and_in_a_flag_is_refused(tmp_path, capsys):
    from bmg.experiments import cli

    out = tmp_path / "sweep"
    argv = ["two-colors", "sweep", *TINY_FLAGS, "--grid", "learner.entropy-cost=0,0.1"]
    for flag in (["--learner.entropy-cost", "0.3"], ["--learner.entropy-cost=0.3"]):
        with pytest.raises(SystemExit) as error:
            cli.main([*argv, *flag, "--out", str(out)])
        assert str(error.value.code) == (
            "bmg two-colors sweep: error: learner.entropy_cost is set twice, by --grid "
            "learner.entropy_cost=... and by --learner.entropy-cost; give it once: its values in "
            "--grid, or one value as a flag."
        )
    assert not out.exists()


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda r: r.pop("grid"),
            r"sweep_config.json is not a sweep's config: it lacks the key grid",
        ),
        (
            lambda r: r["grid"].update({"learner.entropy_cost": [0.0, 0.2]}),
            r"was edited after the sweep",
        ),
        (lambda r: r["config"]["lifetime"].update(seeds=3), r"was edited after the sweep started"),
        (lambda r: r.pop("config_digest"), r"has no config_digest, so nothing shows"),
        (
            lambda r: r["grid"].update({"learner.entropy_cost": "0,1"}),
            r"grid.learner.entropy_cost must be a",
        ),
    ],
)
def test_a_resumed_sweep_is_the_sweep_that_started(edit, message, tmp_path, monkeypatch, capsys):
    """sweep_config.json records a digest of its config and grid when the sweep starts: a grid or
    config edited afterwards (or the digest removed), or a file of another shape, is refused
    with one sentence naming the file, before anything runs."""
    import json

    from bmg.experiments import cli

    path = started_sweep(tmp_path, monkeypatch, "--grid", "learner.entropy-cost=0,0.3")
    record = json.loads(path.read_text())
    assert record["grid"] == {"learner.entropy_cost": [0.0, 0.3]} and record["config_digest"]
    edit(record)
    path.write_text(json.dumps(record))
    with pytest.raises(SystemExit) as error:
        cli.main(["two-colors", "resume", str(path.parent)])
    text = str(error.value.code)
    assert text.startswith(f"bmg two-colors sweep: error: {path} "), text
    assert re.search(message, text), text


def test_an_unedited_sweep_config_resumes(tmp_path, monkeypatch):
    """The digest written at the start matches the file as written: the resume reaches the run
    (here interrupted again) with the recorded base config and grid."""
    from bmg.experiments import cli
    from bmg.experiments.two_colors import system as tc

    path = started_sweep(tmp_path, monkeypatch, "--grid", "learner.entropy-cost=0,0.3")
    reached = []

    def interrupted(base, grid, sweep_dir, **kwargs):
        reached.append((base, grid))
        raise KeyboardInterrupt

    monkeypatch.setattr(tc, "run_sweep", interrupted)
    with pytest.raises(SystemExit, match="interrupted; continue with"):
        cli.main(["two-colors", "resume", str(path.parent)])
    ((base, grid),) = reached
    assert grid == {"learner.entropy_cost": (0.0, 0.3)} and base.learner.hidden_size == 16
