"""Malformed inputs to every command: exit code 2, exactly one line on stderr, no traceback,
and nothing left behind (issue 12). Each case fails before anything compiles; the commands run
in-process (``jopt.cli.main``), except two subprocess checks of the real entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from jopt.cli import main as cli

BASE = """\
name: t
data: {name: digits}
model: {name: mlp, hidden: [8]}
optimizer: {name: adam, learning_rate: 1.0e-3}
train: {epochs: 1}
output: {plots: false, progress: false}
"""
GRID = "sweep: {grid: {optimizer.learning_rate: [0.1, 0.01]}}\n"


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A scratch directory as the working directory, holding ``cfg.yaml`` (BASE)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfg.yaml").write_text(BASE)
    (tmp_path / "grid.yaml").write_text(BASE + GRID)
    (tmp_path / "a_file").write_text("x")
    return tmp_path


def _tree(root) -> set[str]:
    return {
        os.path.relpath(os.path.join(d, n), root)
        for d, dirs, files in os.walk(root)
        for n in dirs + files
    }


def _fails_cleanly(argv: list[str], root, capsys, pattern: str) -> str:
    before = _tree(root)
    try:
        code = cli(argv)
    except SystemExit as e:  # argparse usage errors
        code = e.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert pattern in lines[0], lines[0]
    assert _tree(root) == before, "the failed command left files behind"
    return lines[0]


# (argv, a piece of the one line)
RUN = {
    "nan_lr": (["optimizer.learning_rate=nan"], "learning_rate must be a finite number"),
    "inf_lr": (["optimizer.learning_rate=.inf"], "learning_rate must be a finite number"),
    "nan_l2": (["regularization.l2=.nan"], "regularization.l2 must be a finite number"),
    "inf_wd": (["regularization.weight_decay=1e999"], "weight_decay must be a finite number"),
    "b1_text": (["optimizer.b1=abc"], "optimizer.b1 must be a number, got 'abc'"),
    "b1_two": (["optimizer.b1=2.0"], "optimizer.b1 is a decay rate and must be in [0, 1)"),
    "eps_nan": (["optimizer.eps=.nan"], "optimizer.eps must be a finite number"),
    "nesterov_number": (["optimizer.nesterov=3"], "optimizer.nesterov must be true or false"),
    "seed_uint32": (["seed=4294967296"], "seed must be an integer in [0, 4294967295]"),
    "data_seed_negative": (["data.seed=-1"], "data.seed must be an integer in [0, 4294967295]"),
    "epochs_int32": (["train.epochs=3000000000"], "train.epochs must be an integer in [1, 21474"),
    "batch_huge": (["batching.batch_size=99999999999999999999"], "batching.batch_size must be"),
    "hidden_zero": (["model.hidden=[8, 0]"], "model.hidden[1] must be an integer in [1,"),
    "dropout_one": (["regularization.dropout=1.0"], "regularization.dropout must be a number in"),
    "schedule_typo": (["schedule.name=cosin"], "did you mean 'cosine'"),
    "chain_typo": (
        ["optimizer.chain=[{name: clip_by_globl_norm}]"],
        "optimizer.chain[0].name: unknown transform 'clip_by_globl_norm'; did you mean",
    ),
    "chain_state_class": (["optimizer.chain=[{name: TraceState}]"], "optimizer.chain[0].name"),
    "chain_nan_kwarg": (
        ["optimizer.chain=[{name: clip_by_global_norm, max_norm: .nan}]"],
        "optimizer.chain[0].max_norm must be a finite number",
    ),
    "group_key_typo": (
        ["optimizer.groups=[{pattern: 'head/**', lr_mul: 0.1}]"],
        "did you mean 'lr_mult'",
    ),
    "group_b1": (
        ["optimizer.groups=[{pattern: 'head/**', b1: 1.5}]"],
        "optimizer.groups[0].b1 is a decay rate",
    ),
    "group_matches_nothing": (
        ["optimizer.groups=[{pattern: 'encoder/**', lr_mult: 0.1}]"],
        "optimizer.groups[0].pattern 'encoder/**' matches no parameter",
    ),
    "smoothing_under_mse": (
        ["loss.name=mse", "loss.label_smoothing=0.1"],
        "label_smoothing applies to cross_entropy only",
    ),
    "ce_on_regression_task": (
        ["data.task=regression", "loss.name=cross_entropy"],
        "loss.name 'cross_entropy' does not fit the regression task",
    ),
    "ce_on_regression_data": (
        ["data.name=linear", "loss.name=cross_entropy"],
        "does not fit the regression task of data 'linear'",
    ),
    "accuracy_on_regression": (
        [
            "data.name=linear",
            "regularization.early_stopping.patience=2",
            "regularization.early_stopping.metric=val_accuracy",
        ],
        "'val_accuracy' is not computed for the regression task",
    ),
    "options_task": (["data.options={task: regression}"], "write data.task instead"),
    "options_nan": (["data.options={noise: .nan}"], "data.options.noise must be a finite number"),
    "bad_task": (["data.task=regresion"], "did you mean 'regression'"),
    "runs_dir_is_file": (["output.runs_dir=a_file"], "output.runs_dir: a_file exists and is not"),
    "runs_dir_under_file": (["output.runs_dir=a_file/runs"], "is a file, not a directory"),
    "runs_dir_empty": (["output.runs_dir=''"], "output.runs_dir is empty"),
    "runs_dir_unwritable": (["output.runs_dir=/proc/jopt-runs"], "output.runs_dir: cannot write"),
    "data_file_missing": (
        ["data.name=npz", "data.options={path: missing.npz}"],
        "data.options.path: file not found: missing.npz",
    ),
    "argparse_flag": (["--bogus"], "unknown option '--bogus'"),
}


@pytest.mark.parametrize("case", sorted(RUN))
def test_run_refuses(case, work, capsys):
    overrides, pattern = RUN[case]
    _fails_cleanly(["run", "cfg.yaml", *overrides], work, capsys, pattern)


@pytest.mark.parametrize(
    "text,pattern",
    [
        (BASE + "name: again\n", "duplicate key 'name' (first at line 1)"),
        ("name: t\noptimizer: {name: adam, name: sgd}\n", "duplicate key 'name'"),
        (b"name: caf\xe9\n", "is not UTF-8 text"),
        (BASE.replace("1.0e-3", ".nan"), "optimizer.learning_rate must be a finite number"),
        (BASE + "seed: 123456789012345678901234567890\n", "seed must be an integer in"),
    ],
    ids=["duplicate_top", "duplicate_nested", "latin1", "nan_in_file", "huge_int"],
)
def test_validate_refuses_bad_files(text, pattern, work, capsys):
    path = work / "bad.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    _fails_cleanly(["validate", "bad.yaml"], work, capsys, pattern)


def test_validate_loads_the_data(work, capsys):
    (work / "data.npz").write_bytes(b"this is not a zip archive")
    line = _fails_cleanly(
        ["validate", "cfg.yaml", "data.name=npz", "data.options={path: data.npz}"],
        work,
        capsys,
        "data.npz",
    )
    assert "jopt validate: error:" in line


SWEEP = {
    "grid_nan": (["sweep.grid={optimizer.learning_rate: [0.1, .nan]}"], "must be a finite number"),
    "grid_b1": (["sweep.grid={optimizer.b1: [0.9, 2.0]}"], "sweep.grid.optimizer.b1"),
    "grid_bad_int": (["sweep.grid={batching.batch_size: [8, 0]}"], "batching.batch_size must be"),
    "seeds_past_uint32": (["seed=4294967295", "sweep.seeds=2"], "within uint32"),
    # the 2nd member's data is a regression set: found before the 1st trains
    "second_member_data": (
        ["loss.name=cross_entropy", "sweep.grid={data.name: [digits, linear]}"],
        "does not fit the regression task of data 'linear'",
    ),
    "second_member_groups": (
        ["sweep.grid={optimizer.groups: [[], [{pattern: 'nothing', lr_mult: 0.1}]]}"],
        "matches no parameter",
    ),
    "protocol_no_val": (["data.val_fraction=0", "--protocol"], "needs a validation split"),
    "protocol_regression_metric": (
        ["data.name=linear", "--protocol"],
        "'val_accuracy' is not computed for the regression task",
    ),
    "protocol_final_seeds": (
        ["seed=4294967290", "sweep.protocol.seeds=10", "--protocol"],
        "within uint32",
    ),
}


@pytest.mark.parametrize("case", sorted(SWEEP))
def test_sweep_checks_every_member_first(case, work, capsys):
    overrides, pattern = SWEEP[case]
    _fails_cleanly(["sweep", "grid.yaml", *overrides], work, capsys, pattern)


def _run_dir(root, name: str, summary: str, metrics: str = '{"epoch": 1}\n') -> str:
    d = root / name
    d.mkdir()
    (d / "config.yaml").write_text(BASE)
    (d / "summary.json").write_text(summary)
    (d / "metrics.jsonl").write_text(metrics)
    return str(d)


GOOD_SUMMARY = json.dumps({"epochs_run": 1, "best": {"val_loss": 1.0}, "final": {}})


@pytest.mark.parametrize(
    "make,pattern",
    [
        (lambda r: [_run_dir(r, "a", '{"epochs_run": 1, "be')], "a/summary.json is corrupt"),
        (lambda r: [_run_dir(r, "a", "[1, 2]")], "a/summary.json is corrupt"),
        (lambda r: [_run_dir(r, "a", GOOD_SUMMARY, '{"epoch": 1}\n{"epo')], "metrics.jsonl"),
        (lambda r: [_run_dir(r, "a", GOOD_SUMMARY, "[1]\n")], "metrics.jsonl is corrupt"),
        (lambda r: [_run_dir(r, "a", "\xff\xfe")], "summary.json"),
        (lambda r: [str(r / "missing")], "not a directory"),
        (lambda r: [_run_dir(r, "a", GOOD_SUMMARY), "--out", "a_file"], "--out: a_file exists"),
    ],
    ids=["truncated", "not_object", "jsonl_truncated", "jsonl_not_object", "binary", "missing",
         "out_is_file"],
)  # fmt: skip
def test_compare_refuses_corrupt_runs(make, pattern, work, capsys):
    _fails_cleanly(["compare", *make(work)], work, capsys, pattern)


def test_compare_refuses_a_corrupt_sweep(work, capsys):
    d = work / "s"
    d.mkdir()
    (d / "sweep.json").write_text('{"results": [], "membe')
    _fails_cleanly(["compare", str(d)], work, capsys, "s/sweep.json is corrupt")
    (d / "sweep.json").write_text('{"results": [{"x": 1}], "members": []}')
    _fails_cleanly(["compare", str(d)], work, capsys, "s/sweep.json is corrupt")


BENCH = {
    "json_missing_dir": (["update", "--json", "missing/report.json"], "directory missing"),
    "json_is_dir": (["update", "--json", "."], "is a directory"),
    "steps_not_int": (["update", "--steps", "abc"], "invalid int value: 'abc'"),
    "no_benchmark": ([], "choose a benchmark"),
}


@pytest.mark.parametrize("case", sorted(BENCH))
def test_bench_refuses_before_running(case, work, capsys):
    args, pattern = BENCH[case]
    _fails_cleanly(["bench", *args, "--params", "1000"][: None if args else 1], work, capsys,
                   pattern)  # fmt: skip


LR_FIND = {
    "min_lr_zero": (["--min-lr", "0"], "need 0 < min_lr < max_lr"),
    "max_lr_inf": (["--max-lr", "inf"], "--min-lr and --max-lr must be finite"),
    "diverge_nan": (["--diverge", "nan"], "--diverge must be a finite number > 1"),
    "one_step": (["--steps", "1"], "num_steps must be an integer >= 5"),
    "runs_dir_file": (["--runs-dir", "a_file"], "--runs-dir: a_file exists"),
    "nan_override": (["optimizer.learning_rate=nan"], "must be a finite number"),
}


@pytest.mark.parametrize("case", sorted(LR_FIND))
def test_lr_find_refuses(case, work, capsys):
    args, pattern = LR_FIND[case]
    _fails_cleanly(["lr-find", "cfg.yaml", *args], work, capsys, pattern)


@pytest.mark.parametrize(
    "argv,pattern",
    [
        (["run", "bad.yaml"], "is not UTF-8 text"),
        (["bench", "update", "--params", "1000", "--json", "nowhere/r.json"], "directory nowhere"),
    ],
    ids=["run_latin1", "bench_json"],
)
def test_entry_point_one_line(argv, pattern, tmp_path):
    (tmp_path / "bad.yaml").write_bytes(b"name: caf\xe9\n")
    proc = subprocess.run(
        [sys.executable, "-m", "jopt.cli", *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and pattern in proc.stderr, proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["bad.yaml"]
