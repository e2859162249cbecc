from .feature import ChannelWiseDivergence, FeatureMSELoss, PKDLoss
from .logit_kd import LogitKDLoss, flatten_logits

__all__ = [
    'ChannelWiseDivergence', 'FeatureMSELoss', 'PKDLoss', 'LogitKDLoss',
    'flatten_logits'
]
