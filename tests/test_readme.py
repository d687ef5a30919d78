"""The README's two commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

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
