"""Run directories: bad --out paths refused before any work, one run per directory (a lock held
for the run's life), strict atomic JSON, and one sentence naming the file for failed writes and
damaged reads."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from bmg.train import rundir
from bmg.train.rundir import (
    CsvAppender,
    is_run_dir,
    lock_run_dir,
    make_output_dir,
    make_run_dir,
    read_config,
    read_json,
    release_run_dir,
    save_npz,
    write_json,
)


@pytest.fixture(autouse=True)
def _release_locks():
    yield
    for path in list(rundir._HELD):
        release_run_dir(path)


def one_sentence(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text and text.endswith("."), text
    return text


# --out checks -----------------------------------------------------------------------------------


def test_out_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a directory") as error:
        make_run_dir(str(tmp_path / "f"), "two-colors", "bmg")
    assert str(tmp_path / "f") in one_sentence(error)
    assert (tmp_path / "f").read_text() == "x"


def test_out_under_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match=f"{tmp_path / 'f'} is a file") as error:
        make_run_dir(str(tmp_path / "f" / "a" / "b"), "two-colors", "bmg")
    one_sentence(error)


def test_empty_out_is_refused_not_ignored(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for out in ("", "  "):
        with pytest.raises(ValueError, match="--out must name a directory, got an empty string"):
            make_run_dir(out, "two-colors", "bmg")
    assert not (tmp_path / "runs").exists()


def test_read_only_file_system_is_refused(tmp_path, monkeypatch):
    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(ValueError, match="the file system is read-only") as error:
        make_run_dir(str(tmp_path / "run"), "two-colors", "bmg")
    assert str(tmp_path / "run") in one_sentence(error)


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs a /sys mount")
def test_unwritable_place_is_refused_for_real():
    """/sys is mounted read-only (or refuses new entries) even for root."""
    with pytest.raises(ValueError, match="cannot be written"):
        make_run_dir("/sys/bmg-test-run", "two-colors", "bmg")


def test_default_run_dir_is_made_and_locked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = make_run_dir(None, "two-colors", "bmg")
    assert path.parent == Path("runs/two-colors") and path.name.startswith("bmg-")
    assert (path / rundir.LOCK).is_file() and path.absolute() in rundir._HELD
    assert not list(path.glob(".write-test*"))


def test_dir_holding_a_run_is_refused_with_resume_hint(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    hint = "; to continue it, run `bmg two-colors --resume DIR`"
    with pytest.raises(ValueError, match="already holds a run") as error:
        make_run_dir(str(tmp_path), "two-colors", "bmg", resume_hint=hint)
    assert one_sentence(error).endswith(hint + ".")
    (tmp_path / "summary.json").write_text("{}")  # finished: no hint
    with pytest.raises(ValueError) as error:
        make_run_dir(str(tmp_path), "two-colors", "bmg", resume_hint=hint)
    assert "resume" not in str(error.value)


def test_dir_holding_other_files_is_refused_and_left_alone(tmp_path):
    """A run would overwrite files it did not write (a user's metrics.csv, plots): refused; an
    empty directory, or one holding only a stale lock file, is taken."""
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "metrics.csv").write_text("precious")
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="already holds files and no run") as error:
        make_run_dir(str(tmp_path / "full"), "two-colors", "bmg")
    assert "metrics.csv, notes.txt" in one_sentence(error)
    assert (tmp_path / "full" / "metrics.csv").read_text() == "precious"
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["metrics.csv", "notes.txt"]
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / rundir.LOCK).write_text("")
    assert make_run_dir(str(tmp_path / "empty"), "two-colors", "bmg") == tmp_path / "empty"


# the lock ---------------------------------------------------------------------------------------

HOLD = textwrap.dedent(
    """
    import sys, time
    from bmg.train.rundir import make_run_dir
    make_run_dir(sys.argv[1], "two-colors", "bmg")
    print("locked", flush=True)
    time.sleep(60)
    """
)


def test_second_run_into_the_same_dir_refuses_until_the_first_ends(tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert first.stdout.readline().strip() == "locked"
        with pytest.raises(ValueError, match="is in use by another run") as error:
            make_run_dir(str(out), "two-colors", "bmg")
        assert str(out / rundir.LOCK) in one_sentence(error)
        with pytest.raises(ValueError, match="is in use by another run"):
            lock_run_dir(out)  # e.g. `--resume` of a run that is still going
    finally:
        first.kill()  # SIGKILL: a crash; the OS releases the lock
        first.wait()
    make_run_dir(str(out), "two-colors", "bmg")  # free again


def test_lock_is_per_process_and_released(tmp_path):
    lock_run_dir(tmp_path)
    lock_run_dir(tmp_path)  # already ours: no-op
    code = f"from bmg.train.rundir import lock_run_dir; lock_run_dir({str(tmp_path)!r})"
    busy = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert busy.returncode == 1 and "is in use by another run" in busy.stderr
    release_run_dir(tmp_path)
    free = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert free.returncode == 0, free.stderr


# compare --out -----------------------------------------------------------------------------------


def test_output_dir_refuses_a_run_directory(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    assert is_run_dir(run)
    with pytest.raises(ValueError, match="is a run's directory") as error:
        make_output_dir(str(run))
    one_sentence(error)
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]
    assert make_output_dir(str(tmp_path / "cmp" / "x")).is_dir()
    with pytest.raises(ValueError, match="empty string"):
        make_output_dir("")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        make_output_dir(str(tmp_path / "file"))


# strict JSON, atomic writes ------------------------------------------------------------------


def refuse_constant(name):
    raise ValueError(f"non-strict JSON constant {name}")


def test_write_json_writes_nan_and_inf_as_null(tmp_path):
    @dataclasses.dataclass
    class Row:
        value: float = float("inf")

    obj = {
        "nan": float("nan"),
        "inf": -np.inf,
        "np": np.float32("nan"),
        "array": np.array([1.0, np.nan]),
        "nested": [(1, float("inf"))],
        "int": np.int64(2**40),
        "path": Path("a/b"),
        "row": Row(),
    }
    write_json(tmp_path / "s.json", obj)
    loaded = json.loads((tmp_path / "s.json").read_text(), parse_constant=refuse_constant)
    assert loaded == {
        "nan": None,
        "inf": None,
        "np": None,
        "array": [1.0, None],
        "nested": [[1, None]],
        "int": 2**40,
        "path": "a/b",
        "row": {"value": None},
    }


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_keeps_the_previous_json_intact(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    write_json(path, {"good": 1})
    monkeypatch.setattr(os, "fsync", _disk_full)  # the data never reaches the disk
    with pytest.raises(ValueError, match="No space left on device") as error:
        write_json(path, {"good": 2})
    text = one_sentence(error)
    assert str(path) in text and "previous summary.json is intact" in text
    assert json.loads(path.read_text()) == {"good": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]  # no temporary left


def test_disk_full_in_save_npz_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "trace.npz"
    save_npz(path, x=np.arange(3))
    monkeypatch.setattr(np, "savez_compressed", _disk_full)
    with pytest.raises(ValueError, match=f"cannot write {path} .No space left on device."):
        save_npz(path, x=np.arange(5))
    with np.load(path) as saved:
        np.testing.assert_array_equal(saved["x"], np.arange(3))


def test_csv_append_is_all_or_nothing(tmp_path, monkeypatch):
    path = tmp_path / "metrics.csv"
    csv = CsvAppender(path, ["a", "b"])
    csv.append([{"a": 1, "b": 2}])
    before = path.read_bytes()
    assert before == b"a,b\r\n1,2\r\n"
    real_write = os.write

    def half_then_full(fd, data):  # a partial write, then the disk is full
        if len(data) > 4:
            real_write(fd, data[:4])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(ValueError, match="earlier rows are intact") as error:
        csv.append([{"a": 3, "b": 4}, {"a": 5, "b": 6}])
    assert str(path) in one_sentence(error)
    monkeypatch.undo()
    assert path.read_bytes() == before
    csv.append([{"a": 3, "b": 4}])
    assert path.read_bytes() == before + b"3,4\r\n"


# reading back --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Config:
    steps: int = 10
    sizes: tuple[int, ...] = (1, 2)


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"config": {"steps": 1', "is not valid JSON as a run's config"),
        ("", "is not valid JSON"),
        ('{"config": {"steps": 1, "sizes": [1]', "line 1 column"),
        ('{"other": 1}', "is not a run's config: it lacks the key config"),
        ('{"config": {"steps": 1, "extra": 2, "sizes": []}}', "unknown \\['extra'\\]"),
    ],
)
def test_damaged_config_names_the_file(tmp_path, content, message):
    (tmp_path / "config.json").write_text(content)
    with pytest.raises(ValueError, match=message) as error:
        read_config(tmp_path, Config)
    assert str(tmp_path / "config.json") in one_sentence(error)


def test_read_config_round_trip_and_missing(tmp_path):
    rundir.write_config(tmp_path, Config(steps=3, sizes=(4,)))
    assert read_config(tmp_path, Config) == Config(steps=3, sizes=(4,))
    with pytest.raises(ValueError, match="does not exist"):
        read_config(tmp_path / "nowhere", Config)


def test_read_json_names_the_file(tmp_path):
    path = tmp_path / "summary.json"
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match=f"{path} cannot be read as a run's summary"):
        read_json(path, "a run's summary")
    path.write_text('{"a": NaN}')  # what old versions wrote: still read
    assert np.isnan(read_json(path)["a"])


def test_record_resume_appends_and_keeps_strict_json(tmp_path):
    rundir.write_config(tmp_path, Config())
    rundir.record_resume(tmp_path, after_chunk=2)
    record = json.loads((tmp_path / "config.json").read_text(), parse_constant=refuse_constant)
    (resume,) = record["resumed"]
    assert resume["after_chunk"] == 2 and "git_commit" in resume


def test_a_union_of_configs_is_read_back_as_the_member_it_was():
    """A field typed as a union of configs (Two-colors' learner: the actor-critic or Q(lambda))
    is rebuilt as the member whose fields the saved dict has, both ways round."""
    from bmg.agents.configs import ActorCriticConfig, QLambdaConfig
    from bmg.experiments.two_colors.config import PRESET_VALUES, TwoColorsConfig

    for agent, member in (("ac", ActorCriticConfig), ("q", QLambdaConfig)):
        config = PRESET_VALUES["related"].config(agent=agent)
        saved = json.loads(json.dumps(rundir.to_json(config)))
        back = rundir.config_from_dict(TwoColorsConfig, saved)
        assert type(back.learner) is member and back == config
