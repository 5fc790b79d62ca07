import pytest
import torch
from conftest import random_net, random_state, rel_err

import hinn


def test_parameter_vector_is_hessquik_order():
    net = random_net(2, 4, 3, True, "tanh", 0)
    hq = net.to_hessquik()
    flat = torch.cat([p.reshape(-1) for p in hq.parameters()])
    assert torch.equal(flat, torch.cat([p.reshape(-1) for p in net.parameters()]))
    shapes = [tuple(p.shape) for p in hq.parameters()]
    assert shapes == [s for K, b in net.layer_shapes() for s in (K, b)]


@pytest.mark.parametrize("time_dependent", [True, False])
@pytest.mark.parametrize("activation", ["tanh", "softplus"])
def test_hessquik_round_trip(time_dependent, activation):
    net = random_net(3, 5, 4, time_dependent, activation, 1)
    back = hinn.HamiltonianNet.from_hessquik(net.to_hessquik(), 3, time_dependent=time_dependent)
    assert torch.equal(back.theta, net.theta)
    assert (back.width, back.depth, back.activation, back.resnet_step) == (5, 4, activation, net.resnet_step)
    t, p, q = random_state(9, 3, 2)
    hq = net.to_hessquik()
    x = torch.cat([t[:, None], p, q], 1) if time_dependent else torch.cat([p, q], 1)
    f, df, _ = hq(x, do_gradient=True)
    gp, gq = back.grad(t, p, q)
    o = int(time_dependent)
    assert rel_err(back(t, p, q), f[:, 0]) < 1e-14
    assert rel_err(torch.cat([gp, gq], 1), df[:, o:, 0]) < 1e-14


def test_from_hessquik_rejects_wrong_input_size():
    net = random_net(2, 3, 2, True, "tanh", 0)
    with pytest.raises(ValueError, match="takes 5 inputs"):
        hinn.HamiltonianNet.from_hessquik(net.to_hessquik(), 3)


def test_state_dict_round_trip():
    a = random_net(2, 3, 5, True, "softplus", 3)
    b = hinn.HamiltonianNet(2, width=3, depth=5, activation="softplus", dtype=torch.float64, resnet_step=a.resnet_step)
    b.load_state_dict(a.state_dict())
    t, p, q = random_state(4, 2, 0)
    assert torch.equal(a(t, p, q), b(t, p, q))


def test_layers_are_views_of_theta():
    net = random_net(1, 3, 2, True, "tanh", 0)
    K0, _ = net.layers()[0]
    with torch.no_grad():
        K0[0, 0] = 123.0
    assert net.theta[0].item() == 123.0
    assert net.n_params == net.theta.numel() == 3 * 3 + 3 + 2 * 12 + 4


def test_default_resnet_step_and_repr():
    net = hinn.HamiltonianNet(1, depth=20)
    assert net.resnet_step == pytest.approx(0.05)
    assert "depth=20" in repr(net)


def test_every_backend_knows_exactly_the_activations_and_refuses_others():
    from hinn.backends import autograd, fused, hessquik
    from hinn.network import ACTIVATIONS

    assert tuple(autograd.ACTIVATION_FUNCTIONS) == ACTIVATIONS
    if fused.core is not None:
        assert tuple(fused.core.ACTIVATIONS) == ACTIVATIONS
    for name in ACTIVATIONS:
        hessquik._activation(name)
    z = torch.zeros(2)
    with pytest.raises(ValueError, match="autograd backend has no activation 'relu'"):
        autograd._act("relu", z)
    with pytest.raises(ValueError, match="hessquik backend has no activation 'relu'"):
        hessquik._activation("relu")
