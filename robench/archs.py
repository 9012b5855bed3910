"""Small architectures for the offline zoo, registered into timm.

robench keeps no model registry of its own (architecture.md, principle 3): a card names an
architecture the way it would name any timm model, and these small networks are added to timm's
registry so that ``timm.create_model("mnist_cnn")`` works like ``timm.create_model("resnet50")``.
Importing this module registers them.
"""

from __future__ import annotations

from torch import nn
from timm.models import register_model


class MnistCNN(nn.Module):
    """Two 3x3 conv blocks and a small head: ~0.2 M parameters (width 16), fast enough that the
    775-transform grid over 1,000 test images runs in seconds on two CPU cores."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, width: int = 16, hidden: int = 128):
        super().__init__()
        self.num_classes = num_classes
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * 7 * 7, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.head(self.features(x))


def _without_timm_kwargs(kwargs: dict) -> dict:
    """timm's factory passes its own bookkeeping arguments; drop those, keep the rest strict."""
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    return kwargs


@register_model
def mnist_cnn(pretrained: bool = False, **kwargs) -> MnistCNN:
    """Small CNN for 28x28 grey images (the zoo's convolutional baseline)."""
    if pretrained:
        raise ValueError("mnist_cnn has no pretrained tag: its weights come from a model card")
    return MnistCNN(**_without_timm_kwargs(kwargs))
