"""A training epoch inside the core (minibatches gathered, loss, gradient and optimizer update without
returning to Python) against the loop of one compiled step and one ``hinn.optim`` update per minibatch:
the same parameters, optimizer state and losses, for both training losses, both optimizers, both
precisions, separable networks, short last minibatches and implicit schemes; and its argument checks."""

import copy

import pytest
import torch
from conftest import random_net, random_state, rel_err, requires_fused

import hinn
from hinn.implicit import SolverError
from hinn.objectives import DerivativeObjective, TrajectoryObjective
from hinn.optim import Adam
from hinn.train import fit

pytestmark = requires_fused

H = 0.1


def _windows(d, M, K, seed, dtype=torch.float64):
    t0, p0, q0 = random_state(M, d, seed, dtype=dtype)
    g = torch.Generator().manual_seed(seed + 1)
    P, Q = (p0 + 0.1 * torch.randn(K, M, d, generator=g, dtype=torch.float64).to(dtype) for _ in range(2))
    return t0, p0, q0, P, Q


def _stepwise(objective):
    """The same objective without a compiled epoch: fit then steps minibatch by minibatch."""
    obj = copy.copy(objective)
    obj.compiled_epoch = lambda *args: None
    return obj


def _fit_both(net, objective, **kw):
    """(in-core, stepwise): each fit's final θ, history of training losses and optimizer moments."""
    assert objective.compiled_epoch(net, Adam([net.theta], lr=1e-2)) is not None  # the core runs the first
    out = []
    for obj in (objective, _stepwise(objective)):
        m = copy.deepcopy(net)
        res = fit(m, obj, progress=False, **kw)
        out.append((m.theta.detach().clone(), [h["train_loss"] for h in res.history]))
    return out


def _assert_same(a, b, tol):
    assert rel_err(a[0], b[0]) < tol
    assert len(a[1]) == len(b[1]) and all(abs(x - y) <= tol * abs(y) for x, y in zip(a[1], b[1]))


@pytest.mark.parametrize("optimizer,wd", [("adam", 0.0), ("adam", 1e-2), ("gd", 1e-2)])
@pytest.mark.parametrize("scheme", ["symplectic_euler", "leapfrog", "tao"])
def test_window_epoch_is_the_loop_of_steps(optimizer, wd, scheme):
    net = random_net(2, 9, 2, True, "tanh", 0)
    obj = TrajectoryObjective(*_windows(2, 70, 3, 1), H, scheme)
    # 70 samples in minibatches of 32: a short last one; 3 epochs: Adam's count carries across epochs
    a, b = _fit_both(net, obj, optimizer=optimizer, weight_decay=wd, lr=1e-2, epochs=3, batch_size=32)
    _assert_same(a, b, 1e-12)
    assert rel_err(a[0], net.theta.detach()) > 1e-3  # it trained


@pytest.mark.parametrize("cfg", [(1, 3, 4, True, "tanh"), (2, 20, 0, False, "tanh"), (1, 12, 1, True, "softplus")])
def test_derivative_epoch_is_the_loop_of_steps(cfg):
    d, w, L, time_dep, act = cfg
    net = random_net(d, w, L, time_dep, act, 0)
    t, p, q = random_state(90, d, 3)
    dp, dq = -q + 0.01 * p, p.clone()
    obj = DerivativeObjective(t, p, q, dp, dq)
    a, b = _fit_both(net, obj, lr=1e-2, epochs=2, batch_size=25, batches_per_epoch=5)  # fresh draws
    _assert_same(a, b, 1e-12)


@pytest.mark.parametrize("optimizer", ["adam", "gd"])
def test_fitted_starts_train_in_the_core_as_in_the_loop(optimizer):
    # SRNN's fitted window starts: fixed for the warm-up epoch, then trained by their own optimizer
    net = random_net(1, 6, 2, True, "tanh", 0)
    obs = _windows(1, 45, 3, 9)
    finals = []
    for stepwise in (False, True):
        obj = TrajectoryObjective(*obs, H, "leapfrog", fit_starts=True)
        obj = _stepwise(obj) if stepwise else obj
        m = copy.deepcopy(net)
        res = fit(m, obj, optimizer=optimizer, lr=1e-2, epochs=3, batch_size=20, objective_warmup=1, progress=False)
        finals.append((m.theta.detach().clone(), obj.starts.p.detach().clone(), obj.starts.q.detach().clone(),
                       [h["train_loss"] for h in res.history]))  # fmt: skip
    (ta, pa, qa, la), (tb, pb, qb, lb) = finals
    assert rel_err(ta, tb) < 1e-12 and rel_err(pa, pb) < 1e-12 and rel_err(qa, qb) < 1e-12
    assert all(abs(x - y) <= 1e-12 * abs(y) for x, y in zip(la, lb, strict=True))
    assert rel_err(pa, obs[1]) > 1e-4  # the starts moved off the observations


def test_separable_networks_keep_their_zeros_in_the_core():
    net = hinn.HamiltonianNet(1, width=6, depth=2, separable=True).double()
    obj = TrajectoryObjective(*_windows(1, 40, 2, 4), H, "leapfrog")
    a, b = _fit_both(net, obj, lr=1e-2, epochs=2, batch_size=16)
    _assert_same(a, b, 1e-12)
    assert torch.equal(a[0] == 0, net.theta.detach() == 0)  # the held zeros are still zero


def test_float32_epoch_close_to_the_loop_of_steps():
    net = random_net(2, 16, 2, True, "tanh", 0, dtype=torch.float32)
    obj = TrajectoryObjective(*_windows(2, 64, 2, 5, dtype=torch.float32), H, "leapfrog")
    a, b = _fit_both(net, obj, lr=1e-3, epochs=2, batch_size=20)
    _assert_same(a, b, 2e-5)


def test_the_epoch_counts_adam_steps_and_resumes_like_the_loop():
    net = random_net(1, 5, 2, True, "tanh", 0)
    obj = TrajectoryObjective(*_windows(1, 50, 1, 6), H)
    opts = []
    for o in (obj, _stepwise(obj)):
        m = copy.deepcopy(net)
        opt = Adam([m.theta], lr=1e-2)
        run = o.compiled_epoch(m, opt)
        idx = torch.randperm(50, generator=torch.Generator().manual_seed(0))
        if run is not None:
            run(idx, torch.tensor([0, 20, 40, 50]))
        else:
            for part in idx.split(20):
                loss, grads = o.loss_and_grad(m, part)
                m.theta.grad = grads[m.theta]
                opt.step()
        opts.append((m.theta.detach(), opt))
    (ta, a), (tb, b) = opts
    assert a.count == b.count == 3
    assert rel_err(ta, tb) < 1e-13 and rel_err(a.m[0], b.m[0]) < 1e-13 and rel_err(a.v[0], b.v[0]) < 1e-13


def test_an_epoch_whose_solve_fails_raises():
    Scheme = hinn.integrators.get_scheme("implicit_midpoint").__class__
    net = random_net(1, 8, 2, True, "tanh", 1)
    t0, p0, q0, P, Q = _windows(1, 30, 2, 7)
    obj = TrajectoryObjective(t0, 10 * p0, q0, P, Q, 20.0, Scheme(max_iter=2))
    with pytest.raises(SolverError, match="did not converge"):
        fit(net, obj, epochs=1, batch_size=10, progress=False)


def _epoch_call(**change):
    net = random_net(1, 3, 1, True, "tanh", 0)
    obj = TrajectoryObjective(*_windows(1, 10, 1, 8), H)
    opt = Adam([net.theta], lr=1e-2)
    run = obj.compiled_epoch(net, opt)
    args = dict(index=torch.arange(10), bounds=torch.tensor([0, 4, 10]))
    args.update(change)
    return run(args["index"], args["bounds"])


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(index=torch.tensor([0, 1, 2, 3, 10, 5, 6, 7, 8, 9])), "outside the data's 10 samples"),
        (dict(index=torch.tensor([0, 1, 2, 3, -1, 5, 6, 7, 8, 9])), "outside the data's 10 samples"),
        (dict(bounds=torch.tensor([0, 4, 4, 10])), "at least one sample"),
        (dict(bounds=torch.tensor([0, 4, 9])), "from 0 to the number of indices"),
    ],
)
def test_bad_minibatches_are_refused(change, match):
    with pytest.raises(ValueError, match=match):
        _epoch_call(**change)


def test_bad_index_types_are_refused():
    with pytest.raises(TypeError, match="1-D int64 CPU tensor"):
        _epoch_call(index=torch.arange(10, dtype=torch.int32))


@pytest.mark.parametrize("kw", [dict(batch_size=0), dict(batches_per_epoch=0), dict(batch_size=2.5)])
def test_fit_refuses_empty_or_fractional_minibatches(kw):
    net = random_net(1, 3, 1, True, "tanh", 0)
    with pytest.raises(ValueError, match="must be an integer >= 1"):
        fit(net, TrajectoryObjective(*_windows(1, 10, 1, 8), H), progress=False, **kw)


def test_no_epoch_in_core_where_it_cannot_run():
    net = random_net(1, 3, 1, True, "tanh", 0)
    obj = TrajectoryObjective(*_windows(1, 10, 1, 8), H)
    two = Adam([net.theta, torch.zeros(2, dtype=torch.float64, requires_grad=True)], lr=1e-2)
    assert obj.compiled_epoch(net, two) is None  # an optimizer of more than θ
    assert obj.compiled_epoch(net, Adam([net.theta], lr=1e-2, capturable=True)) is None  # count on the device
    fitted = TrajectoryObjective(*_windows(1, 10, 1, 8), H, fit_starts=True)
    assert fitted.compiled_epoch(net, Adam([net.theta], lr=1e-2)) is None  # the starts step in Python
    net.backend = "autograd"
    assert obj.compiled_epoch(net, Adam([net.theta], lr=1e-2)) is None


def test_a_reused_epoch_call_follows_its_optimizers_settings():
    # the second epoch runs at another learning rate and weight decay: the prepared call must see them
    net = random_net(1, 5, 2, True, "tanh", 0)
    obj = TrajectoryObjective(*_windows(1, 30, 2, 6), H)
    idx, bounds = torch.randperm(30, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 16, 30])
    finals = []
    for o in (obj, _stepwise(obj)):
        m = copy.deepcopy(net)
        opt = Adam([m.theta], lr=1e-2)
        run = o.compiled_epoch(m, opt)
        for lr, wd in ((1e-2, 0.0), (3e-2, 1e-2)):
            opt.lr, opt.weight_decay = lr, wd
            if run is not None:
                run(idx, bounds)
                continue
            for part in idx.split(16):
                m.theta.grad = o.loss_and_grad(m, part)[1][m.theta]
                opt.step()
        finals.append(m.theta.detach().clone())
    assert rel_err(finals[0], finals[1]) < 1e-13
    assert rel_err(finals[0], net.theta.detach()) > 1e-3


def test_the_validation_evaluator_is_the_loss_at_the_current_weights():
    # every other window of a larger set: strided views, which the prepared call copies once and keeps
    net = random_net(2, 7, 2, True, "tanh", 0)
    obj = TrajectoryObjective(*_windows(2, 40, 3, 2), H, "leapfrog").take(slice(0, None, 2))
    assert not obj.P.is_contiguous()
    evaluate = obj.evaluator(net)
    # NaN-filled allocations after the call is prepared land in memory it freed, if it kept pointers
    # to copies it no longer holds: then the evaluation reads NaN
    junk = [torch.full_like(x, float("nan")) for x in (obj.t0, obj.p0, obj.q0, obj.P, obj.Q) for _ in range(4)]
    for _ in range(2):
        ref = copy.deepcopy(net)
        ref.backend = "autograd"
        with torch.no_grad():
            want = obj.loss(ref)
        assert abs(float(evaluate()) - float(want)) <= 1e-13 * abs(float(want))
        with torch.no_grad():
            net.theta.add_(0.05 * torch.randn_like(net.theta))  # trained in place between evaluations
    del junk
