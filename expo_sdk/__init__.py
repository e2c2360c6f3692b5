"""expo-sdk: fine-tune any pretrained expressive policy with online RL (EXPO).

    from expo_sdk import Finetuner, FinetuneConfig
    tuner = Finetuner(base=my_policy, config=FinetuneConfig(beta=0.05, utd_ratio=20))
    result = tuner.run(env, total_steps=100_000, offline_data=demos)
"""

from .callbacks import Callback
from .config import CriticConfig, EditHeadConfig, FinetuneConfig, ReplayConfig, SelectorConfig
from .critic import CriticEnsemble
from .edit_head import EditHead
from .evaluation import EvalResult, evaluate
from .finetuned import FinetunedPolicy
from .finetuner import Finetuner, FinetuneResult
from .loading import load_from_hub, load_policy, load_weights
from .normalization import Normalizer
from .policy import BasePolicy, PolicySpec, check_policy
from .pretrain import train_imitation
from .replay import OfflineDataset
from .rollout import check_env
from .selector import OnTheFlySelector

__version__ = "0.1.0"

__all__ = [
    "BasePolicy", "Callback", "CriticConfig", "CriticEnsemble", "EditHead", "EditHeadConfig",
    "EvalResult", "FinetuneConfig", "FinetuneResult", "FinetunedPolicy", "Finetuner", "Normalizer",
    "OfflineDataset", "OnTheFlySelector", "PolicySpec", "ReplayConfig", "SelectorConfig",
    "check_env", "check_policy", "evaluate", "load_from_hub", "load_policy", "load_weights", "train_imitation",
]
