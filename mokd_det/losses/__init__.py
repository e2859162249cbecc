from .feature import ChannelWiseDivergence, FeatureMSELoss, PKDLoss
from .logit_kd import LogitKDLoss, flatten_logits, probs_to_logits
from .query_kd import QueryKDLoss, match_queries, match_query_batch
from .temperature import MetaTemperature

__all__ = [
    'ChannelWiseDivergence', 'FeatureMSELoss', 'PKDLoss', 'LogitKDLoss',
    'flatten_logits', 'MetaTemperature', 'probs_to_logits', 'QueryKDLoss',
    'match_queries', 'match_query_batch'
]
