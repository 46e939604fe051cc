"""Backbone modules, one file per family; importing this package registers every YAML row name."""

from . import heads, layers, mobileformer, mobilenet, mobilevit, mobilevitv2
from .heads import Classifier
from .layers import BatchNorm2d, ConvBNAct, ImageNorm, InvertedResidual, MV2Stage, SqueezeExcite, fuse_modules
from .mobileformer import (
    MobileFormerBlock,
    MobileFormerDown,
    MobileFormerLite,
    MobileFormerTap,
    MobileFormerTokens,
)
from .mobilenet import DepthwiseSeparable, MobileNetV1Stage, MobileNetV3Stage
from .mobilevit import MobileViTBlock, MobileViTStage
from .mobilevitv2 import MobileViTv2Block, MobileViTv2Stage
from .rows import YAML_MODULES, YamlModule

__all__ = [
    "YAML_MODULES",
    "BatchNorm2d",
    "Classifier",
    "ConvBNAct",
    "DepthwiseSeparable",
    "ImageNorm",
    "InvertedResidual",
    "MV2Stage",
    "MobileFormerBlock",
    "MobileFormerDown",
    "MobileFormerLite",
    "MobileFormerTap",
    "MobileFormerTokens",
    "MobileNetV1Stage",
    "MobileNetV3Stage",
    "MobileViTBlock",
    "MobileViTStage",
    "MobileViTv2Block",
    "MobileViTv2Stage",
    "SqueezeExcite",
    "YamlModule",
    "fuse_modules",
    "heads",
    "layers",
    "mobileformer",
    "mobilenet",
    "mobilevit",
    "mobilevitv2",
]
