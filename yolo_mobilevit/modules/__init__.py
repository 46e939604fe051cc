"""Backbone modules, one file per family; importing this package registers every YAML row name."""

from . import layers, mobileformer, mobilenet, mobilevit, mobilevitv2
from .layers import BatchNorm2d, ConvBNAct, InvertedResidual, MV2Stage
from .mobilevit import MobileViTBlock, MobileViTStage
from .rows import YAML_MODULES, YamlModule

__all__ = [
    "YAML_MODULES",
    "BatchNorm2d",
    "ConvBNAct",
    "InvertedResidual",
    "MV2Stage",
    "MobileViTBlock",
    "MobileViTStage",
    "YamlModule",
    "layers",
    "mobileformer",
    "mobilenet",
    "mobilevit",
    "mobilevitv2",
]
