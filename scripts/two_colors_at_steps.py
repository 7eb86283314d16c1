"""Two-colors runs truncated to their first N steps per seed: the columns of `bmg compare`.

Usage: python scripts/two_colors_at_steps.py N RUN_DIR [RUN_DIR ...]
"""

import sys

from bmg.experiments.two_colors import report
from bmg.experiments.two_colors.system import Trace

FIELDS = ["env_steps", "reward", "schedule", "policy_entropy", "meta_loss"]


def main(limit: int, run_dirs: list[str]) -> None:
    print(
        "| run | total reward | reward/step, last 10% | entropy w. after / before flip | "
        "object 0 pays, last 25% | object 1 pays, last 25% |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for run in run_dirs:
        config, _, arrays = report.load_run(run)
        switch_every = config["config"]["env"]["switch_every"]
        keep = arrays["env_steps"][0] <= limit + 200  # the meta-step that crosses N, roughly
        trace = Trace(*(arrays[name][:, keep] for name in FIELDS))
        summary = report.summarize(
            trace, arrays["first_rewards"], switch_every=switch_every, seconds=1.0
        )
        colour_0, colour_1 = report.late_colour_rates(trace.env_steps, trace.reward, switch_every)
        total, last = summary["total_reward"], summary["reward_per_step_last_10pct"]
        after = report._flip_stat(summary, "after")
        before = report._flip_stat(summary, "before")
        flips = f"{report.format_mean_se(after, 4)} / {report.format_mean_se(before, 4)}"
        print(
            f"| {report.run_label(config)} ({trace.env_steps[0, -1]:,} steps) "
            f"| {report.format_mean_se(total, 0)} | {report.format_mean_se(last)} | {flips} "
            f"| {report.format_mean_se(colour_0)} | {report.format_mean_se(colour_1)} |"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2:])
