import json
import os
import re

import numpy as np
import pytest
import torch

from hinn.cli import main
from hinn.data import Dataset, generate
from hinn.metrics import valid_prediction_time
from hinn.network import HamiltonianNet
from hinn.objectives import TrajectoryObjective
from hinn.train import TrainConfig, TrainingDiverged, fit, load_checkpoint, load_run, train

TINY = dict(
    system="spring",
    sizes=(60, 20, 20),
    transitions=10,
    width=3,
    depth=3,
    epochs=6,
    optimizer="adam",
    lr=1e-2,
    batch_size=16,
    checkpoint_every=2,
)


def test_splits_shapes_and_disjointness(tmp_path):
    ds = generate("two-body", sizes=(45, 20, 31), steps=10, seed=3)
    assert (ds.train.n, ds.val.n, ds.test.n) == (5, 2, 4)  # rounded up to whole trajectories
    assert ds.train.P.shape == (5, 11, 4) and ds.train.n_samples == 50
    rows = [set(map(tuple, getattr(ds, s).Q[:, 0])) for s in ("train", "val", "test")]
    assert not (rows[0] & rows[1]) and not (rows[0] & rows[2]) and not (rows[1] & rows[2])
    # the data set round-trips through .npz
    ds.save(tmp_path / "d.npz")
    back = Dataset.load(tmp_path / "d.npz")
    assert np.array_equal(back.test.P, ds.test.P) and back.meta == ds.meta
    assert np.array_equal(generate("two-body", sizes=(45, 20, 31), steps=10, seed=3).train.Q, ds.train.Q)


def test_windows_index_the_next_observations():
    ds = generate("spring", sizes=(20, 10, 10), steps=10, seed=0)
    t0, p0, q0, PT, QT = ds.train.windows(3)
    assert p0.shape == (2 * 8, 1) and PT.shape == (3, 16, 1)
    # window j of trajectory i starts at state j and targets states j+1..j+3
    i, j = 1, 4
    m = i * 8 + j
    assert float(t0[m]) == pytest.approx(ds.train.t[j])
    assert torch.equal(QT[:, m, 0], torch.as_tensor(ds.train.Q[i, j + 1 : j + 4, 0]))


def test_noise_is_added_to_training_data_only():
    clean = generate("spring", sizes=(20, 10, 10), steps=10, seed=0)
    noisy = generate("spring", sizes=(20, 10, 10), steps=10, seed=0, noise=0.1)
    assert 0.05 < np.std(noisy.train.Q - clean.train.Q) < 0.2
    # the test split is the noise-free truth: the exact spring solution conserves its energy
    E = noisy.test.P**2 / 2 + noisy.test.Q**2 / 2
    assert np.abs(E - E[:, :1]).max() < 1e-12
    E = noisy.train.P**2 / 2 + noisy.train.Q**2 / 2
    assert np.abs(E - E[:, :1]).max() > 1e-3


def test_few_epochs_lower_the_loss():
    res = train(TrainConfig(**TINY), progress=False)
    losses = [h["train_loss"] for h in res.history]
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.parametrize("window", [1, 3])
def test_resume_equals_uninterrupted(tmp_path, window):
    cfg = TrainConfig(**{**TINY, "window": window})
    full = train(cfg, str(tmp_path / "full"), progress=False)
    # stop after 4 epochs (a run configured for 4, same settings otherwise) ...
    part_cfg = TrainConfig(**{**TINY, "window": window, "epochs": 4})
    train(part_cfg, str(tmp_path / "part"), progress=False)
    # ... then continue the same checkpoint to 6 epochs
    ck = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=False)
    ck["config"]["epochs"] = 6
    torch.save(ck, tmp_path / "part" / "checkpoint.pt")
    resumed = train(cfg, str(tmp_path / "part"), resume=True, progress=False)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]
    assert torch.equal(resumed.net.theta, full.net.theta)


@pytest.mark.parametrize("in_core", [False, True], ids=["steps", "epoch-in-core"])
def test_divergence_stops_with_a_clear_message(tmp_path, monkeypatch, in_core):
    import hinn.objectives as tr

    real, real_compiled, real_epoch = (
        tr.trajectory_loss,
        tr.TrajectoryObjective.loss_and_grad,
        tr.TrajectoryObjective.compiled_epoch,
    )
    calls, per_epoch = [], 1 if in_core else 5  # training-loss calls per epoch: the batches', or the epoch's

    def poison(loss):  # the loss turns NaN in epoch 3, after the epoch-2 checkpoint
        calls.append(1)
        return loss * float("nan") if len(calls) > 2 * per_epoch else loss

    def compiled(self, model, idx=None):
        loss, grads = real_compiled(self, model, idx)
        return poison(loss), grads

    def epoch(self, model, opt, starts_opt=None):
        run = real_epoch(self, model, opt, starts_opt)
        return None if not in_core or run is None else (lambda *args: poison(run(*args)))

    monkeypatch.setattr(tr, "trajectory_loss", lambda *args: poison(real(*args)))
    monkeypatch.setattr(tr.TrajectoryObjective, "loss_and_grad", compiled)
    monkeypatch.setattr(tr.TrajectoryObjective, "compiled_epoch", epoch)
    with pytest.raises(TrainingDiverged, match="training loss became nan at epoch 3.*last good checkpoint"):
        train(TrainConfig(**TINY), str(tmp_path), progress=False)
    st = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert st["epoch"] == 2 and torch.isfinite(st["model"]["theta"]).all()
    load_run(str(tmp_path))  # the checkpoint left behind is loadable


def test_valid_prediction_time():
    t = np.arange(5) * 0.5
    X = np.ones((2, 5, 2))
    Xp = X.copy()
    Xp[0, 3:] *= 1.5  # error 50% from index 3
    assert valid_prediction_time(t, Xp, X, 0.1).tolist() == [1.5, 2.0]


def test_cli_end_to_end(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert (
        main(
            [
                "train",
                "spring",
                "--epochs",
                "3",
                "--sizes",
                "40",
                "10",
                "10",
                "--transitions",
                "10",
                "--depth",
                "2",
                "--optimizer",
                "adam",
                "--lr",
                "0.01",
                "--out",
                out,
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    for f in (
        "metrics.json",
        "checkpoint.pt",
        "config.json",
        "trajectories.png",
        "energy.png",
        "phase.png",
        "learned_vs_true_H.png",
        "loss.png",
    ):
        assert os.path.exists(os.path.join(out, f)), f
    m1 = json.load(open(os.path.join(out, "metrics.json")))
    assert main(["eval", out, "--device", "cpu"]) == 0
    m2 = json.load(open(os.path.join(out, "eval.json")))
    assert m1["device"] == "cpu" and m2["device"] == "cpu"
    assert m2["rollout_mse"] == pytest.approx(m1["rollout_mse"], rel=1e-12)
    assert main(["eval", out, "--backend", "hessquik"]) == 0  # the oracle evaluates the same run
    m3 = json.load(open(os.path.join(out, "eval.json")))
    assert m3["rollout_mse"] == pytest.approx(m1["rollout_mse"], rel=1e-9) and m3["backend"] == "hessquik"
    assert json.load(open(os.path.join(out, "metrics.json"))) == m1  # the training's metrics are kept
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"epochs": 2, "sizes": [40, 10, 10], "transitions": 10, "depth": 1}))
    out2 = str(tmp_path / "run2")
    assert (
        main(
            [
                "reproduce",
                "two-body",
                "--epochs",
                "2",
                "--sizes",
                "40",
                "10",
                "10",
                "--transitions",
                "10",
                "--depth",
                "1",
                "--out",
                out2,
                "--no-progress",
                "--backend",
                "autograd",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert os.path.exists(os.path.join(out2, "orbits.png"))
    assert main(["train", "pendulum", "--config", str(cfg), "--out", str(tmp_path / "r3"), "--no-progress"]) == 0
    assert "rollout_mse" in capsys.readouterr().out


@pytest.mark.parametrize(
    "device, match",
    [("tpu", "unknown device|not 'tpu'"), ("cuda:64", "no CUDA GPU|does not exist"), ("cpu:x", "unknown device")],
)
def test_cli_rejects_unusable_devices(device, match, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "spring", "--epochs", "1", "--device", device])
    assert e.value.code == 2
    assert re.search(match, capsys.readouterr().err)


def test_training_resumes_on_another_device_object(tmp_path):
    """A run's checkpoint holds no device: training resumes and evaluation loads wherever asked."""
    cfg = TrainConfig(**{**TINY, "epochs": 2})
    first = train(cfg, str(tmp_path), progress=False, device="cpu")
    again = train(cfg, str(tmp_path), resume=True, progress=False, device=torch.device("cpu"))
    assert len(again.history) == 2 and again.net.theta.device.type == "cpu"
    assert torch.equal(again.net.theta, first.net.theta)
    assert "device" not in json.load(open(tmp_path / "config.json"))


def test_backends_give_the_same_run():
    from hinn.backends import fused_available

    names = ["autograd", "hessquik"] + (["fused"] if fused_available() else [])
    thetas = [train(TrainConfig(**{**TINY, "epochs": 2, "backend": b}), progress=False).net.theta for b in names]
    for th in thetas[1:]:
        assert (th - thetas[0]).abs().max() < 1e-10


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    # long enough that a kill 50 ms after the second checkpoint lands mid-training (40 epochs of this tiny
    # run could all finish inside that window)
    cfg = dict(TINY, epochs=400, checkpoint_every=1)
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps({k: v for k, v in cfg.items() if k != "system"}))
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "hinn",
        "train",
        "spring",
        "--config",
        str(cfg_file),
        "--out",
        str(out),
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # kill it, without warning, once a few checkpoints are on disk (mid-write is fine: writes are atomic)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if (out / "checkpoint.prev.pt").exists() and (out / "checkpoint.pt").exists():
                time.sleep(0.05)
                break
            time.sleep(0.01)
        killed_early = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert killed_early, "the run finished before it could be killed; make it longer"
    done = load_checkpoint(str(out / "checkpoint.pt"))["epoch"]
    assert 1 <= done < cfg["epochs"]
    assert subprocess.run(cmd + ["--resume"], capture_output=True).returncode == 0
    resumed = load_run(str(out))
    full = train(TrainConfig(**cfg), progress=False)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]
    assert torch.equal(resumed.net.theta, full.net.theta)


def test_cuda_graph_needs_a_cuda_device():
    obj_args = ["train", "spring", "--epochs", "1", "--device", "cpu", "--cuda-graph", "--no-progress"]
    with pytest.raises(SystemExit) as e:
        main(obj_args)
    assert e.value.code == 2
    net = HamiltonianNet(dim=1, width=4, depth=1, dtype=torch.float64)
    t, p, q = (
        torch.zeros(8, dtype=torch.float64),
        torch.randn(8, 1, dtype=torch.float64),
        torch.randn(8, 1, dtype=torch.float64),
    )
    obj = TrajectoryObjective(t, p, q, p[None], q[None], 0.1)
    with pytest.raises(ValueError, match="cuda_graph needs the model on a CUDA device"):
        fit(net, obj, cuda_graph=True, progress=False)
