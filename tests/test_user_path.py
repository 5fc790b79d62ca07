"""A researcher's own data, end to end: file checks, time dependence, one-line CLI errors, resuming to
more epochs, evaluation beside the training metrics, predictions, figures, the Python workflow."""

import json
import os

import numpy as np
import pytest
import torch

import hinn
from hinn.cli import main
from hinn.data import load_trajectories, uniform_step
from hinn.plots import affine_label, pick_coords
from hinn.train import load_checkpoint, load_run

SMALL = ["--epochs", "2", "--width", "4", "--depth", "1", "--no-progress", "--device", "cpu"]


def _export(path, M=8, T=21, h=0.1, system="pendulum", dtype=np.float64):
    ds = hinn.data.generate(system, sizes=(M * (T - 1), 1, 1), steps=T - 1, h=h, seed=1)
    np.savez(path, t=ds.train.t.astype(dtype), p=ds.train.P.astype(dtype), q=ds.train.Q.astype(dtype))
    return ds.train


def _cli(capsys, *args):
    """(exit status, stdout, stderr) of the hinn command."""
    try:
        rc = main(list(args))
    except SystemExit as e:
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


# ----------------------------------------------------------------------------- files
def test_float32_times_are_uniform_at_their_precision(tmp_path):
    f = str(tmp_path / "f32.npz")
    tr = _export(f, T=101, dtype=np.float32)  # float32 0.1 steps up to t = 10: off by ~1e-6 relative
    ds = load_trajectories(f)
    assert ds.train.h == pytest.approx(0.1, rel=1e-6)
    assert np.array_equal(ds.train.t, ds.train.t[0] + ds.train.h * np.arange(101))  # held as a uniform grid
    got = np.concatenate([ds.train.P, ds.val.P, ds.test.P])
    assert got.shape == tr.P.shape and np.isin(got, tr.P.astype(np.float32)).all()
    # a real irregularity still fails in float32, and float64 keeps its tight tolerance
    t = (np.arange(101) * 0.1).astype(np.float32)
    t[50:] += np.float32(1e-3)
    with pytest.raises(ValueError, match=r"not uniform .*t\[50\] - t\[49\]"):
        uniform_step(t, np.float32)
    t64 = np.arange(101) * 0.1
    t64[50:] += 1e-5
    with pytest.raises(ValueError, match="not uniform"):
        uniform_step(t64, np.float64)
    assert uniform_step((np.arange(101) * 0.1).astype(np.float32), np.float32) == pytest.approx(0.1, rel=1e-6)


@pytest.mark.parametrize(
    "write, message",
    [
        (lambda f, z: np.save(f, z["p"]), r"a single \.npy array; expected an \.npz archive"),
        (lambda f, z: open(f, "w").write("t p q\n1 2 3\n"), r"not a NumPy \.npz archive"),
        (
            lambda f, z: np.savez(f, t=z["t"], p=z["p"][..., 0], q=z["q"][..., 0]),
            r"p has shape \(8, 21\), expected \(M, T, d\) .* add the last axis",
        ),  # fmt: skip
        (lambda f, z: np.savez(f, t=z["t"], p=z["p"], q=z["q"][:, :, :0]), r"same shape; got p \(8, 21, 1\)"),
        (lambda f, z: np.savez(f, t=z["t"], p=z["p"]), r"missing array\(s\) q \(it has t, p\)"),
    ],
)
def test_unreadable_files_are_named(tmp_path, write, message):
    src = str(tmp_path / "good.npz")
    _export(src)
    z = dict(np.load(src))
    bad = str(tmp_path / "bad.npz")
    write(bad, z)
    if not os.path.exists(bad):  # np.save appends .npy
        bad += ".npy"
    with pytest.raises(ValueError, match=message):
        load_trajectories(bad)


# ----------------------------------------------------------------------------- objectives
def test_objective_inputs_are_checked_at_construction():
    tr = hinn.data.generate("spring", sizes=(40, 1, 1), steps=10, seed=0).train
    t0, p0, q0, P, Q = tr.windows(3)
    hinn.TrajectoryObjective(t0, p0, q0, P, Q, 0.1)
    with pytest.raises(ValueError, match=r"P_target must have shape \(K, M, d\) = \(K, 32, 1\).*\(32, 3, 1\).*"
                                         r"transpose\(0, 1\)"):  # fmt: skip
        hinn.TrajectoryObjective(t0, p0, q0, P.transpose(0, 1), Q.transpose(0, 1), 0.1)
    with pytest.raises(ValueError, match=r"Q_target must have shape \(K, M, d\) = \(3, 32, 1\)"):
        hinn.TrajectoryObjective(t0, p0, q0, P, Q[:2], 0.1)
    with pytest.raises(ValueError, match=r"q0 has shape \(31, 1\) but p0 has \(32, 1\)"):
        hinn.TrajectoryObjective(t0, p0, q0[1:], P, Q, 0.1)
    with pytest.raises(TypeError, match="one dtype and one device"):
        hinn.TrajectoryObjective(t0, p0, q0.float(), P, Q, 0.1)
    with pytest.raises(ValueError, match="h must be a positive number"):
        hinn.TrajectoryObjective(t0, p0, q0, P, Q, -0.1)
    P_nan = P.clone()
    P_nan[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="P_target contains NaN"):
        hinn.TrajectoryObjective(t0, p0, q0, P_nan, Q, 0.1)
    with pytest.raises(ValueError, match="unknown scheme"):
        hinn.TrajectoryObjective(t0, p0, q0, P, Q, 0.1, scheme="verlet")
    with pytest.raises(ValueError, match=r"dq_dt has shape \(32, 2\) but p has \(32, 1\)"):
        hinn.DerivativeObjective(t0, p0, q0, p0, torch.zeros(32, 2, dtype=p0.dtype))


# ----------------------------------------------------------------------------- time dependence, metrics
def test_own_data_learns_an_autonomous_H_unless_asked(tmp_path, capsys):
    f = str(tmp_path / "mine.npz")
    _export(f)
    auto, timed = str(tmp_path / "auto"), str(tmp_path / "timed")
    rc, out, _ = _cli(capsys, "train", "--data", f, "--out", auto, *SMALL)
    assert rc == 0 and "time_dependent=False" in out and "--time-dependent for the other" in out
    assert "sizes" not in out and "transitions" not in out  # settings that do not apply are not printed
    assert not load_run(auto).net.time_dependent
    m = json.load(open(os.path.join(auto, "metrics.json")))
    assert m["learned_H_drift"] >= 0 and "learned_H_drift_note" not in m and m["vpt_threshold"] == 0.1
    rc, out, _ = _cli(capsys, "train", "--data", f, "--out", timed, "--time-dependent", *SMALL)
    assert rc == 0 and "time_dependent=True" in out
    assert load_run(timed).net.time_dependent
    m = json.load(open(os.path.join(timed, "metrics.json")))
    assert "learned_H_drift" not in m and "depends on t" in m["learned_H_drift_note"]
    for name in ("trajectories", "phase", "learned_energy", "H_landscape", "loss"):
        assert os.path.exists(os.path.join(auto, f"{name}.png")), name
    assert not os.path.exists(os.path.join(auto, "energy.png"))  # no true Hamiltonian for a user's data


def test_built_in_systems_keep_t_as_an_input(tmp_path):
    cfg = hinn.TrainConfig(system="spring")
    assert cfg.learns_time and not hinn.TrainConfig(system="spring", time_dependent=False).learns_time
    assert not hinn.TrainConfig(system="data", data="x.npz").learns_time


# ----------------------------------------------------------------------------- the command line
def test_cli_errors_are_one_line(tmp_path, capsys):
    f = str(tmp_path / "mine.npz")
    _export(f)
    np.save(str(tmp_path / "arr.npy"), np.zeros(3))
    cases = [
        (["train", "--data", str(tmp_path / "arr.npy"), *SMALL], 1, "a single .npy array"),
        (["train", "--data", str(tmp_path / "none.npz"), *SMALL], 1, "no such file"),
        (
            ["train", "--data", f, "--h", "0.2", "--sizes", "1", "2", "3", *SMALL],
            2,
            "--sizes, --h apply only to generated data",
        ),
        (["train", "--data", f, "--scheme", "leapfrog", "--omega", "3", *SMALL], 1, "omega (Tao's coupling)"),
        (["train", *SMALL], 2, "give a system name or --data FILE"),
        (["eval", str(tmp_path)], 1, "is not a run folder"),
        (["predict", str(tmp_path)], 1, "is not a run folder"),
    ]
    for args, code, message in cases:
        rc, _, err = _cli(capsys, *args)
        assert rc == code, args
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    with pytest.raises(ValueError, match="a single .npy array"):  # --debug: the exception itself
        main(["--debug", "train", "--data", str(tmp_path / "arr.npy"), *SMALL])


def test_reproduce_help_offers_only_its_options(capsys):
    with pytest.raises(SystemExit):
        main(["reproduce", "--help"])
    text = capsys.readouterr().out
    assert "--preset" not in text and "--config" not in text and "config file" not in text
    assert "--omega" in text and "--autonomous" in text


def test_tao_omega_from_the_command_line(tmp_path, capsys):
    out = str(tmp_path / "tao")
    args = ["train", "spring", "--sizes", "40", "10", "10", "--transitions", "10", "--scheme", "tao",
            "--omega", "7.5", "--out", out, *SMALL]  # fmt: skip
    rc, text, _ = _cli(capsys, *args)
    assert rc == 0 and "omega=7.5" in text
    cfg = load_run(out).config
    assert cfg.omega == 7.5 and cfg.integrator().omega == 7.5 and isinstance(cfg.integrator(), hinn.Tao)


def test_resume_extends_a_run_and_names_what_differs(tmp_path, capsys):
    f = str(tmp_path / "mine.npz")
    _export(f)
    part, whole = str(tmp_path / "part"), str(tmp_path / "whole")
    base = ["train", "--data", f, "--width", "4", "--depth", "1", "--no-progress", "--device", "cpu"]
    assert _cli(capsys, *base, "--epochs", "2", "--out", part)[0] == 0
    assert _cli(capsys, *base, "--epochs", "4", "--out", part, "--resume")[0] == 0
    assert _cli(capsys, *base, "--epochs", "4", "--out", whole)[0] == 0
    a, b = load_checkpoint(os.path.join(part, "checkpoint.pt")), load_checkpoint(os.path.join(whole, "checkpoint.pt"))
    assert a["epoch"] == 4 and torch.equal(a["model"]["theta"], b["model"]["theta"])
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    assert json.load(open(os.path.join(part, "config.json")))["epochs"] == 4
    config_before = open(os.path.join(part, "config.json")).read()
    rc, _, err = _cli(capsys, *base, "--epochs", "6", "--lr", "0.01", "--width", "5", "--out", part, "--resume")
    assert rc == 1 and "lr = 0.001 there, 0.01 here" in err and "width = 4 there, 5 here" in err
    assert open(os.path.join(part, "config.json")).read() == config_before  # nothing was overwritten


def test_eval_writes_beside_the_training_metrics(tmp_path, capsys):
    f = str(tmp_path / "mine.npz")
    _export(f)
    out = str(tmp_path / "run")
    assert _cli(capsys, "train", "--data", f, "--out", out, *SMALL)[0] == 0
    before = json.load(open(os.path.join(out, "metrics.json")))
    rc, text, _ = _cli(capsys, "eval", out, "--data", f, "--coords", "0")
    assert rc == 0 and "eval.json, figures" in text and "checkpoint" not in text
    assert json.load(open(os.path.join(out, "metrics.json"))) == before
    assert {"train_seconds", "fit_seconds", "epochs_run", "backend", "device"} <= set(before)
    assert 0 < before["fit_seconds"] < before["train_seconds"]
    assert json.load(open(os.path.join(out, "eval-mine", "eval.json")))["n_test_trajectories"] == 8
    rc, _, err = _cli(capsys, "eval", out, "--coords", "3")
    assert rc == 1 and "do not index p, q of dimension d = 1" in err


def test_predict_rolls_out_from_given_states(tmp_path, capsys):
    f = str(tmp_path / "mine.npz")
    tr = _export(f, system="two-body")  # d = 4: every coordinate plotted
    out = str(tmp_path / "run")
    assert _cli(capsys, "train", "--data", f, "--out", out, *SMALL)[0] == 0
    run = load_run(out)
    states = str(tmp_path / "init.npz")
    np.savez(states, p=tr.P[:3, 0], q=tr.Q[:3, 0], t=0.5)
    pred = str(tmp_path / "pred" / "p.npz")
    rc, text, _ = _cli(capsys, "predict", out, "--initial-states", states, "--steps", "30", "--out", pred)
    assert rc == 0 and pred in text
    z = np.load(pred)
    assert z["p"].shape == z["q"].shape == (3, 31, 4) and np.allclose(z["t"], 0.5 + run.data.train.h * np.arange(31))
    P, Q = hinn.rollout(run.net, 0.5, torch.as_tensor(tr.P[:3, 0]), torch.as_tensor(tr.Q[:3, 0]), run.data.train.h,
                        30, run.config.integrator())  # fmt: skip
    assert np.allclose(z["p"], P.detach().transpose(0, 1).numpy(), rtol=1e-12, atol=1e-14)
    assert np.allclose(z["q"], Q.detach().transpose(0, 1).numpy(), rtol=1e-12, atol=1e-14)
    assert os.path.exists(str(tmp_path / "pred" / "p.png")) and os.path.exists(str(tmp_path / "pred" / "p-energy.png"))
    # trajectories as initial states (their first states), and the predictions read back as data
    rc, _, _ = _cli(capsys, "predict", out, "--initial-states", f, "--steps", "20")
    z = np.load(os.path.join(out, "predictions.npz"))
    assert rc == 0 and z["p"].shape == (8, 21, 4) and np.array_equal(z["q"][:, 0], tr.Q[:, 0])
    assert load_trajectories(os.path.join(out, "predictions.npz")).train.P.shape[1:] == (21, 4)
    np.savez(states, p=tr.P[:3, 0, :2], q=tr.Q[:3, 0, :2])
    rc, _, err = _cli(capsys, "predict", out, "--initial-states", states)
    assert rc == 1 and "the model needs (n, 4) initial states" in err


# ----------------------------------------------------------------------------- figures, Python workflow
def test_figure_helpers():
    assert pick_coords(8) == [0, 1, 2, 3, 4, 5] and pick_coords(2) == [0, 1] and pick_coords(6, [5, 0]) == [5, 0]
    with pytest.raises(ValueError, match="valid: 0 to 1"):
        pick_coords(2, [2])
    assert affine_label(0.325, -2.45) == "0.325 H − 2.45" and affine_label(1.0, 0.5) == "1 H + 0.5"


def test_the_python_workflow_is_reachable_from_import_hinn():
    assert hinn.fit is hinn.train.fit and hinn.load_run is hinn.train.load_run
    assert hinn.TrajectoryObjective is hinn.objectives.TrajectoryObjective
    assert callable(hinn.metrics.evaluate) and callable(hinn.plots.make_figures)
    net = hinn.HamiltonianNet(1)
    assert (net.width, net.depth) == (hinn.TrainConfig().width, hinn.TrainConfig().depth)


def test_predict_from_fitted_starts(tmp_path, capsys):
    f = str(tmp_path / "mine.npz")
    _export(f)
    out = str(tmp_path / "run")
    assert _cli(capsys, "train", "--data", f, "--out", out, *SMALL)[0] == 0
    rc, _, _ = _cli(capsys, "predict", out, "--initial-states", f, "--fit-initial-states", "4", "--steps", "5")
    z = np.load(os.path.join(out, "predictions.npz"))
    observed = np.load(f)["p"][:, 0]
    assert rc == 0 and z["p"].shape == (8, 6, 1) and not np.array_equal(z["p"][:, 0], observed)
    np.savez(str(tmp_path / "x0.npz"), p=observed, q=observed)
    rc, _, err = _cli(capsys, "predict", out, "--initial-states", str(tmp_path / "x0.npz"), "--fit-initial-states", "4")
    assert rc == 1 and "needs observed trajectories" in err


def test_demo_trains(capsys):
    rc, out, _ = _cli(capsys, "demo", "--iterations", "120")
    lines = [line for line in out.splitlines() if line.startswith("iteration")]
    losses = [float(line.split()[-1]) for line in lines]
    assert rc == 0 and len(lines) == 10 and losses[-1] < 0.1 * losses[0], out
