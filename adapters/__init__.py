"""Adapters that make pretrained policies speak the `expo_sdk.BasePolicy` protocol.

Installed as `expo_sdk.adapters`. Built-in adapters register under the entry-point group
"expo_sdk.adapters"; third-party packages add theirs the same way.

Optional: `expo_sdk.adapters.lerobot` (entry point "lerobot_diffusion") wraps LeRobot's
DiffusionPolicy; it needs LeRobot (`make install-lerobot`) and is not imported here, so
this package imports without LeRobot.
"""

from .consistency import ConsistencyPolicy
from .ddpm import DDPMPolicy
from .flow_matching import FlowMatchingPolicy
from .module import ModulePolicy, from_module

__all__ = ["ConsistencyPolicy", "DDPMPolicy", "FlowMatchingPolicy", "ModulePolicy", "from_module"]
