"""Initial-state optimisation (fitted window starts, SRNN): exact gradients on every path, the training
loop optimises and checkpoints the starts, and on noisy data it lowers the error against the truth."""

import numpy as np
import pytest
import torch
from conftest import random_net, rel_err

import hinn
from hinn.backends import fused
from hinn.objectives import TrajectoryObjective
from hinn.train import TrainConfig, fit, train

SCHEMES = ["symplectic_euler", "leapfrog", "implicit_midpoint", "tao"]


def _windows(K, seed=0, noise=0.05):
    ds = hinn.data.generate("pendulum", sizes=(60, 1, 1), steps=12, noise=noise, seed=seed)
    return ds.train.windows(K)


@pytest.mark.skipif(fused.core is None, reason="needs the compiled core")
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("K", [1, 4])
def test_compiled_gradients_equal_autograd(scheme, K):
    net = random_net(1, 5, 2, True, "tanh", 3)
    obj = TrajectoryObjective(*_windows(K), 0.1, scheme, fit_starts=True)
    with torch.no_grad():  # starts away from the observations, so that the anchor term has a gradient
        obj.starts.p.add_(0.01 * torch.randn_like(obj.starts.p))
    idx = torch.tensor([5, 0, 17, 9])
    for sub in (idx, None):
        loss_c, grads = obj.loss_and_grad(net, sub)
        params = [net.theta, *obj.parameters()]
        ref = torch.autograd.grad(obj.loss(net, sub), params)
        assert rel_err(loss_c, obj.loss(net, sub).detach()) < 1e-12
        for prm, g in zip(params, ref):
            assert rel_err(grads[prm], g) < 1e-11, (scheme, K, prm.shape)
    assert set(grads) == {net.theta, obj.starts.p, obj.starts.q}


def test_starts_are_optimised_and_checkpointed(tmp_path):
    net = random_net(1, 4, 1, False, "tanh", 0)
    obj = TrajectoryObjective(*_windows(3), 0.1, "leapfrog", fit_starts=True)
    observed = obj.starts.p.detach().clone()
    fit(net, obj, epochs=3, batch_size=16, lr=1e-2, progress=False)
    assert not torch.equal(obj.starts.p, observed)  # the caller's objective holds the fitted starts
    assert not obj.p0.requires_grad and torch.equal(obj.p0, observed)  # the observations are kept
    # a run stopped after 2 epochs and resumed, in a fresh process (a new network and objective), to 4
    # equals an uninterrupted one, starts included (fitted from epoch 3: the resumed part crosses it)
    runs = {}
    for name, epochs in (("full", [4]), ("part", [2, 4])):
        ck = str(tmp_path / f"{name}.pt")
        for e in epochs:
            net = random_net(1, 4, 1, False, "tanh", 0)
            obj = TrajectoryObjective(*_windows(3), 0.1, "leapfrog", fit_starts=True)
            fit(net, obj, epochs=e, batch_size=16, lr=1e-2, progress=False, checkpoint=ck, resume=True,
                run_state={"config": {"epochs": e}}, objective_warmup=3)  # fmt: skip
        runs[name] = (net.theta.detach().clone(), obj.starts.p.detach().clone(), obj.starts.q.detach().clone())
    for a, b in zip(runs["full"], runs["part"]):
        assert torch.equal(a, b)
    st = torch.load(ck, weights_only=False)  # a checkpoint without the starts' optimizer state: a clear error
    st.pop("objective_optimizer")
    torch.save(st, ck)
    with pytest.raises(ValueError, match="no optimizer state for the objective"):
        fit(net, obj, epochs=5, batch_size=16, lr=1e-2, progress=False, checkpoint=ck, resume=True,
            run_state={"config": {"epochs": 5}})  # fmt: skip


def test_fitted_starts_need_a_single_process():
    obj = TrajectoryObjective(*_windows(2), 0.1, fit_starts=True)
    with pytest.raises(ValueError, match="not supported in data-parallel training"):
        obj.take(slice(0, None, 2))
    assert TrajectoryObjective(*_windows(2), 0.1).parameters() == []


def test_fitted_starts_move_toward_the_truth_on_noisy_data():
    # noise of std 0.1 on a spring's observations: the fitted starts of 10-step windows end several times
    # closer to the noise-free states than the observations they started from (10-13x over three seeds,
    # benchmarks/noisy_windows.py)
    noisy = hinn.data.generate("spring", sizes=(400, 1, 1), steps=20, noise=0.1, seed=0).train
    clean = hinn.data.generate("spring", sizes=(400, 1, 1), steps=20, noise=0.0, seed=0).train
    _, p_true, q_true, _, _ = clean.windows(10)
    torch.manual_seed(0)
    net = hinn.HamiltonianNet(1, time_dependent=False, dtype=torch.float64)
    obj = TrajectoryObjective(*noisy.windows(10), noisy.h, "leapfrog", fit_starts=True)
    fit(net, obj, epochs=300, batch_size=100, lr=3e-3, progress=False)
    err = lambda p, q: float(((p - p_true) ** 2).mean() + ((q - q_true) ** 2).mean())  # noqa: E731
    observed, fitted = err(obj.p0, obj.q0), err(obj.starts.p.detach(), obj.starts.q.detach())
    assert fitted < observed / 3, (observed, fitted)


def test_the_option_reaches_train_and_compare():
    from dataclasses import replace

    from hinn.cli import build_parser
    from hinn.comparison import PROTOCOLS, make_data, make_objective, protocol_system

    assert build_parser().parse_args(["compare", "spring", "--fit-initial-states"]).fit_starts
    args = build_parser().parse_args(["train", "spring", "--fit-initial-states", "--window", "3"])
    assert args.fit_starts and TrainConfig(fit_starts=args.fit_starts).fit_starts
    proto = replace(PROTOCOLS["spring"], n_traj=4, window=3, fit_starts=True)
    obj = make_objective("hinn", make_data(proto, protocol_system("spring")), proto)
    assert obj.starts is not None and len(obj.parameters()) == 2
    res = train(TrainConfig(sizes=(40, 10, 10), transitions=10, window=3, fit_starts=True, epochs=2, width=4,
                            depth=1), progress=False)  # fmt: skip
    assert np.isfinite(res.history[-1]["train_loss"])


@pytest.mark.parametrize("scheme", ["leapfrog", "implicit_midpoint"])
def test_test_starts_fitted_to_noisy_observations(scheme):
    # observations of the model's own trajectories with noise: starts fitted to 10 of them land closer to
    # the true starts than the first observation, and the model is left as it was
    from hinn.metrics import fit_initial_states

    net = random_net(1, 6, 2, False, "tanh", 5, scale=0.5)
    theta = net.theta.detach().clone()
    gen = torch.Generator().manual_seed(0)
    randn = lambda *shape: torch.randn(*shape, generator=gen, dtype=torch.float64)  # noqa: E731
    p_true, q_true = randn(50, 1), randn(50, 1)
    with torch.no_grad():
        P, Q = hinn.rollout(net, 0.0, p_true, q_true, 0.1, 9, scheme)
    noisy = lambda X: (X.transpose(0, 1) + 0.05 * randn(50, 10, 1)).numpy()  # noqa: E731
    obs = hinn.Trajectories(0.1 * np.arange(10), noisy(P), noisy(Q))
    p0, q0 = fit_initial_states(net, obs, scheme, n_obs=10)
    pt, qt = p_true.numpy(), q_true.numpy()
    dist = lambda p, q: float(((p - pt) ** 2).mean() + ((q - qt) ** 2).mean())  # noqa: E731
    assert dist(p0, q0) < dist(obs.P[:, 0], obs.Q[:, 0]) / 3
    assert torch.equal(net.theta.detach(), theta) and net.theta.requires_grad
    p1, q1 = fit_initial_states(net, obs, scheme, n_obs=1)  # one observation: the start is the observation
    assert np.array_equal(p1, obs.P[:, 0]) and np.array_equal(q1, obs.Q[:, 0])


def test_runs_with_fitted_starts_fit_the_test_starts():
    cfg = TrainConfig(sizes=(40, 10, 10), transitions=10, window=3, fit_starts=True, epochs=2, width=4, depth=1)
    from hinn.experiments import TEST_STARTS_FITTED_ON, evaluate_run

    m = evaluate_run(train(cfg, progress=False), cfg, None)
    assert m["test_starts_fitted_on"] == TEST_STARTS_FITTED_ON and np.isfinite(m["rollout_mse"])


def test_starts_stay_observed_during_the_warmup():
    # during the warm-up the model trains as without fitted starts (to rounding: without them an epoch runs
    # in the core, with them minibatch by minibatch), and the starts do not move
    runs = []
    for fit_starts in (False, True):
        net = random_net(1, 4, 1, False, "tanh", 0)
        obj = TrajectoryObjective(*_windows(3), 0.1, "leapfrog", fit_starts=fit_starts)
        fit(net, obj, epochs=3, batch_size=16, lr=1e-2, progress=False, objective_warmup=3)
        runs.append(net.theta.detach().clone())
    assert rel_err(runs[0], runs[1]) < 1e-13 and torch.equal(obj.starts.p, obj.p0)
    fit(net, obj, epochs=4, batch_size=16, lr=1e-2, progress=False, objective_warmup=3)  # a fresh run: 3 + 1
    assert not torch.equal(obj.starts.p, obj.p0)
    with pytest.raises(ValueError, match="objective_warmup"):
        fit(net, obj, epochs=1, progress=False, objective_warmup=-1)


def test_fitted_starts_lower_the_test_error_on_noisy_data():
    # a pendulum observed with noise of std 0.1: 100 trajectories of 10 steps, every window the whole
    # trajectory; fitting the starts (from half-way) lowers the rollout error on the clean test
    # trajectories (to 0.36x and 0.73x on these seeds, 0.21x-0.73x over seeds 0-3)
    system = hinn.systems.get_system("pendulum")
    ratios = []
    for seed in (0, 1):
        ds = hinn.data.generate("pendulum", sizes=(1000, 50, 50), steps=10, noise=0.1, seed=seed)
        errors = []
        for fit_starts in (False, True):
            torch.manual_seed(seed)
            net = hinn.HamiltonianNet(1, width=16, depth=2, time_dependent=False, dtype=torch.float64)
            obj = TrajectoryObjective(*ds.train.windows(9), ds.train.h, "leapfrog", fit_starts=fit_starts)
            fit(net, obj, epochs=600, batch_size=100, lr=3e-3, seed=seed, progress=False, objective_warmup=300)
            errors.append(hinn.metrics.evaluate(net, system, ds.test, "leapfrog")["rollout_mse"])
        ratios.append(errors[1] / errors[0])
    assert max(ratios) < 0.9 and np.prod(ratios) ** 0.5 < 0.75, ratios


@pytest.mark.parametrize("backend", ["fused", "autograd"])
def test_refine_lowers_the_loss_with_the_model_fixed(backend):
    net = random_net(1, 5, 2, False, "tanh", 1)
    net.backend = backend
    obj = TrajectoryObjective(*_windows(4, noise=0.1), 0.1, "leapfrog", fit_starts=True)
    theta = net.theta.detach().clone()
    before = obj.loss(net).item()
    obj.refine(net, 5)
    after = obj.loss(net).item()
    assert after < 0.9 * before, (before, after)  # L-BFGS with a Wolfe line search never goes up
    assert torch.equal(net.theta.detach(), theta) and net.theta.grad is None
    assert obj.starts.p.grad is None and not torch.equal(obj.starts.p.detach(), obj.p0)
    obj.refine(net, 0)  # nothing to do
    with pytest.raises(ValueError, match="fit_starts=True"):
        TrajectoryObjective(*_windows(2), 0.1).refine(net, 3)


def test_fit_refines_after_the_warmup():
    runs = {}
    for refine in (0, 3):
        net = random_net(1, 4, 1, False, "tanh", 0)
        obj = TrajectoryObjective(*_windows(3, noise=0.1), 0.1, "leapfrog", fit_starts=True)
        fit(net, obj, epochs=2, batch_size=16, lr=1e-2, progress=False, objective_warmup=2, objective_refine=refine)
        assert torch.equal(obj.starts.p, obj.p0)  # still warming up: not refined either
        fit(net, obj, epochs=1, batch_size=16, lr=1e-2, progress=False, objective_refine=refine)
        runs[refine] = obj.loss(net).item()
    assert runs[3] < runs[0]
    with pytest.raises(ValueError, match="objective_refine"):
        fit(net, TrajectoryObjective(*_windows(2), 0.1), epochs=1, progress=False, objective_refine=2)
    with pytest.raises(ValueError, match="starts_refine"):
        TrainConfig(starts_refine=-1)
    from hinn.cli import build_parser

    args = build_parser().parse_args(["train", "spring", "--fit-initial-states", "--refine-starts", "4"])
    assert args.starts_refine == 4
    res = train(TrainConfig(sizes=(40, 10, 10), transitions=10, window=3, fit_starts=True, starts_refine=2,
                            starts_warmup=1, epochs=2, width=4, depth=1), progress=False)  # fmt: skip
    assert np.isfinite(res.history[-1]["train_loss"]) and "starts_refine=2" in res.config.describe()
