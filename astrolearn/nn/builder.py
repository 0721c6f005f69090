"""Build a network from its description: one builder for 1D (spectra, PDFs) and 2D (images).

A description (the ``model`` section of a training configuration) is a mapping::

    dim: 2                      # 1: input (B, C, L); 2: input (B, C, H, W)
    defaults:                   # optional, applied to every block that does not say otherwise
      activation: relu          # relu leaky_relu gelu silu elu tanh sigmoid none
      norm: batch               # batch group layer none
      init: kaiming             # kaiming kaiming_uniform xavier xavier_normal normal orthogonal default
    blocks:
      - {type: conv, filters: 16, kernel: 5, stride: 2}          # padding: same (default) | valid | int
      - {type: residual, filters: 32, stride: 2}                 # two convs + (projected) skip
      - {type: pool, op: max, size: 2}                           # op: max | avg; global: true
      - {type: flatten}
      - {type: dense, units: 64, dropout: 0.1}
      - {type: dropout, rate: 0.2}
    head:
      type: regression          # outputs: P; uncertainty: true gives P means + P log-variances
      # type: classification    # classes: C (or a list of C class names)

Conv, residual and dense blocks accept ``activation``, ``norm``, ``init``, ``dropout`` and, for
``norm: group``, ``groups``. A dense block after a spatial block flattens automatically. Sizes
are inferred by passing a dummy input of ``input_shape`` through the blocks as they are built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..errors import UserError

#: Layer classes by input dimensionality: the only place where 1D and 2D differ.
_LAYERS = {
    1: {"conv": nn.Conv1d, "batch": nn.BatchNorm1d, "max": nn.MaxPool1d, "avg": nn.AvgPool1d,
        "global_max": nn.AdaptiveMaxPool1d, "global_avg": nn.AdaptiveAvgPool1d, "dropout": nn.Dropout1d},
    2: {"conv": nn.Conv2d, "batch": nn.BatchNorm2d, "max": nn.MaxPool2d, "avg": nn.AvgPool2d,
        "global_max": nn.AdaptiveMaxPool2d, "global_avg": nn.AdaptiveAvgPool2d, "dropout": nn.Dropout2d},
}

ACTIVATIONS = {
    "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU, "silu": nn.SiLU, "elu": nn.ELU,
    "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "none": nn.Identity,
}
NORMS = ("batch", "group", "layer", "none")
INITS = ("kaiming", "kaiming_uniform", "xavier", "xavier_normal", "normal", "orthogonal", "default")

_LAYER_KEYS = {"activation", "norm", "init", "dropout", "groups"}
_BLOCK_KEYS = {
    "conv": {"filters", "kernel", "stride", "padding"} | _LAYER_KEYS,
    "residual": {"filters", "kernel", "stride"} | _LAYER_KEYS,
    "dense": {"units"} | _LAYER_KEYS,
    "pool": {"op", "size", "stride", "global"},
    "flatten": set(),
    "dropout": {"rate"},
}
_HEAD_KEYS = {"regression": {"outputs", "uncertainty", "init"}, "classification": {"classes", "init"}}
_MODEL_KEYS = {"dim", "defaults", "blocks", "head"}
_DEFAULT_LAYER = {"activation": "relu", "norm": "batch", "init": "kaiming", "dropout": 0.0, "groups": 8}


class Network(nn.Sequential):
    """Blocks followed by a linear head; ``forward`` returns the raw head output.

    Attributes
    ----------
    dim : int
        1 or 2.
    input_shape : tuple of int
        Shape of one input sample, channels first, that the network was sized for.
    task : str
        ``"regression"`` or ``"classification"``.
    n_targets : int
        Number of regression targets P or of classes C.
    uncertainty : bool
        Regression head outputs P means then P log-variances (2P values).
    """

    def __init__(self, layers, dim, input_shape, task, n_targets, uncertainty):
        super().__init__(*layers)
        self.dim = dim
        self.input_shape = tuple(input_shape)
        self.task = task
        self.n_targets = n_targets
        self.uncertainty = uncertainty


def head_size(spec: Mapping) -> int | None:
    """Number of targets or classes that the ``head`` of a model description asks for (or None)."""
    head = spec.get("head") or {}
    value = head.get("classes") if head.get("type") == "classification" else head.get("outputs")
    return len(value) if isinstance(value, (list, tuple)) else value


def build_network(spec: Mapping, input_shape: Sequence[int], n_targets: int | None = None) -> Network:
    """Build the network described by ``spec`` for samples of shape ``input_shape``.

    Parameters
    ----------
    spec : mapping
        Model description (see the module documentation).
    input_shape : sequence of int
        One sample, channels first: ``(C, L)`` for ``dim: 1``, ``(C, H, W)`` for ``dim: 2``.
    n_targets : int, optional
        Number of regression targets or classes given by the data; fills the head's ``outputs`` or
        ``classes`` when the description leaves it out, and must agree with it otherwise.

    Returns
    -------
    Network
        In training mode, initialised from the global torch random generator.

    Raises
    ------
    UserError
        On an invalid description or one that does not fit ``input_shape``.
    """
    _check_keys(spec, _MODEL_KEYS, "model")
    dim = spec.get("dim", 2)
    if dim not in _LAYERS:
        raise UserError(f"model.dim must be 1 or 2, not {dim!r}")
    input_shape = tuple(int(n) for n in input_shape)
    if len(input_shape) != dim + 1:
        raise UserError(f"model.dim is {dim} but the input samples have shape {input_shape} "
                        f"(expected {dim + 1} axes, channels first)")
    defaults = {**_DEFAULT_LAYER, **(spec.get("defaults") or {})}
    _check_keys(defaults, _LAYER_KEYS, "model.defaults")
    blocks = spec.get("blocks") or []
    if not isinstance(blocks, list):
        raise UserError("model.blocks must be a list of blocks")

    layers = []
    x = torch.zeros((1, *input_shape))
    for i, block in enumerate(blocks):
        where = f"model.blocks[{i}]"
        if not isinstance(block, Mapping) or block.get("type") not in _BLOCK_KEYS:
            raise UserError(f"{where}: needs a type among {', '.join(_BLOCK_KEYS)}")
        kind = block["type"]
        _check_keys(block, _BLOCK_KEYS[kind] | {"type"}, where)
        if kind in ("conv", "residual", "pool") and x.dim() != dim + 2:
            raise UserError(f"{where}: a {kind} block needs feature maps, not the flat output of "
                            "the block before it")
        if kind == "dense" and x.dim() > 2:
            layers.append(nn.Flatten())
            x = x.flatten(1)
        settings = {**defaults, **block} if kind in ("conv", "residual", "dense") else dict(block)
        layer = _BUILDERS[kind](settings, x.shape, dim, where)
        x = _dry_run(layer, x, where)
        layers.append(layer)

    task, n_out, uncertainty, head = _head(spec.get("head"), n_targets)
    if x.dim() > 2:
        layers.append(nn.Flatten())
        x = x.flatten(1)
    linear = nn.Linear(x.shape[1], n_out * (2 if uncertainty else 1))
    _init(linear, head.get("init", "xavier"), "none", "model.head")
    layers.append(linear)
    return Network(layers, dim, input_shape, task, n_out, uncertainty)


def _head(head, n_targets):
    if not isinstance(head, Mapping) or head.get("type") not in _HEAD_KEYS:
        raise UserError("model.head needs a type: regression or classification")
    task = head["type"]
    _check_keys(head, _HEAD_KEYS[task] | {"type"}, "model.head")
    wanted = head_size({"head": head})
    if wanted is not None and n_targets is not None and wanted != n_targets:
        raise UserError(f"model.head asks for {wanted} {'classes' if task == 'classification' else 'outputs'}"
                        f" but the data give {n_targets}")
    n_out = wanted if wanted is not None else n_targets
    if not isinstance(n_out, int) or n_out < 1:
        raise UserError(f"model.head: number of {'classes' if task == 'classification' else 'outputs'} "
                        f"unknown or invalid ({n_out!r})")
    if task == "classification" and n_out < 2:
        raise UserError("model.head: a classifier needs at least 2 classes")
    return task, n_out, bool(head.get("uncertainty", False)), head


def _check_keys(mapping, allowed, where):
    unknown = set(mapping) - set(allowed)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                        f"(allowed: {', '.join(sorted(allowed))})")


def _dry_run(layer, x, where):
    # Eval mode so that batch norm accepts the single dummy sample and keeps its running stats.
    layer.eval()
    try:
        with torch.no_grad():
            y = layer(x)
    except RuntimeError as exc:
        raise UserError(f"{where}: does not fit its input of shape {tuple(x.shape[1:])} "
                        f"({str(exc).splitlines()[0]})") from None
    layer.train()
    if y.numel() == 0:
        raise UserError(f"{where}: output is empty for an input of shape {tuple(x.shape[1:])}")
    return y


def _positive_int(settings, key, where, default=None):
    value = settings.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserError(f"{where}: {key} must be a positive integer, not {value!r}")
    return value


def _conv(settings, shape, dim, where, stride=None, activation=True):
    """Convolution + normalisation + activation (+ channel dropout) for inputs of ``shape``."""
    filters = _positive_int(settings, "filters", where)
    kernel = _positive_int(settings, "kernel", where, 3)
    stride = _positive_int(settings, "stride", where, 1) if stride is None else stride
    padding = settings.get("padding", "same")
    # "same" keeps the size at stride 1 and gives ceil(size / stride) otherwise (odd kernels),
    # unlike torch's padding="same" which refuses strides.
    if padding == "same":
        padding = kernel // 2
    elif padding == "valid":
        padding = 0
    elif not isinstance(padding, int) or padding < 0:
        raise UserError(f"{where}: padding must be same, valid or an integer, not {padding!r}")
    norm = settings["norm"]
    conv = _LAYERS[dim]["conv"](shape[1], filters, kernel, stride=stride, padding=padding,
                                bias=norm == "none")
    _init(conv, settings["init"], settings["activation"], where)
    layers = [conv, _norm(norm, filters, dim, settings, where)]
    if activation:
        layers.append(_activation(settings["activation"], where))
    if _rate(settings["dropout"], where):
        layers.append(_LAYERS[dim]["dropout"](settings["dropout"]))
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """Two convolutions with a skip connection (He et al. 2016, "basic block").

    The skip is the identity, or a 1x1 convolution + normalisation when the block changes the
    number of channels or the resolution.
    """

    def __init__(self, settings, shape, dim, where):
        super().__init__()
        stride = _positive_int(settings, "stride", where, 1)
        filters = _positive_int(settings, "filters", where)
        self.body = nn.Sequential(
            _conv({**settings, "dropout": 0.0}, shape, dim, where, stride=stride),
            _conv(settings, (shape[0], filters), dim, where, stride=1, activation=False),
        )
        if stride == 1 and shape[1] == filters:
            self.skip = nn.Identity()
        else:
            self.skip = _conv({**settings, "kernel": 1, "padding": 0, "dropout": 0.0}, shape, dim, where,
                              stride=stride, activation=False)
        self.activation = _activation(settings["activation"], where)

    def forward(self, x):
        return self.activation(self.body(x) + self.skip(x))


def _dense(settings, shape, dim, where):
    units = _positive_int(settings, "units", where)
    norm = settings["norm"]
    linear = nn.Linear(shape[1], units, bias=norm == "none")
    _init(linear, settings["init"], settings["activation"], where)
    layers = [linear, _norm(norm, units, None, settings, where), _activation(settings["activation"], where)]
    if _rate(settings["dropout"], where):
        layers.append(nn.Dropout(settings["dropout"]))
    return nn.Sequential(*layers)


def _pool(settings, shape, dim, where):
    op = settings.get("op", "max")
    if op not in ("max", "avg"):
        raise UserError(f"{where}: op must be max or avg, not {op!r}")
    if settings.get("global", False):
        return nn.Sequential(_LAYERS[dim][f"global_{op}"](1), nn.Flatten())
    size = _positive_int(settings, "size", where, 2)
    return _LAYERS[dim][op](size, stride=_positive_int(settings, "stride", where, size))


def _dropout(settings, shape, dim, where):
    return nn.Dropout(_rate(settings.get("rate", 0.5), where))


def _rate(value, where):
    """A dropout probability, checked."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise UserError(f"{where}: dropout rate must be in [0, 1), not {value!r}")
    return value


_BUILDERS = {
    "conv": _conv,
    "residual": ResidualBlock,
    "dense": _dense,
    "pool": _pool,
    "flatten": lambda settings, shape, dim, where: nn.Flatten(),
    "dropout": _dropout,
}


def _norm(kind, channels, dim, settings, where):
    """Normalisation over ``channels`` features; ``dim`` None for a dense (B, F) input."""
    if kind == "none":
        return nn.Identity()
    if kind == "batch":
        return _LAYERS[dim or 1]["batch"](channels)
    if kind == "layer":
        # Over all features of a sample: for feature maps, one group holding every channel.
        return nn.LayerNorm(channels) if dim is None else nn.GroupNorm(1, channels)
    if kind == "group":
        groups = _positive_int(settings, "groups", where)
        if channels % groups:
            raise UserError(f"{where}: {channels} channels cannot be split into {groups} groups")
        return nn.GroupNorm(groups, channels)
    raise UserError(f"{where}: norm must be one of {', '.join(NORMS)}, not {kind!r}")


def _activation(name, where):
    if name not in ACTIVATIONS:
        raise UserError(f"{where}: activation must be one of {', '.join(ACTIVATIONS)}, not {name!r}")
    return ACTIVATIONS[name]()


def _init(layer, name, activation, where):
    """Initialise the weights of a conv/linear ``layer`` (biases start at zero)."""
    if name not in INITS:
        raise UserError(f"{where}: init must be one of {', '.join(INITS)}, not {name!r}")
    if name == "default":
        return
    # He initialisation assumes a rectifier; the leaky slope changes its gain.
    nonlinearity = "leaky_relu" if activation == "leaky_relu" else "relu"
    w = layer.weight
    if name == "kaiming":
        nn.init.kaiming_normal_(w, nonlinearity=nonlinearity)
    elif name == "kaiming_uniform":
        nn.init.kaiming_uniform_(w, nonlinearity=nonlinearity)
    elif name == "xavier":
        nn.init.xavier_uniform_(w)
    elif name == "xavier_normal":
        nn.init.xavier_normal_(w)
    elif name == "normal":
        nn.init.normal_(w, std=0.02)
    else:
        nn.init.orthogonal_(w)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold each batch normalisation that follows a convolution or linear layer into it (in place).

    For inference only (running statistics): the network computes the same function with one
    pass less over each activation map, which on CPU is a large part of the cost.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

    if isinstance(module, nn.Sequential):
        children = list(module.children())
        for i, (layer, nxt) in enumerate(zip(children[:-1], children[1:])):
            if isinstance(nxt, nn.modules.batchnorm._BatchNorm) and isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                fuse = fuse_linear_bn_eval if isinstance(layer, nn.Linear) else fuse_conv_bn_eval
                module[i] = fuse(layer.eval(), nxt.eval())
                module[i + 1] = nn.Identity()
    for child in module.children():
        fold_batchnorm(child)
    return module
