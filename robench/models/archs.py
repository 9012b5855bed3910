"""Small architectures for the offline zoo, registered into timm.

robench keeps no model registry of its own (docs/architecture.md, principle 3): a card names an
architecture the way it would name any timm model, and these small networks are added to timm's
registry so that ``timm.create_model("mnist_cnn")`` works like ``timm.create_model("resnet50")``.
Importing this module registers them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models import register_model
from timm.models.vision_transformer import VisionTransformer
from torch import nn


class MnistMLP(nn.Module):
    """Fully connected baseline: no weight sharing across positions, so nothing in the architecture
    makes it tolerate a shifted digit (the contrast the translation seeds draw against the CNN)."""

    def __init__(
        self, num_classes: int = 10, in_chans: int = 1, img_size: int = 28, hidden: int = 256, depth: int = 2
    ):
        super().__init__()
        self.num_classes = num_classes
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_chans * img_size * img_size
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)


class MaxBlurPool(nn.Module):
    """Zhang 2019's antialiased max-pool: max over 2x2 windows at stride 1, then a fixed binomial blur
    ([1,3,3,1] outer itself, normalised, per channel, reflect padding) subsampled at stride 2.

    A plain stride-2 max-pool aliases: a one-pixel shift of the input can change which pixel each
    window keeps, so the output is not a shifted copy. Blurring before subsampling (the textbook
    anti-aliasing filter) makes the features vary smoothly with the shift. The blur is a constant,
    not a parameter, and is not saved: a card's weights hold exactly what ``mnist_cnn``'s would.
    Output size ceil(n / 2), like ``MaxPool2d(2)`` on the even sizes the zoo uses (28 -> 14 -> 7).
    """

    def __init__(self, channels: int):
        super().__init__()
        taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
        kernel = taps[:, None] * taps[None, :]
        kernel = (kernel / kernel.sum()).expand(channels, 1, 4, 4).clone()
        self.register_buffer("kernel", kernel, persistent=False)

    def forward(self, x):
        x = F.max_pool2d(x, 2, stride=1)
        x = F.pad(x, (1, 2, 1, 2), mode="reflect")  # Zhang's padding for a 4-tap filter
        return F.conv2d(x, self.kernel, stride=2, groups=x.shape[1])


class MnistCNN(nn.Module):
    """Two 3x3 conv blocks and a small head: ~0.2 M parameters (width 16), fast enough that the
    775-transform grid over 1,000 test images runs in seconds on two CPU cores.

    ``antialias`` swaps each max-pool for :class:`MaxBlurPool` and changes nothing else (same widths,
    same parameters), so that ``mnist_cnn_aa`` against ``mnist_cnn`` measures the blur alone."""

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        width: int = 16,
        hidden: int = 128,
        antialias: bool = False,
    ):
        super().__init__()
        self.num_classes = num_classes
        pool = MaxBlurPool if antialias else (lambda channels: nn.MaxPool2d(2))
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, padding=1),
            nn.ReLU(inplace=True),
            pool(width),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(inplace=True),
            pool(2 * width),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * 7 * 7, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.head(self.features(x))


class P4Conv(nn.Module):
    """A p4 group convolution (Cohen & Welling 2016): equivariant to translations and to rotations of the
    image by multiples of 90 degrees, exactly, because a 90-degree rotation maps the pixel grid onto itself.

    Features are ``(N, channels * 4, H, W)``, channel ``c * 4 + r`` holding feature ``c`` at orientation
    ``r``, so ReLU and even-size max-pooling keep their meaning and stay equivariant. The layer learns one
    filter bank ``(out, in, g, k, k)``; output orientation ``r`` uses it rotated by ``r`` quarter turns
    (``torch.rot90``) with its input-orientation axis rolled by ``r``. Rotating the input a quarter turn
    then rotates every feature map a quarter turn and moves orientation ``r`` to ``r + 1``.
    ``lifting=True`` (``g = 1``) reads a plain image (the roll of a one-orientation axis does nothing);
    otherwise ``g = 4``. The bias is one per feature, shared by its four orientations.

    Own code rather than escnn/e2cnn: escnn needs py3nj, which has no wheel and needs a Fortran compiler to
    build; e2cnn (its unmaintained predecessor) would add a run-time dependency for every user of the zoo,
    while p4 needs only ``rot90`` and ``roll``. The filters are plain tensors, so the weights are an ordinary
    safetensors state dict.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, lifting: bool = False):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError("P4Conv needs an odd kernel_size: its zero padding must be symmetric")
        self.padding = kernel_size // 2
        orientations = 1 if lifting else 4
        shape = (out_channels, in_channels, orientations, kernel_size, kernel_size)
        self.weight = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.empty(out_channels))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # nn.Conv2d's initialisation, fan-in in*g*k*k
        bound = 1 / (in_channels * orientations * kernel_size**2) ** 0.5
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        w = self.weight
        bank = torch.stack([torch.rot90(torch.roll(w, r, dims=2), r, dims=(-2, -1)) for r in range(4)], dim=1)
        out, _, in_channels, orientations, k, _ = bank.shape
        bank = bank.reshape(out * 4, in_channels * orientations, k, k)
        return F.conv2d(x, bank, self.bias.repeat_interleave(4), padding=self.padding)


def p4_invariant_pool(x):
    """Max over the four orientations and over all positions: ``(N, C * 4, H, W) -> (N, C)``. A rotated
    input permutes the orientations and rotates the maps, so this maximum is exactly invariant to it."""
    return x.unflatten(1, (-1, 4)).amax(dim=(2, 3, 4))


class MnistP4CNN(nn.Module):
    """A p4 CNN for 28x28 digits (Cohen & Welling 2016's P4CNN, scaled to the zoo): a lifting layer and
    two group convolutions (3x3, ``width``, ``2 width``, ``4 width`` features at 4 orientations each,
    max-pooling 28 -> 14 -> 7), :func:`p4_invariant_pool`, and a small head. The logits are exactly
    invariant to rotations by multiples of 90 degrees (and to nothing else exactly: the spatial grid's
    rotations of up to 30 degrees are not in the group).

    Width 8: ~30 k parameters (Cohen & Welling's P4CNN had ~25 k) and ~7 M multiply-adds per image, four
    times ``mnist_cnn``'s 1.8 M. Its parameter count (0.21 M) is not matched: those sit in a dense layer
    over the 7x7 map, which an invariant network replaces by a global pool, and every group convolution
    costs four orientations in and out; at width 16 (0.1 M parameters, 15x ``mnist_cnn``'s compute) the
    775-transform grid and AutoAttack took too long on the CPUs the zoo is evaluated on.

    Invariance to a half turn is a price on MNIST: a 6 and a 9 rotated by 180 degrees look alike, and this
    network must give them the same logits."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, width: int = 8, hidden: int = 128):
        super().__init__()
        self.num_classes = num_classes
        self.features = nn.Sequential(
            P4Conv(in_chans, width, lifting=True),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            P4Conv(width, 2 * width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            P4Conv(2 * width, 4 * width),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(
            nn.Linear(4 * width, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.head(p4_invariant_pool(self.features(x)))


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


@register_model
def mnist_cnn_aa(pretrained: bool = False, **kwargs) -> MnistCNN:
    """``mnist_cnn`` with antialiased pooling (Zhang 2019's MaxBlurPool; :class:`MaxBlurPool`)."""
    if pretrained:
        raise ValueError("mnist_cnn_aa has no pretrained tag: its weights come from a model card")
    return MnistCNN(antialias=True, **_without_timm_kwargs(kwargs))


@register_model
def mnist_p4cnn(pretrained: bool = False, **kwargs) -> MnistP4CNN:
    """p4 group-equivariant CNN for 28x28 grey images, invariant to quarter turns (:class:`MnistP4CNN`)."""
    if pretrained:
        raise ValueError("mnist_p4cnn has no pretrained tag: its weights come from a model card")
    return MnistP4CNN(**_without_timm_kwargs(kwargs))


@register_model
def mnist_mlp(pretrained: bool = False, **kwargs) -> MnistMLP:
    """Small MLP for 28x28 grey images (the zoo's fully connected baseline, ~0.27 M parameters)."""
    if pretrained:
        raise ValueError("mnist_mlp has no pretrained tag: its weights come from a model card")
    return MnistMLP(**_without_timm_kwargs(kwargs))


@register_model
def mnist_vit(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """Small ViT for 28x28 grey images: timm's own VisionTransformer with 7x7 patches (16 tokens), width
    64, depth 4, 4 heads (~0.14 M parameters); any of these can be overridden by the card's arch_kwargs.

    7x7 rather than 4x4 patches: on mnist5k (30 epochs, standard recipe) 4x4 patches trained 2.2x slower
    and reached 93.4% clean test accuracy against 94.5%."""
    if pretrained:
        raise ValueError("mnist_vit has no pretrained tag: its weights come from a model card")
    args = dict(img_size=28, patch_size=7, in_chans=1, embed_dim=64, depth=4, num_heads=4, mlp_ratio=2.0)
    args.update(_without_timm_kwargs(kwargs))
    return VisionTransformer(**args)
