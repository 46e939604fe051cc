"""Image classification head as the backbone papers use it: [1x1 conv] -> global average pool -> [MLP] -> linear.

Ultralytics' own ``Classify`` head always adds a 1x1 conv to 1280 channels; the MobileViT / MobileNet heads differ
(MobileViT: 1x1 conv to 320/384/640, pool, linear; MobileNetV2: 1x1 conv to 1280, pool, dropout, linear;
MobileNetV3: 1x1 conv to 960/576, pool, linear to 1280, h-swish, dropout, linear; MobileViTv2: pool, linear).
Mobile-Former's official head (``token_dim`` > 0) also reads the tokens: a last Mobile->Former bridge on P5, then
1x1 conv + BN + ReLU6, pool, h-swish, concatenate token 0, Linear + BatchNorm1d + act, dropout, Linear.
The row is named ``Classifier`` so that Ultralytics' ``guess_model_task`` infers ``classify`` from the YAML.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from .layers import ACTIVATIONS, ConvBNAct, make_activation
from .rows import AT_LEAST_ONE, MOMENTUM, NON_NEGATIVE, POSITIVE, PROBABILITY, Arg, YamlModule


class Classifier(YamlModule):
    """Paper-style classification head. (B, c1, H, W) -> logits (B, nc) when training.

    YAML: ``[-1, 1, Classifier, [c2, nc, mlp, act, dropout, conv, bn_eps, bn_momentum]]``

    - ``c2``: width of the pooled features, i.e. the output of the final 1x1 conv+BN+act (scaled by width like any
      c2). With ``conv=False`` there is no final conv and ``c2`` must equal the input channels.
    - ``nc``: classes (write ``nc``; not width-scaled).
    - ``mlp``: width of an extra Linear + act after pooling (MobileNetV3's 1280; 0 for none; width-scaled).
    - ``act``: activation of the final conv and of the hidden layer; ``dropout`` before the last Linear.

    Outputs follow Ultralytics' ``Classify`` so its trainer, validator and predictor work unchanged: logits in
    training; ``(softmax, logits)`` in eval; softmax alone when ``export`` is set or the model is being traced for
    export (``yolo export`` of a ``-cls`` model then has one output, as for Ultralytics' own classifiers).
    """

    yaml_args: ClassVar = (
        Arg("nc", int, bound=AT_LEAST_ONE),
        Arg("mlp", int, 0, bound=NON_NEGATIVE, scaled=True, old_name="hidden"),
        Arg("act", str, "silu", tuple(ACTIVATIONS)),
        Arg("dropout", (int, float), 0.0, bound=PROBABILITY),
        Arg("conv", bool, True),
        Arg("bn_eps", float, 1e-5, bound=POSITIVE),
        Arg("bn_momentum", float, 0.1, bound=MOMENTUM),
        Arg("token_dim", int, 0, bound=NON_NEGATIVE, scaled=True),
    )
    max_repeats: ClassVar = 1
    repeats_doc: ClassVar = "one head"
    takes_tokens: ClassVar = True  # with token_dim > 0 only (the builder refuses tokens otherwise)
    export: bool = False

    def __init__(
        self,
        c1: int,
        c2: int,
        n: int = 1,
        *,
        nc: int,
        mlp: int = 0,
        act: str = "silu",
        dropout: float = 0.0,
        conv: bool = True,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
        token_dim: int = 0,
    ) -> None:
        super().__init__()
        if token_dim and not (conv and mlp):
            raise ValueError("a Mobile-Former head (token_dim > 0) needs the final conv and the hidden Linear (mlp)")
        if not conv and c1 != c2:
            raise ValueError(f"without a final conv the features are the input's {c1} channels, but c2 is {c2}")
        bn = {"bn_eps": bn_eps, "bn_momentum": bn_momentum}
        self.token_dim = token_dim
        if token_dim:  # the official Mobile-Former head: ReLU6 after the conv's BN, BatchNorm1d after the hidden Linear
            from .mobileformer import MobileToFormer, _init_linears

            self.bridge = MobileToFormer(c1, token_dim)
            _init_linears(self.bridge)
            self.hidden_bn = nn.BatchNorm1d(mlp, eps=bn_eps, momentum=bn_momentum)
            self.pooled_act = nn.Hardswish()  # no parameters; heads pickled before it existed run without it
        self.conv = ConvBNAct(c1, c2, kernel=1, act="relu6" if token_dim else act, **bn) if conv else None
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.hidden = nn.Linear(c2 + token_dim, mlp) if mlp else None  # attribute names are state-dict keys: kept
        self.hidden_act = make_activation(act) if mlp else nn.Identity()
        self.drop = nn.Dropout(dropout, inplace=True)
        self.fc = nn.Linear(mlp or c2, nc)

    def features(self, x: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """(B, c1, H, W) (or (map, tokens (B, M, d)) with ``token_dim``) -> pooled features (B, mlp or c2), before
        dropout and the last Linear."""
        token_dim = getattr(self, "token_dim", 0)  # Classifiers pickled before token_dim existed have none
        if token_dim:
            x, tokens = x
            token0 = self.bridge(x, tokens)[:, 0]  # (B, d)
        if self.conv is not None:
            x = self.conv(x)
        x = self.pool(x).flatten(1)
        if token_dim:  # the official head applies h-swish to the pooled map features before joining token 0
            pooled_act = getattr(self, "pooled_act", None)
            x = torch.cat((pooled_act(x) if pooled_act is not None else x, token0), 1)
        if self.hidden is not None:
            x = self.hidden(x)
            x = self.hidden_act(self._hidden_norm(x) if token_dim else x)
        return x

    def _hidden_norm(self, x: torch.Tensor) -> torch.Tensor:
        """The Mobile-Former head's BatchNorm1d; a training batch of one sample (a dataset's last batch) has no batch
        statistics, so it is normalised with the running ones instead of failing."""
        bn = self.hidden_bn
        if bn.training and x.shape[0] == 1:
            return nn.functional.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        return bn(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        logits = self.fc(self.drop(self.features(x)))  # (B, nc)
        if self.training:
            return logits
        probs = logits.softmax(1)
        # Ultralytics' exporter sets ``export`` on its own Classify only; exports trace, so tracing means export here
        exporting = self.export or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
        return probs if exporting else (probs, logits)


__all__ = ["Classifier"]
