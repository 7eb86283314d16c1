"""Every `bmg ...` command shown in README.md, docs/*.md and docs/notes/*.md runs (scaled down by
flags), so a documented command can never be broken again.

Extraction (`documented_commands`), in document order (README.md, then docs/*.md by name, then
docs/notes/*.md by name):
  * fenced code blocks: every line starting with `bmg ` (a `$ ` prompt is dropped), with
    backslash continuations joined and `# comments` removed;
  * inline code spans (`...`, possibly wrapped over two lines of prose) starting with `bmg `.
  A command whose second word is not a `bmg` command (e.g. the message `bmg fewshot: data
  error: ...`) is not a command, nor is a command's bare name (`bmg compare` in a table).
Expansion: a brace group inside a word (`runs/x/{a,b}`) is bash's and expands in place into
several words; a brace group that is a whole word (`--algo {fixed,mg}`) is a choice and gives
one command per alternative.
Skipped, by rule: commands holding a placeholder, i.e. an upper-case word (`DIR`, `RUN_DIR`,
`PRESET`, `N`), `...`, a shell variable (`$algo` in a loop), or an optional part in square
brackets (`[flags]`), since they name no
actual command. The one exception is a placeholder given to `--data-dir`: every few-shot
command is pointed at the shared synthetic dataset anyway.

Running: in one temporary working directory, so `--out runs/...` paths made by one command are
found by later `bmg compare` / `resume` lines. Every command runs in a fresh process forked from
one fork server that has imported the heavy modules once (JAX, matplotlib, bmg's experiment
layer: about 0.5 s of imports left per command instead of 6-12 s), with the tests' environment:
XLA's backend optimisations off and the session's persistent compilation cache (see
`conftest.py`). Runs go two at a time (compiling takes one core each); a `compare`, `resume` or
`--help` line first waits for every run before it. Scale-down flags are appended after the
command's own (tyro and argparse take the last value): tiny lifetimes, seeds, chunks and
networks for `two-colors`, a few meta-steps and tasks on a tiny synthetic dataset for `fewshot`
runs. Not scaled: `--help`, `resume` and `compare` lines (they take no such flags). Scaled
commands that run the same program (the same experiment and parsed config, whatever the
spelling; `--out` aside; `make-synthetic` always runs) run once; the run directory is copied to
the other `--out` (the programs are deterministic, so the files would be the same). So do
commands that take the same code paths as an earlier one: the same parsed config up to the
values of its numbers, where each number only counts as 0, 1 or other (the values where paths
change: no clip at 0, no unroll at L = 1); such a command is parsed and validated (its flags,
values and the lifetime's arithmetic) but not run, and an earlier run's directory stands in for
its `--out` for later `compare` lines (never for a `resume`d directory). A `resume
DIR` line whose DIR holds a finished run (the documented commands run to the end) first re-runs
DIR's command interrupted after its first checkpoint (Ctrl-C), then runs the documented `resume`
and checks that its .npz files equal those of the uninterrupted run. A command that exits
non-zero fails the test with its output. Measured on 2 busy cores (other jobs running): 39
commands, 20 min before the fork server and the code-path rule.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import re
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "docs" / "notes").glob("*.md")),
]
EXPERIMENTS = ("two-colors", "fewshot", "minatar", "atari")
"""The systems (`bmg.experiments.registry`); each needs its scale-down flags in SCALE."""

SCALE = {
    "two-colors": [
        "--steps", "600", "--seeds", "1", "--chunk-steps", "300", "--env.switch-every", "200",
        "--learner.hidden-size", "8", "--learner.rollout-length", "4",
        "--learner.meta-hidden-size", "4",
    ],
    "fewshot": [
        "--meta-steps", "2", "--eval-every", "1", "--val-tasks", "2", "--test-tasks", "2",
        "--eval-batch-size", "2", "--meta-batch-size", "1", "--filters", "4", "--queries", "1",
        "--eval-inner-steps", "1", "--image-size", "16",
    ],
    "minatar": [
        "--steps", "160", "--seeds", "1", "--chunk-steps", "80", "--stacx.num-envs", "2",
        "--stacx.rollout-length", "4", "--stacx.hidden-size", "8", "--stacx.minatar-channels", "2",
        "--stacx.meta-embedding-size", "2",
    ],
    "atari": [
        "--frames", "256", "--env.frame-size", "16", "--sebulba.actor-devices", "1",
        "--sebulba.learner-devices", "1", "--sebulba.num-actor-threads", "1",
        "--sebulba.envs-per-thread", "2", "--sebulba.rollout-length", "4",
        "--sebulba.rollouts-per-batch", "1", "--sebulba.queue-size", "1",
        "--stacx.impala-channels", "2", "2", "--stacx.impala-blocks", "0",
        "--stacx.hidden-size", "8", "--stacx.meta-embedding-size", "2", "--log-interval", "2",
        "--checkpoint-interval", "4",
    ],
    "make-synthetic": ["--classes", "6", "--per-class", "4", "--size", "16"],
}  # fmt: skip
WORKERS = max(1, min(2, os.cpu_count() or 1))  # runs in parallel (compilation is 1 core each)

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
INLINE = re.compile(r"`([^`]+)`")
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*$|\.\.\.|\[.*\]|^\[|\]$|\$")

PRELOAD = [
    "jax", "jax.numpy", "flax.linen", "optax", "rlax", "chex", "orbax.checkpoint", "tyro", "rich",
    "matplotlib.pyplot", "seaborn", "scipy.stats", "pandas",
    "bmg.experiments.cli", "bmg.train.anakin", "bmg.experiments.two_colors.report",
    "bmg.experiments.fewshot.system", "bmg.experiments.fewshot.report",
]  # fmt: skip
"""Imported once by the fork server that starts every command: none of them starts a JAX
backend (gymnax does, so the commands import it themselves); this leaves about 0.5 s of imports
per command instead of 6-12 s."""


def _command(argv: list[str], cwd: str, output: str, interrupt: bool) -> None:
    """One `bmg` command in a child of the fork server: output to `output`.{out,err}, exit code
    as the process's."""
    os.chdir(cwd)
    for fd, suffix in ((1, "out"), (2, "err")):
        with open(f"{output}.{suffix}", "w") as file:
            os.dup2(file.fileno(), fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    if interrupt:  # Ctrl-C right after the first checkpoint
        from bmg.train import checkpoint

        save = checkpoint.Checkpointer.save

        def save_then_interrupt(self, *args, **kwargs):
            save(self, *args, **kwargs)
            raise KeyboardInterrupt

        checkpoint.Checkpointer.save = save_then_interrupt
    from bmg.experiments.cli import main

    main(argv)


# --- Extraction ----------------------------------------------------------------------------------


def _code_lines(block: str) -> list[tuple[int, str]]:
    """(line index in the block, logical line) of a code block: continuations joined, comments
    and prompts dropped."""
    lines, current, first = [], "", 0
    for index, raw in enumerate(block.splitlines()):
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if not current:
            first = index
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        lines.append((first, (current + line).strip()))
        current = ""
    if current:
        lines.append((first, current.strip()))
    return [(i, line[2:] if line.startswith("$ ") else line) for i, line in lines]


def _expand_braces(words: list[str]) -> list[list[str]]:
    """Bash brace expansion inside words; a whole-word brace group is a choice (one command
    per alternative)."""
    choices = []
    expanded: list[str | list[str]] = []
    for word in words:
        match = re.search(r"\{([^{}]*,[^{}]*)\}", word)
        if match is None:
            expanded.append(word)
        elif match.group(0) == word:
            choices.append(len(expanded))
            expanded.append(match.group(1).split(","))
        else:
            head, tail = word[: match.start()], word[match.end() :]
            expanded.extend(head + part + tail for part in match.group(1).split(","))
    options = [e if i in choices else [e] for i, e in enumerate(expanded)]
    return [list(words) for words in itertools.product(*options)]


def _is_placeholder_free(words: list[str]) -> bool:
    for i, word in enumerate(words):
        if PLACEHOLDER.search(word) and not (i > 0 and words[i - 1] == "--data-dir"):
            return False
    return True


def documented_commands(documents=DOCUMENTS) -> list[tuple[str, list[str]]]:
    """[(where, argv after `bmg`)] of every runnable documented command, in document order."""
    found = []
    for path in documents:
        text = path.read_text()
        candidates = []  # (offset, command text)
        for block in FENCE.finditer(text):
            starts = [0] + [m.end() for m in re.finditer("\n", block.group(1))]
            for index, line in _code_lines(block.group(1)):
                if line.startswith("bmg "):
                    candidates.append((block.start(1) + starts[index], line))
        prose = FENCE.sub(lambda m: " " * len(m.group(0)), text)
        for span in INLINE.finditer(prose):
            code = " ".join(span.group(1).split())
            if code.startswith("bmg "):
                candidates.append((span.start(), code))
        for offset, command in sorted(candidates, key=lambda c: c[0]):
            words = shlex.split(command)
            if len(words) < 3 or words[1] not in bmg_commands():
                continue  # a message, or a command's bare name (`bmg compare` in a table)
            line = text.count("\n", 0, offset) + 1
            for argv in _expand_braces(words[1:]):
                if _is_placeholder_free(argv):
                    name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
                    found.append((f"{name}:{line}", argv))
    return found


def test_extraction_rules(tmp_path):
    """The rules above, on a hand-written document."""
    doc = tmp_path / "doc.md"
    doc.write_text(
        "Run `bmg two-colors demo\n--k 2` or `bmg two-colors PRESET [flags]`; "
        "`bmg fewshot: data error: ...` is a message.\n\n"
        "```bash\n"
        "make demo   # not bmg\n"
        "bmg two-colors demo --out runs/a   # a comment\n"
        "bmg compare runs/{a,b} \\\n"
        "  --out runs/c\n"
        "bmg two-colors resume RUN_DIR\n"
        "bmg fewshot tiny --data-dir DIR --algo {maml,bmg}\n"
        "  bmg two-colors demo --algo $algo --out runs/$algo\n"
        "```\n"
    )
    assert documented_commands([doc]) == [
        ("doc.md:1", ["two-colors", "demo", "--k", "2"]),
        ("doc.md:6", ["two-colors", "demo", "--out", "runs/a"]),
        ("doc.md:7", ["compare", "runs/a", "runs/b", "--out", "runs/c"]),
        ("doc.md:10", ["fewshot", "tiny", "--data-dir", "DIR", "--algo", "maml"]),
        ("doc.md:10", ["fewshot", "tiny", "--data-dir", "DIR", "--algo", "bmg"]),
    ]


def bmg_commands() -> tuple[str, ...]:
    """The `bmg` commands (the CLI's own list)."""
    from bmg.experiments.cli import COMMANDS

    return tuple(COMMANDS)


def test_every_experiment_command_is_scaled_down():
    """A new `bmg` experiment needs its scale-down flags here, or its documented commands would
    run at full size (or be skipped)."""
    assert set(bmg_commands()) - {"compare", "resume"} == set(EXPERIMENTS) <= set(SCALE)


DOCUMENTED = documented_commands()


@pytest.mark.parametrize(
    "where, argv", DOCUMENTED, ids=[f"{w} {' '.join(a)}"[:90] for w, a in DOCUMENTED]
)
def test_documented_command_parses(where, argv, capsys):
    """Each documented command, as written (unscaled), names a `bmg` command and, when it starts
    a run or a sweep, parses into a valid config: its preset, flags and values exist and pass
    validation (one failure per command; `test_every_documented_command_runs` runs them). There
    is one per command, so a broken one is named by its own failure."""
    from bmg.experiments import command
    from bmg.experiments.registry import ENTRIES
    from bmg.experiments.two_colors import sweep as two_colors_sweep

    assert argv[0] in bmg_commands(), where
    if len(argv) > 1 and argv[1] == "resume":  # the docs tier resumes the directory it names
        assert len(argv) == 3, f"{where}: `bmg {shlex.join(argv)}` must name one run directory"
    if argv[0] not in EXPERIMENTS or argv[1] in ("resume", "make-synthetic") or "--help" in argv:
        return
    settings = ENTRIES[argv[0]].settings()
    rest, specs = argv[1:], []
    if rest[0] == "sweep":
        specs, rest = two_colors_sweep.split_grid_flags(rest[1:])
    try:
        parsed = command.parse_run(rest, settings, "bmg", "", resume=False)
    except SystemExit:
        pytest.fail(f"{where}: `bmg {shlex.join(argv)}`: {capsys.readouterr().err[-2000:]}")
    assert isinstance(parsed, command.Run), where
    try:  # no documented flag is one the command would refuse
        command.refuse_unused_flags(rest, parsed.config, settings.unused_fields, "bmg")
    except SystemExit as error:
        pytest.fail(f"{where}: `bmg {shlex.join(argv)}`: {error}")
    if specs:
        from bmg.experiments.two_colors import system as two_colors

        two_colors.sweep_configs(parsed.config, two_colors.parse_grid(specs))


def test_documents_show_commands():
    commands = documented_commands()
    assert any(argv[0] == "two-colors" for _, argv in commands)
    assert any(argv[0] == "compare" for _, argv in commands)


# --- Running -------------------------------------------------------------------------------------


def _value(argv: list[str], flag: str) -> str | None:
    values = [argv[i + 1] for i, word in enumerate(argv[:-1]) if word == flag]
    return values[-1] if values else None


def _without_out(argv: list[str]) -> tuple[str, ...]:
    skip = {i for i, word in enumerate(argv[:-1]) if word == "--out"}
    return tuple(w for i, w in enumerate(argv) if i not in skip and i - 1 not in skip)


def program_key(argv: list[str]) -> tuple[str, ...]:
    """What a command runs, whatever its spelling: the experiment and its parsed config (e.g.
    `exploration --agent q --algo decay` = `exploration --algo decay`); the words without
    `--out` for anything that does not parse as a new run."""
    import contextlib
    import io
    import json

    from bmg.experiments import command
    from bmg.experiments.registry import ENTRIES
    from bmg.train import rundir

    if argv[0] in EXPERIMENTS and argv[1] != "make-synthetic" and "--help" not in argv:
        settings = ENTRIES[argv[0]].settings()
        try:
            with (
                contextlib.redirect_stderr(io.StringIO()),
                contextlib.redirect_stdout(io.StringIO()),
            ):
                parsed = command.parse_run(argv[1:], settings, "bmg", "")
        except SystemExit:
            parsed = None  # the run itself will say what is wrong
        if isinstance(parsed, command.Run):
            return (argv[0], json.dumps(rundir.to_json(parsed.config), sort_keys=True))
    return _without_out(argv)


def _number_class(value):
    """0, 1 or "n" for a number (the values where code paths change: no clip at 0, no unroll at
    L = 1, ...); other values as they are."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    return value if value in (0, 1) else "n"


def coverage_key(key: tuple[str, ...]) -> tuple[str, ...] | None:
    """What a parsed command exercises: its program key with every number replaced by its class
    (`_number_class`); None for commands that did not parse as a run."""
    import json

    if len(key) != 2 or key[0] not in EXPERIMENTS:
        return None

    def classes(tree):
        if isinstance(tree, dict):
            return {name: classes(value) for name, value in tree.items()}
        if isinstance(tree, list):
            return [classes(value) for value in tree]
        return _number_class(tree)

    return (key[0], json.dumps(classes(json.loads(key[1])), sort_keys=True))


def usable(argv: list[str], scale: list[str]) -> list[str]:
    """The scale-down flags (each with its values) that the command's algorithm and agent use:
    the command refuses a flag that has no effect (e.g. --learner.meta-hidden-size with --algo
    fixed)."""
    from bmg.experiments import command
    from bmg.experiments.registry import ENTRIES
    from bmg.experiments.two_colors import sweep as two_colors_sweep

    settings = ENTRIES[argv[0]].settings()
    rest = argv[1:]
    if rest[0] == "sweep":
        rest = two_colors_sweep.split_grid_flags(rest[1:])[1]
    config = command.parse_run(rest, settings, "bmg", "", resume=False).config
    unused = settings.unused_fields(config)
    groups, flags = [], []
    for token in scale:
        if token.startswith("--"):
            groups.append([token])
        else:
            groups[-1].append(token)
    for group in groups:
        if command.given_fields(group[:1], settings.config).isdisjoint(unused):
            flags += group
    return flags


def scaled(argv: list[str], dataset: Path) -> list[str]:
    """`argv` with the scale-down flags appended (none for help, resume and compare)."""
    if "--help" in argv or "-h" in argv or argv[0] == "compare" or "resume" in argv[:3]:
        return argv
    if argv[0] in ("two-colors", "minatar", "atari"):
        return [*argv, *usable(argv, SCALE[argv[0]])]
    if argv[:2] == ["fewshot", "make-synthetic"]:
        return [*argv, *SCALE["make-synthetic"]]
    return [*argv, *SCALE["fewshot"], "--data-dir", str(dataset)]


class Process(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


class Runner:
    """Runs `bmg` commands in `cwd`, each in a fresh child of one fork server (which starts with
    this process's environment: the tests' XLA flags and compilation cache)."""

    def __init__(self, cwd: Path, logs: Path):
        import multiprocessing

        self.cwd = cwd
        self.logs = logs
        logs.mkdir()
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(PRELOAD)
        self.seconds: list[tuple[float, str]] = []  # appended from the worker threads
        self.count = itertools.count()

    def __call__(self, argv: list[str], *, interrupt: bool = False, timeout: float = 600):
        output = str(self.logs / str(next(self.count)))
        started = time.perf_counter()
        child = self.context.Process(
            target=_command, args=(argv, str(self.cwd), output, interrupt), daemon=True
        )
        child.start()
        child.join(timeout)
        if child.exitcode is None:
            child.kill()
            child.join()
        self.seconds.append((time.perf_counter() - started, shlex.join(argv)))
        read = lambda suffix: Path(f"{output}.{suffix}").read_text(errors="replace")
        code = child.exitcode if child.exitcode is not None else -9
        return Process(code, read("out"), read("err"))


def _same_npz(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.glob("*.npz"))
    assert names and names == sorted(p.name for p in b.glob("*.npz")), (names, b)
    for name in names:
        with np.load(a / name) as x, np.load(b / name) as y:
            assert sorted(x.files) == sorted(y.files), name
            for key in x.files:
                np.testing.assert_array_equal(x[key], y[key], err_msg=f"{name}:{key}")


@pytest.mark.slow
@pytest.mark.docs
def test_every_documented_command_runs(tmp_path, monkeypatch):
    from bmg.fewshot.synthetic import make_synthetic

    cwd = tmp_path / "work"
    cwd.mkdir()
    dataset = make_synthetic(tmp_path / "data", format="pkl", classes=6, per_class=4, size=16)
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("COLUMNS", "200")
    run = Runner(cwd, tmp_path / "logs")
    outputs: dict[tuple[str, ...], Path | None] = {}  # scaled argv without --out -> run dir
    producers: dict[Path, list[str]] = {}  # run directory -> the scaled argv that wrote it
    failures: list[str] = []
    skipped: list[str] = []  # commands covered by an earlier run of the same code paths
    pending: list[tuple[str, list[str], tuple[str, ...], concurrent.futures.Future]] = []
    pool = concurrent.futures.ThreadPoolExecutor(WORKERS)

    def check(where, command, process) -> bool:
        if process.returncode != 0:
            failures.append(
                f"{where}: `bmg {shlex.join(command)}` exited {process.returncode}:\n"
                f"{process.stdout[-3000:]}\n{process.stderr[-3000:]}"
            )
        return process.returncode == 0

    def settle():
        """Wait for the runs in flight; note where runs without --out wrote."""
        for where, command, key, future in pending:
            process = future.result()
            if check(where, command, process) and outputs.get(key) is None:
                wrote = re.findall(r"^wrote (\S+)$", process.stdout, re.M)
                outputs[key] = (cwd / wrote[-1]).resolve() if wrote else None
        pending.clear()

    commands = documented_commands()
    resumed_dirs = {  # run directories that a `resume` line continues: always run for real
        (cwd / argv[argv.index("resume") + 1]).resolve() for _, argv in commands if "resume" in argv
    }
    covered: dict[tuple[str, ...], tuple[str, ...]] = {}  # coverage key -> a program run for it
    for where, argv in commands:
        command = scaled(argv, dataset)
        out = _value(command, "--out")
        target = None if out is None else (cwd / out).resolve()
        key = program_key(command)
        independent = argv[0] != "compare" and "resume" not in argv[:3] and "--help" not in argv
        coverage = coverage_key(key)
        if key not in outputs and target not in resumed_dirs and coverage in covered:
            skipped.append(shlex.join(argv))
            key = covered[coverage]  # parsed and validated; runs what an earlier command ran
        if independent and key in outputs and "make-synthetic" not in argv:
            # The same program as an earlier command: copy its run directory to this --out (a
            # command without --out writes a new timestamped directory nobody reads).
            if any(k == key for _, _, k, _ in pending):
                settle()
            earlier = outputs[key]
            if target is not None and earlier is not None and not target.exists():
                shutil.copytree(earlier, target, ignore=shutil.ignore_patterns(".lock"))
                producers[target] = command
            if target is None or earlier is not None:
                continue
        if coverage is not None:
            covered.setdefault(coverage, key)
        outputs[key] = target
        if target is not None:
            producers[target] = command
        if independent:  # runs in parallel with the other runs
            if target is None and any(_value(c, "--out") is None for _, c, _, _ in pending):
                settle()  # default run directories are named by the second they start in
            pending.append((where, command, key, pool.submit(run, command)))
            continue

        settle()  # compare, resume and help lines read what the runs before them wrote
        resumed = None
        if "resume" in argv[:3]:
            target = (cwd / argv[argv.index("resume") + 1]).resolve()
            if (target / "summary.json").exists() and target in producers:
                resumed = tmp_path / "finished" / target.name
                resumed.parent.mkdir(exist_ok=True)
                shutil.move(target, resumed)
                stopped = run(producers[target], interrupt=True)
                if stopped.returncode == 0 or "resume" not in stopped.stderr:
                    failures.append(
                        f"{where}: interrupting `bmg {shlex.join(producers[target])}` left "
                        f"nothing to resume:\n{stopped.stdout[-3000:]}\n{stopped.stderr[-3000:]}"
                    )
                    continue
        if check(where, command, run(command)) and resumed is not None:
            _same_npz(target, resumed)
    settle()
    pool.shutdown()

    slowest = sorted(run.seconds, reverse=True)[:5]
    print("\n".join(f"{s:6.1f} s  bmg {c}" for s, c in slowest))
    print(f"{len(run.seconds)} commands, {sum(s for s, _ in run.seconds):.0f} s in all")
    print(f"{len(skipped)} commands parsed only (their code paths ran): " + "; ".join(skipped))
    assert not failures, "\n\n".join(failures)
