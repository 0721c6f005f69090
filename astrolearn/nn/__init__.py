"""Neural networks built from configuration (torch only, no Lightning)."""

from .builder import Network, ResidualBlock, build_network, fold_batchnorm, head_size

__all__ = ["Network", "ResidualBlock", "build_network", "fold_batchnorm", "head_size"]
