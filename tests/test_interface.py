"""The public seams: any model with `dim` and `grad` integrates; schemes are objects and a user's subclass
runs its own step; the compiled path is chosen by capability; the ops and the core guard their own doors;
structure travels with the weights; checkpoints and user data fail clearly."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import random_net, random_state, rel_err, requires_fused

import hinn
from hinn.integrators import Euler, Leapfrog
from hinn.protocols import CompiledRollout, HamiltonianModel


class Oscillator:
    """A user's analytic Hamiltonian H = (p² + q²)/2, ten lines, no hinn base class."""

    dim = 1

    def grad(self, t, p, q):
        return p, q


def test_user_model_follows_the_contract():
    assert isinstance(Oscillator(), HamiltonianModel) and not isinstance(Oscillator(), CompiledRollout)
    assert isinstance(hinn.HamiltonianNet(1), CompiledRollout)
    p0, q0 = torch.tensor([[0.0]], dtype=torch.float64), torch.tensor([[1.0]], dtype=torch.float64)
    # symplectic Euler by hand: p' = p − h q, q' = q + h p'
    p1, q1 = hinn.step(Oscillator(), 0.0, p0, q0, 0.1, "symplectic_euler")
    assert p1.item() == -0.1 and q1.item() == 1.0 + 0.1 * -0.1
    # rk4 against the exact solution q = cos t, p = −sin t
    P, Q = hinn.rollout(Oscillator(), 0.0, p0, q0, 0.01, 100, "rk4")
    assert abs(Q[-1].item() - math.cos(1.0)) < 1e-9 and abs(P[-1].item() + math.sin(1.0)) < 1e-9
    with pytest.raises(ValueError, match="built for dim = 1"):
        hinn.step(Oscillator(), 0.0, torch.zeros(2, 2), torch.zeros(2, 2), 0.1)
    with pytest.raises(TypeError, match="not a Hamiltonian model"):
        hinn.step(object(), 0.0, p0, q0, 0.1)


class EulerInDisguise(Leapfrog):
    """A user's subclass of a built-in scheme with its own step: must never run the compiled leapfrog."""

    def step(self, grad, t, p, q, h):
        return Euler().step(grad, t, p, q, h)


@requires_fused
@pytest.mark.parametrize("scheme", list(hinn.SCHEMES))
def test_compiled_path_equals_python_path(scheme):
    net = random_net(2, 4, 2, True, "tanh", 0)
    t, p, q = random_state(7, 2, 1)
    P, Q = hinn.rollout(net, t, p, q, 0.1, 3, scheme)  # fused: one compiled call
    net.backend = "autograd"
    P2, Q2 = hinn.rollout(net, t, p, q, 0.1, 3, scheme)  # the scheme's own Python step
    assert rel_err(P, P2) < 1e-13 and rel_err(Q, Q2) < 1e-13


@requires_fused
def test_user_subclass_runs_its_own_step():
    net = random_net(1, 3, 2, True, "tanh", 0)
    t, p, q = random_state(5, 1, 2)
    mine = hinn.step(net, t, p, q, 0.1, EulerInDisguise())
    euler = hinn.step(net, t, p, q, 0.1, "euler")
    leap = hinn.step(net, t, p, q, 0.1, "leapfrog")
    assert rel_err(mine[0], euler[0]) < 1e-14 and rel_err(mine[0], leap[0]) > 1e-6
    hinn.integrators.register_scheme(EulerInDisguise)  # registered under "leapfrog": no longer compiled
    try:
        assert rel_err(hinn.step(net, t, p, q, 0.1, "leapfrog")[0], euler[0]) < 1e-14
    finally:
        hinn.integrators.register_scheme(Leapfrog, compiled=True)
    assert rel_err(hinn.step(net, t, p, q, 0.1, "leapfrog")[0], leap[0]) == 0


# ----------------------------------------------------------------------------- the ops guard their own doors
@requires_fused
def test_op_probes_raise_clear_errors():
    from hinn.backends import fused

    net = random_net(2, 4, 2, True, "tanh", 0)
    t, p, q = random_state(20, 2, 1)
    th, spec, hr = net.theta.detach(), fused.spec_of(net), net.resnet_step
    ops = torch.ops.hinn
    with pytest.raises(ValueError, match="q must have shape"):
        ops.step(th, t, p, q[:10], spec, hr, 0.1, 1, [])  # wrote past its output buffer before
    with pytest.raises(ValueError, match="theta must have shape"):
        ops.grad(th[:3], t, p, q, spec, hr)
    with pytest.raises(ValueError, match=r"t must have shape \(20,\)"):
        ops.grad(th, t[:1], p, q, spec, hr)
    with pytest.raises(TypeError, match="t has dtype torch.float32"):
        ops.grad(th, t.float(), p, q, spec, hr)
    with pytest.raises(ValueError, match="theta must have shape"):
        ops.grad(th, t, p, q, [2, 1, 64, 2, 0], hr)  # a width θ does not hold
    with pytest.raises(ValueError, match="q must have shape"):
        ops.rollout(th, t, p, q[:, :1].contiguous(), spec, hr, 0.1, 1, [], 3)
    with pytest.raises(ValueError, match="unknown scheme code"):
        ops.step(th, t, p, q, spec, hr, 0.1, 99, [])
    with pytest.raises(ValueError, match="coupling omega > 0"):
        ops.step(th, t, p, q, spec, hr, 0.1, fused.core.SCHEMES["tao"], [0.0])
    P, Q = ops.rollout(th, t, p, q, spec, hr, 0.1, 1, [], 3)
    with pytest.raises(ValueError, match="P has 4 states"):
        ops.rollout_backward(th, t, P, Q, P, Q, spec, hr, 0.1, 1, [], 2)
    with pytest.raises(ValueError, match="the cotangent of P"):
        ops.rollout_backward(th, t, P, Q, P[:, :5], Q, spec, hr, 0.1, 1, [], 3)
    with pytest.raises(AttributeError):
        net.width = 64  # structure is read-only


@requires_fused
def test_core_validates_every_buffer():
    from hinn.backends.fused import core

    desc = core.NetDesc(d=1, time=1, width=2, depth=1, act=0, hr=0.5)
    buf = lambda x: (x.data_ptr(), x.numel())  # noqa: E731
    t, p = torch.zeros(4, dtype=torch.float64), torch.zeros(4, 1, dtype=torch.float64)
    th = torch.zeros(desc.n_params, dtype=torch.float64)
    good = dict(theta=buf(th), t=buf(t), p=buf(p), q=buf(p), H=buf(t), dH_dp=buf(p), dH_dq=buf(p))
    core.call(core.OPS["grad"], desc, N=4, dtype=1, **good)
    with pytest.raises(ValueError, match="grad: dH_dp has 3 elements; this call needs 4"):
        core.call(core.OPS["grad"], desc, N=4, dtype=1, **{**good, "dH_dp": (p.data_ptr(), 3)})
    # a buffer the operation does not take is refused, not ignored
    with pytest.raises(ValueError, match="grad takes no buffer 'P'"):
        core.call(core.OPS["grad"], desc, N=4, dtype=1, **good, P=buf(p))
    with pytest.raises(ValueError, match="max_iter must be an integer"):
        core.call(core.OPS["rollout"], desc, N=4, dtype=1, max_iter=2.5, **good)
    with pytest.raises(ValueError, match="null pointer"):
        core.call(core.OPS["grad"], desc, N=4, dtype=1, **{**good, "q": (0, 4)})
    with pytest.raises(ValueError, match="N must be >= 0"):
        core.call(core.OPS["grad"], desc, N=-1, dtype=1, **good)
    with pytest.raises(ValueError, match="unknown argument 'thetta'"):
        core.call(core.OPS["grad"], desc, N=4, dtype=1, thetta=buf(th))
    with pytest.raises(ValueError, match="NetDesc"):
        core.NetDesc(d=0, time=1, width=2, depth=1, act=0, hr=0.5)


@requires_fused
def test_prepared_call_equals_call_and_is_checked():
    # a Plan reads its arguments once and takes only the buffers' pointers per run, in the order named
    from hinn.backends.fused import core

    desc = core.NetDesc(d=1, time=1, width=3, depth=2, act=0, hr=0.5)
    g = torch.Generator().manual_seed(0)
    t, p, q = (torch.randn(5, *s, dtype=torch.float64, generator=g) for s in ((), (1,), (1,)))
    th = torch.randn(desc.n_params, dtype=torch.float64, generator=g)
    outs = lambda: [torch.full_like(x, float("nan")) for x in (t, p, q)]  # noqa: E731
    buf = lambda x: (x.data_ptr(), x.numel())  # noqa: E731
    H, gp, gq = outs()
    core.call(core.OPS["grad"], desc, N=5, dtype=1, theta=buf(th), t=buf(t), p=buf(p), q=buf(q), H=buf(H),
              dH_dp=buf(gp), dH_dq=buf(gq))  # fmt: skip
    plan = core.Plan(core.OPS["grad"], desc, N=5, dtype=1, theta=(0, th.numel()), t=(0, 5), p=(0, 5), q=(0, 5),
                     H=(0, 5), dH_dp=(0, 5), dH_dq=(0, 5))  # fmt: skip
    assert plan.slots == ["theta", "t", "p", "q", "H", "dH_dp", "dH_dq"]
    for _ in range(2):  # the plan is unchanged by a run
        H2, gp2, gq2 = outs()
        plan.run(*(x.data_ptr() for x in (th, t, p, q, H2, gp2, gq2)))
        assert torch.equal(H, H2) and torch.equal(gp, gp2) and torch.equal(gq, gq2)
    with pytest.raises(ValueError, match="7 buffer pointers expected, got 6"):
        plan.run(*(x.data_ptr() for x in (th, t, p, q, H2, gp2)))
    with pytest.raises(ValueError, match="null pointer"):
        plan.run(*(x.data_ptr() for x in (th, t, p, q, H2, gp2)), 0)
    short = core.Plan(core.OPS["grad"], desc, N=5, dtype=1, theta=(0, th.numel()), t=(0, 5), p=(0, 5), q=(0, 5),
                      H=(0, 5), dH_dp=(0, 4), dH_dq=(0, 5))  # fmt: skip
    with pytest.raises(ValueError, match="dH_dp has 4 elements"):  # sizes are checked on every run, as by call
        short.run(*(x.data_ptr() for x in (th, t, p, q, H2, gp2, gq2)))
    with pytest.raises(ValueError, match="unknown argument 'thetta'"):
        core.Plan(core.OPS["grad"], desc, thetta=(0, 1))
    with pytest.raises(ValueError, match="CPU calls only"):
        core.Plan(core.OPS["grad"], desc, N=5, dtype=1, cuda=True)


@requires_fused
def test_planned_calls_follow_their_sizes():
    # the fused ops' CPU calls are prepared once per op, structure, sizes and scalars (eager steps and
    # rollouts per configuration): calls that differ in any of them get their own plan and their own result
    from hinn.backends import fused

    fused._plans.clear()
    fused._integrations.clear()
    net = hinn.HamiltonianNet(1, width=4, depth=2, dtype=torch.float64, backend="fused")
    ref = hinn.HamiltonianNet(1, width=4, depth=2, dtype=torch.float64, backend="autograd")
    ref.load_state_dict(net.state_dict())
    g = torch.Generator().manual_seed(1)
    for N, h, scheme in ((7, 0.1, "leapfrog"), (9, 0.1, "leapfrog"), (7, 0.2, "leapfrog"), (7, 0.1, "rk4"),
                         (7, 0.1, "leapfrog")):  # fmt: skip
        p, q = torch.randn(N, 1, dtype=torch.float64, generator=g), torch.randn(N, 1, dtype=torch.float64, generator=g)
        for dtype in (torch.float64, torch.float32, torch.float64):
            a, b = net.to(dtype), ref.to(dtype)
            x, y = p.to(dtype), q.to(dtype)
            got = hinn.rollout(a, 0.0, x, y, h, 3, scheme) + a.value_and_grad(0.0, x, y)
            want = hinn.rollout(b, 0.0, x, y, h, 3, scheme) + b.value_and_grad(0.0, x, y)
            tol = 1e-13 if x.dtype == torch.float64 else 1e-5
            assert all(rel_err(u, v) < tol for u, v in zip(got, want)), (N, h, scheme, x.dtype)
    assert len(fused._integrations) == 8  # 4 configurations x 2 dtypes: the last repeats the first
    assert len(fused._plans) == 4  # grad: N = 7 and 9 x 2 dtypes
    limit = fused._MAX_PLANS
    try:
        fused._MAX_PLANS = 2
        hinn.rollout(net, 0.0, p[:5], q[:5], 0.1, 3, "leapfrog")
        net.value_and_grad(0.0, p[:5], q[:5])
        assert len(fused._integrations) == 1 and len(fused._plans) == 1  # bounded: full, they start again
    finally:
        fused._MAX_PLANS = limit


@requires_fused
def test_eager_step_refuses_inconsistent_inputs():
    # the eager step trusts the public entry points' checks, but a direct compiled_rollout call with a
    # mismatched dtype or shape still gets the ops' message instead of a read past a buffer
    net = hinn.HamiltonianNet(1, width=4, depth=2, dtype=torch.float64, backend="fused")
    sch = hinn.get_scheme("leapfrog")
    p = torch.zeros(5, 1, dtype=torch.float64)
    with pytest.raises(TypeError, match="hinn::step: t has dtype torch.float32"):
        net.compiled_rollout(sch, torch.zeros(5), p, p, 0.1, 1, False)
    with pytest.raises(ValueError, match="hinn::rollout: q must have shape"):
        net.compiled_rollout(sch, torch.zeros(5, dtype=torch.float64), p, p[:4], 0.1, 2, True)


@requires_fused
def test_bad_isa_variable_is_a_clear_import_error():
    env = {**os.environ, "HINN_CPU_ISA": "bogus"}
    r = subprocess.run([sys.executable, "-c", "import hinn._core"], env=env, capture_output=True, text=True)
    assert r.returncode == 1, r.returncode  # an exception, not an abort (134)
    assert "HINN_CPU_ISA: unknown CPU instruction set 'bogus'" in r.stderr
    # every later attempt says the same (hinn's package init has already tried once); with the collector
    # off, anything a failed attempt left registered would still be there
    retry = (
        "import gc\ngc.disable()\nfor _ in range(3):\n    try:\n        import hinn._core\n"
        "    except ImportError as e:\n        print('attempt:', e)\n"
    )
    r = subprocess.run([sys.executable, "-c", retry], env=env, capture_output=True, text=True)
    lines = [line for line in r.stdout.splitlines() if line.startswith("attempt:")]
    assert len(lines) == 3 and all("unknown CPU instruction set 'bogus'" in line for line in lines), r.stdout + r.stderr


@requires_fused
def test_every_usable_isa_runs_and_agrees():
    from hinn.backends.fused import core

    net = random_net(2, 5, 2, True, "softplus", 0)
    t, p, q = random_state(37, 2, 1)
    old, out = core.cpu_isa(), {}
    assert "baseline" in core.cpu_isas()  # runs on any x86-64
    try:
        for isa in core.cpu_isas():
            core.set_cpu_isa(isa)
            out[isa] = net.grad(t, p, q)
    finally:
        core.set_cpu_isa(old)
    net.backend = "hessquik"
    ref = net.grad(t, p, q)
    for isa, g in out.items():
        assert rel_err(g[0], ref[0]) < 1e-12 and rel_err(g[1], ref[1]) < 1e-12, isa


# ----------------------------------------------------------------------------- structure is state
def test_structure_travels_in_the_state_dict():
    a = hinn.HamiltonianNet(2, width=4, depth=2, activation="tanh")
    b = hinn.HamiltonianNet(2, width=4, depth=2, activation="softplus")
    with pytest.raises(ValueError, match="'activation': 'tanh'.*'activation': 'softplus'"):
        b.load_state_dict(a.state_dict())
    c = hinn.HamiltonianNet(2, width=4, depth=2, activation="tanh")
    c.load_state_dict(a.state_dict())
    assert torch.equal(c.theta, a.theta)


def test_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path):
    from hinn.train import CheckpointError, load_checkpoint, save_checkpoint

    path = str(tmp_path / "checkpoint.pt")
    save_checkpoint(path, {"config": {"a": 1}, "model": {}, "epoch": 1})
    save_checkpoint(path, {"config": {"a": 1}, "model": {}, "epoch": 2})
    assert load_checkpoint(path)["epoch"] == 2
    with open(path, "r+b") as f:  # truncate the newest
        f.truncate(100)
    with pytest.warns(RuntimeWarning, match="not a readable checkpoint.*previous checkpoint"):
        assert load_checkpoint(path)["epoch"] == 1
    with open(tmp_path / "checkpoint.prev.pt", "wb") as f:
        f.write(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"), pytest.warns(RuntimeWarning):
        load_checkpoint(path)  # the newest is damaged (a warning), and so is the previous one


# ----------------------------------------------------------------------------- data
def test_splits_do_not_depend_on_the_training_size():
    a = hinn.data.generate("spring", sizes=(100, 20, 30), steps=10, seed=4)
    b = hinn.data.generate("spring", sizes=(300, 20, 30), steps=10, seed=4)
    assert np.array_equal(a.test.P, b.test.P) and np.array_equal(a.val.Q, b.val.Q)
    assert not np.array_equal(a.train.P[:1], hinn.data.generate("spring", (100, 20, 30), 10, seed=5).train.P[:1])


def _export(path, M=8, T=21, h=0.1):
    ds = hinn.data.generate("pendulum", sizes=(M * (T - 1), 1, 1), steps=T - 1, h=h, seed=1)
    np.savez(path, t=ds.train.t, p=ds.train.P, q=ds.train.Q)
    return ds.train


def test_train_on_your_own_data(tmp_path):
    import json

    from hinn.cli import main

    f = str(tmp_path / "mine.npz")
    tr = _export(f)
    out = str(tmp_path / "run")
    args = ["train", "--data", f, "--epochs", "2", "--width", "4", "--depth", "1", "--out", out, "--no-progress"]
    assert main(args) == 0
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert "energy_mse" not in m and "no true Hamiltonian" in m["energy_mse_note"] and m["rollout_mse"] > 0
    ds = hinn.data.Dataset.load(os.path.join(out, "data.npz"))
    assert ds.train.n + ds.val.n + ds.test.n == tr.n and ds.val.n >= 1 and ds.test.n >= 1
    assert main(["eval", out, "--data", f]) == 0  # every trajectory of the file, in a folder of its own
    assert json.load(open(os.path.join(out, "eval-mine", "eval.json")))["n_test_trajectories"] == tr.n


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda z: z.pop("q"), "missing array"),
        (lambda z: z.update(t=z["t"][::-1].copy()), "strictly increasing"),
        (lambda z: z.update(t=z["t"] ** 1.1), "not uniform"),
        (
            lambda z: z.update(p=z["p"][:, :-1]),
            r"p has shape \(8, 20, 1\), expected \(M, T, d\) or \(T, d\) with T = 21",
        ),
        (lambda z: z["q"].__setitem__((5, 3, 0), np.nan), "q contains NaN or infinite values in trajectory 5"),
        (lambda z: z.update(p=z["p"][:2], q=z["q"][:2]), "at least 3 trajectories"),
    ],
)
def test_malformed_data_files(tmp_path, change, message):
    f = str(tmp_path / "bad.npz")
    _export(f)
    z = dict(np.load(f))
    change(z)
    np.savez(f, **z)
    with pytest.raises(ValueError, match=message):
        hinn.data.load_trajectories(f)


def test_cli_version(capsys):
    from hinn.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and hinn.__version__ in capsys.readouterr().out
