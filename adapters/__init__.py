"""Adapters that make pretrained policies speak the `expo_sdk.BasePolicy` protocol.

Installed as `expo_sdk.adapters`. Built-in adapters register under the entry-point group
"expo_sdk.adapters"; third-party packages add theirs the same way.
"""

from .ddpm import DDPMPolicy

__all__ = ["DDPMPolicy"]
