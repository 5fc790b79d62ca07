"""The README's two top commands are exactly what CI runs, and its Python example works."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _top_commands():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.strip().splitlines()]


@pytest.mark.skipif(not (ROOT / ".ci" / "run").exists(), reason="not a source checkout")
def test_ci_runs_the_readme_commands():
    install_and_run, tests = _top_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"( {install_and_run} )" in ci
    assert f"\n{tests}\n" in ci


def test_readme_python_example_runs():
    text = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    env = {}
    exec(compile(code, "README.md", "exec"), env)
    assert env["P"].shape == (11, 2000, 1)
    assert (env["H_ref"] - env["H"]).abs().max() < 1e-5
