"""The `trioraft` command line: its output, exit statuses and bad-input handling."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from trioraft.cli import OutputError, _output_error, main
from trioraft.model.check_cli import memory_size

SMALL_CHECK = ["check", "--servers", "2", "--max-term", "2", "--max-log", "1", "--max-msgs", "1"]


def test_simulate_prints_a_summary_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--seed", "3", "--nodes", "3", "--duration", "20"]) == 0
    out = capsys.readouterr().out
    assert "seed 3, 3 nodes, 20 s of faults then heal" in out
    assert "leader per term:" in out
    assert "result: OK" in out
    assert "leaderless after a leader fault" in out


def test_simulate_is_reproducible(capsys: pytest.CaptureFixture[str]) -> None:
    def run() -> list[str]:
        main(["simulate", "--seed", "5", "--nodes", "5", "--duration", "15", "--unreliable"])
        return [line for line in capsys.readouterr().out.splitlines() if "wall time" not in line]

    assert run() == run()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["simulate", "--nodes", "0"], "--nodes: must be at least 1"),
        (["simulate", "--nodes", "three"], "--nodes: expected a whole number"),
        (["simulate", "--duration", "-1"], "--duration: must be a positive"),
        (["simulate", "--duration", "inf"], "--duration: must be a positive"),
        (["simulate", "--seed", "x"], "--seed: expected a whole number"),
        (["check", "--max-memory", "2X"], "--max-memory: expected a size such as 2G"),
        (["check", "--max-memory", "0"], "--max-memory: must be at least 1 byte"),
        (["check", "--max-states", "-1"], "--max-states: must not be negative"),
        (["simulate", "--frobnicate"], "unrecognized arguments"),
        (["explode"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_arguments_exit_2_with_a_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "usage:" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("module", ["trioraft", "trioraft.cli"])
def test_the_installed_command_runs(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "simulate", "--nodes", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--nodes" in done.stderr


def test_check_lists_mutants_and_passes_small_bounds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--list-mutants"]) == 0
    names = capsys.readouterr().out.split()
    assert "commit-old-term-by-counting" in names and len(names) >= 5
    assert main(SMALL_CHECK) == 0
    assert "no invariant violated" in capsys.readouterr().out


def test_check_catches_a_planted_bug(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["check", "--servers", "3", "--max-term", "2", "--max-log", "0", "--max-msgs", "2",
            "--max-restarts", "1", "--mutant", "forget-voted-for-on-restart"]  # fmt: skip
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "VIOLATION of ElectionSafety" in out and "1." in out


def test_check_refuses_an_unknown_mutant(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--mutant", "no-such-bug"]) == 2
    assert "unknown mutant" in capsys.readouterr().err


def test_check_stops_at_max_states_and_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*SMALL_CHECK, "--max-states", "100", "--quiet"]) == 3
    verdict = capsys.readouterr().out.splitlines()[-1]
    assert verdict.startswith("INCOMPLETE: stopped at --max-states 100 before exploring every")
    assert "no invariant violated so far: 100 distinct states," in verdict


def test_check_stops_at_max_memory_and_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*SMALL_CHECK, "--max-memory", "1M", "--quiet"]) == 3
    verdict = capsys.readouterr().out.splitlines()[-1]
    assert verdict.startswith("INCOMPLETE: stopped at --max-memory 1M before exploring every")


def test_check_without_a_memory_limit_completes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*SMALL_CHECK, "--max-memory", "none", "--quiet"]) == 0
    assert "no invariant violated: 247 distinct states" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "size"),
    [("2G", 2 << 30), ("512M", 512 << 20), ("1000000", 1_000_000), ("1.5k", 1536),
     ("2GiB", 2 << 30), ("64 MB", 64 << 20), ("none", None)],
)  # fmt: skip
def test_memory_sizes(text: str, size: int | None) -> None:
    assert memory_size(text) == size


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"trioraft {metadata.version('trioraft')}\n"


def _run(argv: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "trioraft", *argv]
    return subprocess.run(command, text=True, check=False, **options)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize(
    "argv",
    [["--version"], ["check", "--list-mutants"], [*SMALL_CHECK, "--quiet"], ["validate", "TRACE"]],
)
def test_an_unwritable_stdout_exits_2_naming_it(argv: list[str], tmp_path: Path) -> None:
    if "TRACE" in argv:
        trace = tmp_path / "run.ndjson"
        assert _run(["simulate", "--nodes", "3", "--duration", "2", "--trace", str(trace)],
                    stdout=subprocess.DEVNULL).returncode == 0  # fmt: skip
        argv = ["validate", str(trace)]
    with open("/dev/full", "w") as full:
        done = _run(argv, stdout=full, stderr=subprocess.PIPE)
    assert done.returncode == 2
    assert done.stderr == "trioraft: cannot write standard output: No space left on device\n"


def test_a_reader_that_goes_away_ends_the_command_quietly() -> None:
    command = [sys.executable, "-m", "trioraft", "check", "--list-mutants"]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()  # before the child writes: its first write meets a broken pipe
    assert child.wait() == 0
    assert child.stderr.read() == b""
    child.stderr.close()


def test_an_output_error_is_found_in_a_trio_exception_group() -> None:
    error = OutputError("standard output", OSError(28, "No space left on device"))
    group = BaseExceptionGroup("nursery", [ValueError(), ExceptionGroup("inner", [error])])
    assert _output_error(group) is error
    assert _output_error(ExceptionGroup("other", [ValueError()])) is None
