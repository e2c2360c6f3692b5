"""`HubMixin`: huggingface_hub's PyTorchModelHubMixin with strict weight loading.

The upstream mixin loads with `strict=False`, so a weights file with missing or extra
tensors (another architecture, a damaged upload) would load silently and leave those
parameters at their random initial values. Every expo-sdk model loads strictly; pass
`strict=False` to `from_pretrained` to opt out.
"""

from __future__ import annotations

from huggingface_hub import PyTorchModelHubMixin


class HubMixin(PyTorchModelHubMixin):
    @classmethod
    def _from_pretrained(cls, *, strict: bool = True, **kwargs):
        return super()._from_pretrained(strict=strict, **kwargs)
