"""Data-parallel training: two processes under torchrun (gloo, CPU) end where one process ends."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import rel_err

from hinn.cli import main
from hinn.train import load_checkpoint

ARGS = ["train", "spring", "--epochs", "3", "--sizes", "40", "10", "10", "--transitions", "10", "--width", "6",
        "--depth", "2", "--batch-size", "30", "--lr", "0.01", "--device", "cpu", "--no-progress"]  # fmt: skip


def _torchrun(out, nproc=2, extra=()):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "hinn", *ARGS, "--out", out, *extra]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("backend", ["fused", "autograd"])
def test_two_processes_equal_one(tmp_path, backend):
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    assert main(ARGS + ["--out", one, "--backend", backend]) == 0
    res = _torchrun(two, extra=["--backend", backend])
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = load_checkpoint(os.path.join(one, "checkpoint.pt")), load_checkpoint(os.path.join(two, "checkpoint.pt"))
    assert rel_err(b["model"]["theta"], a["model"]["theta"]) < 1e-12
    for ha, hb in zip(a["history"], b["history"], strict=True):
        assert hb["train_loss"] == pytest.approx(ha["train_loss"], rel=1e-12)
        assert hb["val_loss"] == pytest.approx(ha["val_loss"], rel=1e-12)
    # rank 0 alone evaluated, wrote and printed
    assert os.path.exists(os.path.join(two, "metrics.json")) and os.path.exists(os.path.join(two, "loss.png"))
    assert res.stdout.count("rollout_mse") == 1
    assert "data-parallel over 2 processes" in res.stdout
    m1, m2 = (json.load(open(os.path.join(d, "metrics.json"))) for d in (one, two))
    assert m2["rollout_mse"] == pytest.approx(m1["rollout_mse"], rel=1e-9)


def test_minibatch_smaller_than_the_process_count_is_an_error(tmp_path):
    res = _torchrun(str(tmp_path / "x"), nproc=2, extra=["--batch-size", "1"])
    assert res.returncode != 0 and "cannot be shared by 2 processes" in res.stderr


def test_single_process_share_is_the_whole_batch():
    from hinn import distributed

    idx = torch.arange(7)
    assert distributed.world() == (0, 1)
    assert distributed.share(idx, 10) == (idx, 1.0)
    t = [torch.ones(3)]
    assert distributed.all_reduce_sum(t) is t


def _kill_all(marker: str) -> None:
    """SIGKILL every process whose command line holds ``marker``: torchrun and its workers, which run in
    sessions of their own (as a job scheduler or a lost machine would end them)."""
    import signal

    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    os.kill(int(pid), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the worker processes through /proc")
def test_a_killed_run_resumes_under_torchrun(tmp_path):
    """Kill torchrun and its workers once a checkpoint is on disk, start again with --resume: the run ends
    where an uninterrupted one ends."""
    import time

    long = [a if a != "3" else "300" for a in ARGS]  # 300 epochs: a checkpoint every 100
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "hinn", *long,
           "--out", two]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt, killed_at = os.path.join(two, "checkpoint.pt"), None
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if os.path.exists(ckpt):
            _kill_all(two)
            proc.wait()
            killed_at = load_checkpoint(ckpt)["epoch"]
            break
        time.sleep(0.02)
    assert killed_at is not None and 0 < killed_at < 300, "the run ended before it could be killed"
    res = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert main(long + ["--out", one]) == 0
    a, b = load_checkpoint(os.path.join(one, "checkpoint.pt")), load_checkpoint(os.path.join(two, "checkpoint.pt"))
    assert b["epoch"] == 300 and len(b["history"]) == 300
    assert rel_err(b["model"]["theta"], a["model"]["theta"]) < 1e-12
