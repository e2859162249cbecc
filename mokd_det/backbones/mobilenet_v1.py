"""MobileNetV1 (Howard et al., "MobileNets: Efficient Convolutional Neural
Networks for Mobile Vision Applications", arXiv 1704.04861, 2017).

mmpretrain 1.2 ships MobileNetV2/V3 but not V1, the student of DOT's
ImageNet ResNet-50 -> MobileNetV1 pair. This is the paper's Table 1 network
(a 3x3 stem, then 13 depthwise-separable blocks, each a 3x3 depthwise and a
1x1 pointwise convolution with BN and ReLU), as in torchdistill and
mdistiller's ImageNet MobileNetV1, for mmpretrain's ``ImageClassifier``.
"""
from typing import Sequence, Tuple

from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import Tensor, nn

# (output channels, stride) of the 13 depthwise-separable blocks
_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
           (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2),
           (1024, 1))
# the last block of each resolution: the stages out_indices refer to
_STAGE_ENDS = (0, 2, 4, 10, 12)


@MODELS.register_module()
class MobileNetV1(BaseModule):
    """MobileNetV1 backbone.

    Args:
        widen_factor: Width multiplier alpha of the paper. Defaults to 1.0.
        out_indices: Stages (0-4: strides 2, 4, 8, 16, 32) to output.
            Defaults to (4, ): the 1024-channel final map.
        norm_cfg: Normalisation layer. Defaults to BN.
        init_cfg: Initialisation. Defaults to Kaiming for convolutions and
            constant 1 for norms.
    """

    def __init__(self,
                 widen_factor: float = 1.0,
                 out_indices: Sequence[int] = (4, ),
                 norm_cfg: dict = dict(type='BN'),
                 init_cfg=(dict(type='Kaiming', layer='Conv2d'),
                           dict(type='Constant', val=1,
                                layer=['_BatchNorm', 'GroupNorm']))):
        super().__init__(init_cfg=list(init_cfg) if init_cfg else None)
        if not set(out_indices) <= set(range(5)):
            raise ValueError(f'out_indices must be in 0..4, got {out_indices}')
        self.out_indices = tuple(out_indices)
        act = dict(type='ReLU')
        channels = int(32 * widen_factor)
        self.stem = ConvModule(3, channels, 3, stride=2, padding=1,
                               norm_cfg=norm_cfg, act_cfg=act)
        layers = []
        for out, stride in _BLOCKS:
            out = int(out * widen_factor)
            layers.append(nn.Sequential(
                ConvModule(channels, channels, 3, stride=stride, padding=1,
                           groups=channels, norm_cfg=norm_cfg, act_cfg=act),
                ConvModule(channels, out, 1, norm_cfg=norm_cfg,
                           act_cfg=act)))
            channels = out
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        x = self.stem(x)
        outs = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in _STAGE_ENDS and _STAGE_ENDS.index(i) in self.out_indices:
                outs.append(x)
        return tuple(outs)
