"""The README's two commands are the ones CI runs; its sample outputs are what
the commands print."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from trioraft.cli import main

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(.+?)\n```", text)


def test_readme_opens_with_the_install_and_run_and_the_test_commands() -> None:
    commands = readme_commands()
    assert len(commands) >= 2
    assert "trioraft simulate" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert readme_commands()[1] in ci.splitlines()


def test_the_readme_library_example_runs(capsys: object) -> None:
    import trio
    import trio.testing

    text = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.+?)```", text, re.S)
    assert code is not None
    namespace: dict[str, object] = {}
    exec(code.group(1).replace("trio.run(main)", ""), namespace)
    trio.run(namespace["main"], clock=trio.testing.MockClock(autojump_threshold=0))  # type: ignore[arg-type]
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert out.count("1 {'set': 'x', 'to': 1}") == 3


def readme_samples() -> list[tuple[str, str]]:
    """(command, the output shown) of each ```text block that opens with
    ``$ trioraft``, but simulate's (its output is being reshaped elsewhere)."""
    text = (ROOT / "README.md").read_text()
    samples = re.findall(r"```text\n\$ (trioraft .+?)\n(.*?)\n```", text, re.S)
    return [(command, shown) for command, shown in samples if " simulate" not in command]


_TIMING = re.compile(r"\d[\d.,]* s, [\d,]+ states/s")


def test_the_readme_shows_a_check_sample() -> None:
    assert any(command.startswith("trioraft check") for command, _ in readme_samples())


@pytest.mark.parametrize(("command", "shown"), readme_samples())
def test_the_readme_sample_outputs_are_what_the_commands_print(
    command: str, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    main(shlex.split(command)[1:])
    out = _TIMING.sub("TIMING", capsys.readouterr().out.rstrip("\n"))
    # each line as shown, timings aside; a "..." line stands for one or more lines
    lines = [re.escape(_TIMING.sub("TIMING", line)) for line in shown.split("\n")]
    pattern = "\n".join(r"(?:[^\n]*\n)*[^\n]*" if line == r"\.\.\." else line for line in lines)
    assert re.fullmatch(pattern, out), f"README sample of `{command}` differs:\n{out}"
