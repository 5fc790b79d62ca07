"""The README's two top commands are exactly what CI runs, and its Python example works."""

import os
import re
from pathlib import Path

import pytest
import torch

import hinn

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


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_python_example_runs():
    env = {}
    exec(compile(_python_blocks()[0], "README.md", "exec"), env)
    assert env["P"].shape == (11, 2000, 1)
    assert (env["H_ref"] - env["H"]).abs().max() < 1e-5
    assert env["p"].grad is not None and env["net"].theta.grad is not None  # what its comment promises


def test_readme_user_model_example_runs():
    env = {}
    exec(compile(_python_blocks()[1], "README.md", "exec"), env)
    Q, q0 = env["Q"], env["q0"]
    assert Q.shape == (101, 5, 1)
    assert (Q[-1] - q0 * torch.cos(torch.tensor(10.0))).abs().max() < 5e-3  # leapfrog on q'' = -q, t = 10


def test_readme_own_data_workflow_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # it writes pendulum.npz and a figure folder
    env = {}
    exec(compile(_python_blocks()[2], "README.md", "exec"), env)
    assert env["P_pred"].shape == (101, 4, 1) and env["metrics"]["rollout_mse"] < 0.5
    assert hinn.data.load_trajectories("pendulum.npz").train.P.shape[1:] == (101, 1)
    assert all(os.path.exists(f) for f in env["figures"]) and len(env["figures"]) >= 5
