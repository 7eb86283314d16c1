"""Two-colors statistics, metrics.csv rows, labels and the comparison table against hand-worked
traces and hand-made run directories (pure functions: no lifetime runs here)."""

import dataclasses
import json
import math

import numpy as np
import pytest

from bmg.agents.actor_critic import ActorCriticConfig
from bmg.agents.configs import QLambdaConfig
from bmg.experiments.report import stats
from bmg.experiments.two_colors import report
from bmg.experiments.two_colors.system import PRESET_VALUES, EnvConfig, Trace, TwoColorsConfig
from bmg.train.lifetime import LifetimeConfig
from bmg.train.rundir import save_npz, write_json


def make_config(agent="ac", algo="bmg", *, bootstrap_steps=None, **values):
    """The config ``--agent`` and ``--algo`` choose from the default preset with some of its
    values replaced (`Preset`'s fields: ac, q, inner_steps, lifetime, env; and L)."""
    preset = dataclasses.replace(PRESET_VALUES["default"], **values)
    if bootstrap_steps is not None:
        meta = dataclasses.replace(preset.meta, bootstrap_steps=bootstrap_steps)
        preset = dataclasses.replace(preset, meta=meta)
    return preset.config(agent, algo)


def hand_trace():
    """2 seeds, meta-steps of 5,000 steps, 40,000 steps, flips every 20,000 (one flip inside)."""
    steps = np.tile(np.arange(1, 9) * 5_000, (2, 1))
    reward = np.array([[1, 2, 3, 4, 5, 6, 7, 8], [0, 0, 0, 0, 0, 0, 0, 10]], float)
    # entropy cost: 0.1 just before the flip, 0.5 right after it, 0.2 elsewhere.
    schedule = np.full((2, 8), 0.2)
    schedule[:, 2:4] = 0.1  # meta-steps ending at 15k, 20k: the 10k steps before the flip at 20k
    schedule[:, 4:6] = 0.5  # ending at 25k, 30k: the 10k steps after it
    zeros = np.zeros((2, 8))
    return Trace(steps, reward, schedule, zeros, zeros)


def test_summary_by_hand():
    trace = hand_trace()
    first = np.array([1.0, -1.0])
    summary = report.summarize(trace, first, switch_every=20_000, seconds=2.0)
    assert summary["total_reward"]["per_seed"] == [37.0, 9.0]
    np.testing.assert_allclose(summary["total_reward"]["mean"], 23.0)
    np.testing.assert_allclose(summary["total_reward"]["se"], np.std([37, 9], ddof=1) / np.sqrt(2))
    # Last 10% of 40,000 steps: the meta-step ending at 40,000 (steps 35,001..40,000).
    np.testing.assert_allclose(
        summary["reward_per_step_last_10pct"]["per_seed"], [8 / 5_000, 10 / 5_000]
    )
    np.testing.assert_allclose(summary["entropy_after_flip"]["per_seed"], [0.5, 0.5])
    np.testing.assert_allclose(summary["entropy_before_flip"]["per_seed"], [0.1, 0.1])
    np.testing.assert_allclose(summary["env_steps_per_second"]["all_seeds"], 80_000 / 2.0)
    np.testing.assert_allclose(summary["env_steps_per_second"]["per_seed"], 40_000 / 2.0)
    assert (summary["env_steps_per_seed"], summary["seeds"]) == (40_000, 2)


def test_q_summary_names_epsilon():
    summary = report.summarize(
        hand_trace(), np.zeros(2), switch_every=20_000, seconds=1.0, agent="q"
    )
    np.testing.assert_allclose(summary["epsilon_after_flip"]["per_seed"], [0.5, 0.5])
    assert not any(name.startswith("entropy") for name in summary)


def test_chunk_rows_and_moving_average():
    trace, first = hand_trace(), np.array([1.0, -1.0])
    # the second chunk of 4 meta-steps: its piece, the total reward and the steps before it
    piece = report.Trace(*(x[:, 4:8] for x in trace))
    before = first + trace.reward[:, :4].sum(axis=1)
    rows = report.chunk_rows(piece, before, trace.env_steps[:, 3], chunk=1)
    assert list(rows[0]) == report.csv_fields("ac")
    assert (rows[0]["seed"], rows[0]["chunk"], rows[0]["env_steps"]) == (0, 1, 40_000)
    np.testing.assert_allclose(rows[0]["reward_per_step"], (5 + 6 + 7 + 8) / 20_000)
    np.testing.assert_allclose(rows[0]["cumulative_reward"], 37.0)
    np.testing.assert_allclose(rows[1]["entropy_cost"], np.mean([0.5, 0.5, 0.2, 0.2]))
    head = report.Trace(*(x[:, :4] for x in trace))
    first_chunk = report.chunk_rows(head, first, 0, 0, agent="q")
    assert "epsilon" in first_chunk[0] and "entropy_cost" not in first_chunk[0]
    np.testing.assert_allclose(first_chunk[0]["reward_per_step"], (1 + 2 + 3 + 4) / 20_000)
    np.testing.assert_allclose(first_chunk[1]["cumulative_reward"], -1.0)
    moving = report.moving_reward_per_step(trace, window_steps=10_000)
    np.testing.assert_allclose(moving[0, 3], (3 + 4) / 10_000)
    np.testing.assert_allclose(moving[0, 0], 1 / 5_000)  # a partial window at the start


def test_folded_schedule_averages_cycles_after_the_first_flip():
    trace = hand_trace()
    centres, means = report.folded(trace, switch_every=20_000, bins=4)
    np.testing.assert_allclose(centres, [2_500, 7_500, 12_500, 17_500])
    # After the flip at 20k: positions 0-5k -> 0.5 (25k), 5-10k -> 0.5 (30k), 10-15k -> 0.2,
    # 15-20k -> 0.2.
    np.testing.assert_allclose(means[0], [0.5, 0.5, 0.2, 0.2])


def test_run_labels_name_what_differs_between_runs():
    def label(**fields):
        config = make_config(**fields)
        return report.run_label({"config": dataclasses.asdict(config)})

    assert label(algo="fixed") == "ac entropy-cost=0.01"
    assert label(algo="bmg", inner_steps=3, bootstrap_steps=16) == "bmg K=3 L=16"
    assert label(algo="mg", ac=ActorCriticConfig(context="none")) == "mg K=1 no-context"
    outer = ActorCriticConfig(outer_entropy_cost=0.1)
    assert label(algo="mg", ac=outer) == "mg K=1 outer-entropy=0.1"
    peng = QLambdaConfig(trace="peng")
    assert label(agent="q", algo="fixed", q=peng) == "q eps=0.1"
    assert label(agent="q", algo="decay", q=peng) == "q decay 1.0->0.01"
    assert label(agent="q", algo="bmg", inner_steps=0, bootstrap_steps=16, q=peng) == (
        "q bmg K=0 L=16"
    )
    # K left at the preset's default is the K run: 0 for q bmg, 1 otherwise.
    assert label(agent="q", algo="bmg", bootstrap_steps=16, q=peng) == "q bmg K=0 L=16"
    assert label(agent="q", algo="mg", q=peng) == "q mg K=1"
    assert label(algo="bmg") == "bmg K=1 L=8"
    # A Q(lambda) other than Peng's says which; the CLI's default preset runs the forward view.
    assert label(agent="q", algo="fixed") == "q(forward) eps=0.1"
    assert label(agent="q", algo="fixed", q=QLambdaConfig(trace="watkins")) == (
        "q(watkins) eps=0.1"
    )


def test_only_pengs_q_lambda_is_set_beside_table_1(tmp_path):
    """Table 1's Q(lambda) is Peng & Williams': a Watkins or forward-view run is not set beside
    it, and a Q(lambda) run's config.json without its trace (recorded before the field existed)
    is refused by name."""

    def key(**q):
        config = make_config(agent="q", algo="fixed", q=QLambdaConfig(**q))
        return report.published_key({"config": dataclasses.asdict(config)})

    assert key(trace="peng") == ("q", "fixed", None)
    assert key(trace="watkins") is None and key(trace="forward") is None
    run = method_run(tmp_path / "old", [1.0, 2.0], agent="q", algo="fixed")
    report.check_run(run)
    record = json.loads((run / "config.json").read_text())
    del record["config"]["learner"]["trace"]
    write_json(run / "config.json", record)
    with pytest.raises(ValueError, match=r"config.json .* lacks the key config.learner.trace"):
        report.check_run(run)


def test_reward_per_step_by_phase_and_paying_colour():
    trace = hand_trace()  # phase 0: meta-steps ending at 5k-20k; phase 1: 25k-40k
    rates = report.phase_reward_per_step(trace.env_steps, trace.reward, switch_every=20_000)
    np.testing.assert_allclose(rates, [[10 / 20_000, 26 / 20_000], [0, 10 / 20_000]])
    colour_0, colour_1 = report.late_colour_rates(trace.env_steps, trace.reward, 20_000)
    np.testing.assert_allclose([colour_0["mean"], colour_0["se"]], [0.00025, 0.00025])
    np.testing.assert_allclose(colour_1["mean"], 0.0009)
    # Only complete phases count: at 30k steps (flips every 20k) object 1 has none yet.
    _, none_yet = report.late_colour_rates(trace.env_steps[:, :6], trace.reward[:, :6], 20_000)
    assert np.isnan(none_yet["mean"])


def test_mean_and_standard_error_are_empty_safe():
    assert stats.mean_se(np.array([1.0, 3.0])) == {"mean": 2.0, "se": 1.0}  # std 1.414 / 1.414
    one = report.mean_se(np.array([2.5]))
    assert one["mean"] == 2.5 and math.isnan(one["se"])
    for values in (np.zeros(0), np.array([np.nan, np.nan])):
        stat = report.mean_se(values)
        assert math.isnan(stat["mean"]) and math.isnan(stat["se"])
    assert report.format_mean_se({"mean": 0.12345, "se": 0.01}) == "0.123 ± 0.010"
    assert report.format_mean_se({"mean": 2.0, "se": float("nan")}) == "2.000"
    assert report.format_mean_se({"mean": 2.0, "se": None}, 0) == "2"
    assert report.format_mean_se({"mean": None, "se": None}) == "-"  # null in summary.json
    assert report.format_mean_se({"mean": float("nan"), "se": 1.0}) == "-"


def short_run_dir(path, *, steps_per_meta_step=1_000, meta_steps=2):
    """A hand-made finished run of 2 seeds shorter than one colour phase (flips every 100k)."""
    config = make_config(
        algo="fixed", lifetime=LifetimeConfig(steps=2_000, seeds=2, chunk_steps=1_000)
    )
    steps = np.tile(np.arange(1, meta_steps + 1) * steps_per_meta_step, (2, 1))
    reward = np.array([[1.0, 2.0], [3.0, 5.0]])
    zeros = np.zeros((2, meta_steps))
    trace = Trace(steps, reward, np.full((2, meta_steps), 0.01), zeros, zeros)
    first = np.array([0.0, 1.0])
    path.mkdir(parents=True)
    write_json(path / "config.json", {"config": dataclasses.asdict(config)})
    summary = report.summarize(trace, first, switch_every=100_000, seconds=1.0)
    write_json(path / "summary.json", summary)
    save_npz(path / "trace.npz", first_rewards=first, **trace._asdict())
    return path


def test_a_run_shorter_than_one_phase_reports_dashes(tmp_path):
    run = short_run_dir(tmp_path / "short")
    summary = json.loads((run / "summary.json").read_text())  # strict JSON: NaN became null
    assert summary["entropy_after_flip"]["mean"] is None
    assert summary["entropy_after_flip"]["per_seed"] == [None, None]
    assert summary["total_reward"]["per_seed"] == [3.0, 9.0]
    (row,) = report.comparison_rows([run])
    assert row["run"] == "ac entropy-cost=0.01"
    assert row["total reward"] == "6 ± 3"  # mean 6, se = std([3, 9]) / sqrt(2) = 3
    for column in (
        "schedule after flip",
        "schedule before flip",
        "object 0 pays, last 25%",
        "object 1 pays, last 25%",
    ):
        assert row[column] == "-", column
    assert row["steps/s (all seeds)"] == "4,000"


def test_damaged_run_files_are_named(tmp_path):
    run = short_run_dir(tmp_path / "run")
    (run / "trace.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match=r"trace\.npz cannot be read.*damaged"):
        report.comparison_rows([run])

    run = short_run_dir(tmp_path / "partial")
    np.savez(run / "trace.npz", reward=np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"trace\.npz lacks \['first_rewards', 'env_steps'"):
        report.load_run(run)

    run = short_run_dir(tmp_path / "summary")
    (run / "summary.json").write_text('{"seeds": 2,')
    with pytest.raises(ValueError, match=r"summary\.json is not valid JSON as a run's summary"):
        report.comparison_rows([run])

    (run / "summary.json").unlink()
    with pytest.raises(ValueError, match=r"not a finished run: summary\.json is missing"):
        report.load_run(run)


def test_meta_optimizer_statistics_by_hand():
    """Medians per seed, and the fractions of meta-steps whose per-coordinate max / median |g_i|
    is below Adam's epsilon (Adam's epsilon is per coordinate), and the output gradient's sign."""
    norm = np.array([[1e-5, 2e-5, 3e-4, 4e-5], [1.0, 2.0, 3.0, 5e-5]])
    largest = np.array([[1e-5, 2e-4, 3e-4, 4e-5], [1.0, 2.0, 3.0, 5e-5]])
    median = np.array([[1e-6, 2e-6, 3e-5, 4e-6], [1e-5, 2e-4, 3e-4, 5e-6]])
    output = np.array([[1.0, -2.0, 3.0, 4.0], [-1.0, -1.0, -1.0, 2.0]])
    stats = report.meta_optimizer_statistics(norm, largest, median, output, adam_eps=1e-4)
    assert stats["meta_grad_norm_median"]["per_seed"] == pytest.approx([3e-5, 1.5])
    assert stats["meta_grad_abs_max_median"]["per_seed"] == pytest.approx([1.2e-4, 1.5])
    assert stats["meta_grad_max_below_adam_eps"]["per_seed"] == [0.5, 0.25]
    assert stats["meta_grad_median_below_adam_eps"]["per_seed"] == [1.0, 0.5]
    assert stats["meta_grad_median_below_adam_eps"]["mean"] == pytest.approx(0.75)
    assert stats["meta_grad_output_mean"]["per_seed"] == pytest.approx([1.5, -0.25])
    assert stats["meta_grad_output_positive"]["per_seed"] == [0.75, 0.25]


def test_figure_1_window_is_luketina_s_or_the_last_five_flips():
    # Their Figure 1: steps 4.5M to 5M (five flips every 100k) of a 10M lifetime.
    assert report.figure_1_window([10_000_000, 6_400_000], 100_000) == (4_500_000, 5_000_000)
    # A run that stops earlier: its last five flip periods, set by the shortest run.
    assert report.figure_1_window([2_000_016, 1_000_016], 100_000) == (500_016, 1_000_016)
    assert report.figure_1_window([300_000], 100_000) == (0, 300_000)


def test_window_plot_draws_only_the_window(tmp_path, monkeypatch):
    trace = hand_trace()  # 40,000 steps: the window is steps 0 to 40,000 at flips every 8,000
    drawn = []
    monkeypatch.setattr(report, "band", lambda ax, x, values, label: drawn.append((x, values)))
    path = report.plot_window(
        [("run", trace)], switch_every=8_000, out=tmp_path, name="w.png", ylabel="entropy cost"
    )
    assert path.is_file()
    (x_schedule, schedule), (x_reward, reward) = drawn
    np.testing.assert_array_equal(x_schedule, trace.env_steps[0])
    np.testing.assert_array_equal(schedule, trace.schedule)
    # Reward per step over the trailing 5,000 steps = one meta-step here.
    np.testing.assert_allclose(reward, trace.reward / 5_000)
    drawn.clear()
    report.plot_window(
        [("run", trace)], switch_every=4_000, out=tmp_path, name="w.png", ylabel="entropy cost"
    )
    # Five flips of 4,000 steps: steps 20,000 to 40,000, i.e. meta-steps ending at 25k ... 40k.
    np.testing.assert_array_equal(drawn[0][0], [25_000, 30_000, 35_000, 40_000])


def method_run(path, totals, steps=None, **config):
    """short_run_dir with another config and these per-seed total rewards in summary.json (and
    `steps` per seed, when given)."""
    run = short_run_dir(path)
    lifetime = dataclasses.replace(TwoColorsConfig.lifetime, seeds=len(totals))
    record = {"config": dataclasses.asdict(make_config(lifetime=lifetime, **config))}
    write_json(run / "config.json", record)
    summary = json.loads((run / "summary.json").read_text())
    summary["total_reward"]["per_seed"] = totals
    if steps is not None:
        summary["env_steps_per_seed"] = steps
    write_json(run / "summary.json", summary)
    return run


def full_run(path, totals, **config):
    """method_run at Table 1's budget: 10 seeds (``totals`` repeated) x 10M steps."""
    return method_run(path, [*totals] * (10 // len(totals)), steps=10_000_016, **config)


def test_protocol_rows_beside_table_1_and_the_published_orders(tmp_path):
    ac = method_run(tmp_path / "ac", [1.0e6, 1.2e6, 1.4e6], algo="fixed")
    mg = method_run(tmp_path / "mg", [0.9e6, 1.1e6], algo="mg")  # reward context (default)
    bmg = method_run(tmp_path / "bmg", [2.0e6, 2.0e6], algo="bmg")
    mg_nc = method_run(
        tmp_path / "mg-nc", [1.5e6, 1.5e6], algo="mg", ac=ActorCriticConfig(context="none")
    )
    q = method_run(
        tmp_path / "q", [0.5e6, 0.7e6], algo="fixed", agent="q", q=QLambdaConfig(trace="peng")
    )
    rows, orders = report.protocol_rows([ac, mg, bmg, mg_nc, q])
    by_method = {row["method"]: row for row in rows}
    assert list(by_method) == [
        "AC",
        "AC-MG, reward context",
        "AC-BMG, reward context",
        "AC-MG, no context",
        "Q(lambda)",
    ]
    assert by_method["AC"]["total reward, M (ours)"] == "1.200 (0.200)"  # sample std
    assert by_method["AC"]["published (10 seeds x 10M)"] == "1.24 (0.09)"
    assert by_method["AC-BMG, reward context"]["published (10 seeds x 10M)"] == "1.74 (0.03)"
    assert by_method["Q(lambda)"]["published (10 seeds x 10M)"] == "0.58 (0.07)"
    # Only the orders whose methods all ran are named, and below Table 1's budget not judged.
    assert orders == [
        "published order AC < AC-MG < AC-BMG (reward context): not judged (ours 1.200 vs 1.000 "
        "vs 2.000, from as few as 2 seeds x 2,000 steps against Table 1's 10 x 10,000,000)."
    ]
    # At Table 1's budget: AC 1.2 > MG 1.0 < BMG 2.0 breaks the order ...
    ac, mg, bmg = (
        full_run(tmp_path / f"{algo}-full", totals, algo=algo)
        for algo, totals in (("fixed", [1.1e6, 1.3e6]), ("mg", [0.9e6, 1.1e6]), ("bmg", [2e6]))
    )
    _, orders = report.protocol_rows([ac, mg, bmg])
    assert orders == [
        "published order AC < AC-MG < AC-BMG (reward context): does not hold "
        "(ours 1.200 vs 1.000 vs 2.000)."
    ]
    # ... and the best setting per method counts: a second, better MG run restores it.
    mg2 = full_run(tmp_path / "mg2", [1.3e6], algo="mg")
    _, orders = report.protocol_rows([ac, mg, mg2, bmg])
    assert orders == [
        "published order AC < AC-MG < AC-BMG (reward context): holds (ours 1.200 < 1.300 < 2.000)."
    ]
    rows, _ = report.protocol_rows([method_run(tmp_path / "one", [1.0e6], algo="fixed")])
    assert rows[0]["total reward, M (ours)"] == "1.000 (-)"  # one seed has no spread
    # Methods Table 1 lacks are left out (MG on Q(lambda)).
    q_mg = method_run(tmp_path / "q-mg", [1.0, 2.0], algo="mg", agent="q")
    assert report.protocol_rows([q_mg]) == ([], [])
    # ... and so are runs in another world than Table 1's (the public port's step penalty, or
    # its object re-spawn): their rewards are not Table 1's.
    for name, env in (
        ("penalty", EnvConfig(step_penalty=0.04)),
        ("respawn", EnvConfig(respawn="object")),
    ):
        other = method_run(tmp_path / name, [1.0e6, 1.2e6], algo="fixed", env=env)
        assert report.protocol_rows([other]) == ([], [])
