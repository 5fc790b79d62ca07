"""hinn's optimizers make torch.optim's updates: Adam and plain gradient descent, weight decay, the
capturable step count, checkpoints."""

import pytest
import torch

from hinn.optim import Adam, GradientDescent


def _run(opt_cls, torch_cls, steps=60, **kw):
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(7, generator=gen, dtype=torch.float64), torch.randn(3, 2, generator=gen, dtype=torch.float64)]
    grads = [[torch.randn(x.shape, generator=gen, dtype=torch.float64) for x in start] for _ in range(steps)]
    ours = [x.clone().requires_grad_(True) for x in start]
    theirs = [x.clone().requires_grad_(True) for x in start]
    a, b = opt_cls(ours, **kw), torch_cls(theirs, **{k: v for k, v in kw.items() if k != "capturable"})
    for gs in grads:
        for prm_a, prm_b, g in zip(ours, theirs, gs):
            prm_a.grad, prm_b.grad = g * (1 + prm_a.detach() ** 2), g * (1 + prm_b.detach() ** 2)
        a.step()
        b.step()
    return ours, theirs


@pytest.mark.parametrize("wd", [0.0, 1e-2])
def test_adam_is_torch_adam(wd):
    ours, theirs = _run(Adam, torch.optim.Adam, lr=1e-2, weight_decay=wd)
    for x, y in zip(ours, theirs):
        assert torch.equal(x, y)  # the same operations in the same order
    ours, theirs = _run(Adam, torch.optim.Adam, lr=1e-2, weight_decay=wd, capturable=True)
    for x, y in zip(ours, theirs):  # the device-side bias corrections round differently
        assert (x - y).abs().max() < 1e-13


@pytest.mark.parametrize("wd", [0.0, 1e-2])
def test_gradient_descent_is_torch_sgd(wd):
    ours, theirs = _run(GradientDescent, torch.optim.SGD, lr=1e-2, weight_decay=wd)
    for x, y in zip(ours, theirs):
        assert torch.equal(x, y)


def test_adam_state_round_trip():
    x = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    a = Adam([x], lr=0.1)
    for _ in range(3):
        x.grad = torch.ones_like(x)
        a.step()
    y = x.detach().clone().requires_grad_(True)
    b = Adam([y], lr=0.1, capturable=True)
    b.load_state_dict(a.state_dict())  # a state moves between the host and the device step count
    x.grad, y.grad = torch.full_like(x, 0.5), torch.full_like(y, 0.5)
    a.step()
    b.step()
    assert (x - y).abs().max() < 1e-15 and b.state_dict()["step"] == 4
    with pytest.raises(ValueError, match="not hinn's 'adam' optimizer's"):
        a.load_state_dict(GradientDescent([x], lr=0.1).state_dict())
