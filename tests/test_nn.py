"""Networks built from configuration (astrolearn.nn): shapes, options and errors."""

import pytest
import torch
from torch import nn

from astrolearn.errors import UserError
from astrolearn.nn import ResidualBlock, build_network

BLOCKS = [
    {"type": "conv", "filters": 4, "kernel": 5, "stride": 2},
    {"type": "residual", "filters": 8, "stride": 2},
    {"type": "residual", "filters": 8},
    {"type": "pool", "op": "max", "size": 2},
    {"type": "dense", "units": 6, "dropout": 0.1},
]


def spec(dim=2, blocks=BLOCKS, **head):
    return {"dim": dim, "blocks": blocks, "head": {"type": "regression", **head}}


@pytest.mark.parametrize("dim, shape", [(1, (2, 40)), (2, (1, 16, 12))])
def test_same_builder_for_1d_and_2d(dim, shape):
    net = build_network(spec(dim), shape, n_targets=3)
    out = net(torch.randn(5, *shape))
    assert out.shape == (5, 3)
    convs = [m for m in net.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d))]
    assert {type(m) for m in convs} == {nn.Conv1d if dim == 1 else nn.Conv2d}
    assert net.input_shape == shape and net.dim == dim and net.training


def test_sizes_inferred_and_flatten_added_before_dense():
    net = build_network(spec(2), (1, 16, 16), n_targets=2)
    # 16 -> conv s2 -> 8 -> residual s2 -> 4 -> pool -> 2: 8 channels x 2 x 2 into the dense block.
    dense = [m for m in net.modules() if isinstance(m, nn.Linear)][0]
    assert dense.in_features == 8 * 2 * 2
    assert any(isinstance(m, nn.Flatten) for m in net)


def test_residual_block_projects_skip_only_when_shape_changes():
    net = build_network(spec(2), (1, 16, 16), n_targets=1)
    first, second = [m for m in net if isinstance(m, ResidualBlock)]
    assert not isinstance(first.skip, nn.Identity)  # 4 -> 8 channels, stride 2
    assert isinstance(second.skip, nn.Identity)


def test_uncertainty_head_doubles_outputs_and_classification_head():
    assert build_network(spec(1, uncertainty=True), (1, 32), n_targets=4)(torch.randn(2, 1, 32)).shape == (2, 8)
    classifier = {"dim": 1, "blocks": BLOCKS, "head": {"type": "classification", "classes": ["a", "b", "c"]}}
    net = build_network(classifier, (1, 32))
    assert net.task == "classification" and net.n_targets == 3
    assert net(torch.randn(2, 1, 32)).shape == (2, 3)


def test_global_pool_and_empty_body():
    blocks = [{"type": "conv", "filters": 3}, {"type": "pool", "op": "avg", "global": True}]
    assert build_network(spec(2, blocks), (1, 9, 7), 2)(torch.randn(4, 1, 9, 7)).shape == (4, 2)
    linear = build_network(spec(1, []), (1, 5), 1)  # flatten + linear head: a linear model
    assert [type(m) for m in linear] == [nn.Flatten, nn.Linear]


@pytest.mark.parametrize("norm, cls", [("batch", nn.BatchNorm2d), ("group", nn.GroupNorm),
                                       ("layer", nn.GroupNorm), ("none", nn.Identity)])
def test_norms(norm, cls):
    blocks = [{"type": "conv", "filters": 8, "norm": norm, "groups": 4}, {"type": "dense", "units": 4, "norm": norm, "groups": 2}]
    net = build_network(spec(2, blocks), (1, 6, 6), 1)
    assert isinstance(net[0][1], cls)
    assert (net[0][0].bias is None) == (norm != "none")  # a normalisation makes the bias redundant
    if norm == "layer":
        assert net[0][1].num_groups == 1 and isinstance(net[2][1], nn.LayerNorm)
    net(torch.randn(3, 1, 6, 6)).sum().backward()


def test_initialisers_and_defaults_section():
    blocks = [{"type": "dense", "units": 200, "init": "normal", "activation": "tanh"}]
    net = build_network({"dim": 1, "defaults": {"norm": "none"}, "blocks": blocks,
                         "head": {"type": "regression", "init": "xavier"}}, (1, 300), 1)
    weight = net[1][0].weight
    assert abs(weight.std().item() - 0.02) < 0.002 and torch.all(net[1][0].bias == 0)
    assert isinstance(net[1][2], nn.Tanh)
    for init in ("kaiming", "kaiming_uniform", "xavier", "xavier_normal", "orthogonal", "default"):
        build_network(spec(1, [{"type": "conv", "filters": 2, "init": init}]), (1, 8), 1)


def test_batch_norm_running_stats_untouched_by_size_inference():
    net = build_network(spec(2), (1, 16, 16), 1)
    bn = net[0][1]
    assert torch.all(bn.running_mean == 0) and torch.all(bn.running_var == 1)


@pytest.mark.parametrize("bad, message", [
    ({"dim": 3}, "dim must be 1 or 2"),
    ({"blocks": [{"type": "lstm"}]}, "needs a type"),
    ({"blocks": [{"type": "conv", "filter": 3}]}, "unknown key"),
    ({"blocks": [{"type": "conv", "filters": 0}]}, "positive integer"),
    ({"blocks": [{"type": "conv", "filters": 2, "norm": "instance"}]}, "norm must be"),
    ({"blocks": [{"type": "conv", "filters": 2, "activation": "swish"}]}, "activation must be"),
    ({"blocks": [{"type": "conv", "filters": 2, "init": "he"}]}, "init must be"),
    ({"blocks": [{"type": "conv", "filters": 6, "norm": "group", "groups": 4}]}, "cannot be split"),
    ({"blocks": [{"type": "conv", "filters": 2, "kernel": 99, "padding": "valid"}]}, "does not fit"),
    ({"blocks": [{"type": "dense", "units": 4}, {"type": "conv", "filters": 2}]}, "needs feature maps"),
    ({"blocks": [{"type": "dense", "units": 4, "dropout": 1.5}]}, "dropout rate"),
    ({"head": {"type": "regression", "outputs": 5}}, "data give 3"),
    ({"head": {"type": "ranking"}}, "regression or classification"),
])
def test_invalid_descriptions_are_user_errors(bad, message):
    with pytest.raises(UserError, match=message):
        build_network({**spec(2, [{"type": "conv", "filters": 2}]), **bad}, (1, 8, 8), n_targets=3)


def test_input_shape_must_match_dim():
    with pytest.raises(UserError, match="expected 2 axes"):
        build_network(spec(1), (1, 8, 8), 1)


def test_folded_batchnorm_2d_residual_network_computes_the_same_function():
    from astrolearn.nn import fold_batchnorm

    cfg = {"dim": 2, "defaults": {"norm": "batch"},
           "blocks": [{"type": "conv", "filters": 4, "kernel": 4, "stride": 4},
                      {"type": "residual", "filters": 8, "stride": 2}, {"type": "residual", "filters": 8},
                      {"type": "dense", "units": 6}], "head": {"type": "regression"}}
    net = build_network(cfg, (1, 32, 32), 3)
    for bn in (m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
        for t in (bn.running_mean, bn.weight, bn.bias):
            nn.init.uniform_(t, -1, 1)
        nn.init.uniform_(bn.running_var, 0.5, 2)
    x = torch.randn(5, 1, 32, 32)
    with torch.inference_mode():
        before = net.eval()(x)
        after = fold_batchnorm(net)(x)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)
