"""Built-in models for ``accelsim record``: plain ``torch.nn`` (no torchvision dependency).

- ``resnet18-cifar``: He et al. 2016 ResNet-18 with the CIFAR stem used by SWAT's CIFAR code
  (3x3/1 conv, no max-pool), BasicBlocks 2-2-2-2 at 64/128/256/512 channels, 10 classes, 32x32.
- ``resnet50-imagenet``: ResNet-50 (7x7/2 stem + 3x3/2 max-pool, Bottlenecks 3-4-6-3, expansion 4,
  stride on the 3x3 conv as in torchvision "v1.5"), 1000 classes, 224x224 by default.
- ``vgg16-cifar``: VGG-16 configuration D with batch norm after every conv, 512 -> 10 classifier.
- ``transformer-block``: one pre-norm encoder block (d_model 256, 4 heads, FFN 1024) over 4x4
  image patches (32x32 image -> 64 tokens), q/k/v/out projections as separate nn.Linear so N:M and
  SWAT see them, mean-pooled tokens -> 10 classes. ASSUMPTION: a small ViT-style configuration of
  our own (the layer shapes of Vaswani et al. 2017 at reduced width), not a published model.
- ``gpt-block``: two GPT-2-style pre-norm decoder blocks (Radford et al. 2019 layout: fused qkv
  nn.Linear, causal ``F.scaled_dot_product_attention``, output projection, 4x GELU MLP) at d_model
  128, 4 heads, over the same 4x4 image patches (64 tokens), the last token's output -> 10 classes
  (causal: it is the one that sees every token). ASSUMPTION: a small configuration of our own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from accelsim.errors import AccelsimError

MODELS = ("resnet18-cifar", "resnet50-imagenet", "vgg16-cifar", "transformer-block", "gpt-block")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    default_image_size: int
    min_image_size: int
    num_classes: int
    image_multiple: int = 1       # image size must be a multiple of this


SPECS = {
    "resnet18-cifar": ModelSpec("resnet18-cifar", 32, 8, 10),
    "resnet50-imagenet": ModelSpec("resnet50-imagenet", 224, 32, 1000),
    "vgg16-cifar": ModelSpec("vgg16-cifar", 32, 32, 10, 32),      # five 2x2 max-pools
    "transformer-block": ModelSpec("transformer-block", 32, 4, 10, 4),
    "gpt-block": ModelSpec("gpt-block", 32, 4, 10, 4),
}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        out = planes * 4
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample = None
        if stride != 1 or cin != out:
            self.downsample = nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    def __init__(self, block, layers: tuple[int, ...], num_classes: int, imagenet_stem: bool):
        super().__init__()
        if imagenet_stem:
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            self.maxpool = None
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, planes, (1 if i == 0 else 2) if j == 0 else 1))
                cin = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        if self.maxpool is not None:
            x = self.maxpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG(nn.Module):
    def __init__(self, num_classes: int = 10, image_size: int = 32):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in _VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, 1, 1, bias=False), nn.BatchNorm2d(v), nn.ReLU(inplace=False)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def patch_embedding(model: nn.Module, image_size: int, patch: int, d_model: int) -> None:
    """Give ``model`` a ViT-style patch embedding: ``embed`` (a linear map of each p x p RGB patch)
    and a learned position embedding ``pos`` (std 0.02, as in ViT/GPT-2). Attributes, not a
    submodule, so layer names stay "embed"."""
    model.patch = patch
    model.tokens = (image_size // patch) ** 2
    model.embed = nn.Linear(3 * patch * patch, d_model)
    model.pos = nn.Parameter(torch.zeros(1, model.tokens, d_model))
    nn.init.normal_(model.pos, std=0.02)


def patchify(img: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, tokens, C*p*p): non-overlapping p x p patches, row-major (ViT-style)."""
    b, c, hh, ww = img.shape
    return img.reshape(b, c, hh // p, p, ww // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, c * p * p)


class MultiHeadSelfAttention(nn.Module):
    """Explicit q/k/v/out projections (nn.Linear) and two batched matmuls per head group."""

    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x):
        b, t, d = x.shape
        h, dh = self.heads, d // self.heads

        def split(z):  # (B, T, D) -> (B*H, T, Dh)
            return z.reshape(b, t, h, dh).transpose(1, 2).reshape(b * h, t, dh)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        att = torch.softmax(torch.bmm(q, k.transpose(1, 2)) / math.sqrt(dh), dim=-1)
        y = torch.bmm(att, v).reshape(b, h, t, dh).transpose(1, 2).reshape(b, t, d)
        return self.out(y)


class TransformerBlock(nn.Module):
    def __init__(self, image_size: int = 32, patch: int = 4, d_model: int = 256, heads: int = 4,
                 ffn: int = 1024, num_classes: int = 10):
        super().__init__()
        patch_embedding(self, image_size, patch, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = MultiHeadSelfAttention(d_model, heads)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn1 = nn.Linear(d_model, ffn)
        self.ffn2 = nn.Linear(ffn, d_model)
        self.norm_out = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, img):
        x = self.embed(patchify(img, self.patch)) + self.pos
        x = x + self.attn(self.norm1(x))
        x = x + self.ffn2(F.gelu(self.ffn1(self.norm2(x))))
        return self.head(self.norm_out(x).mean(dim=1))


class CausalSelfAttention(nn.Module):
    """GPT-2's attention: one fused qkv projection, causal SDPA over heads, output projection."""

    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class GPTBlock(nn.Module):
    def __init__(self, d_model: int, heads: int, ffn: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, ffn)
        self.fc2 = nn.Linear(ffn, d_model)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class GPTBlocks(nn.Module):
    """``gpt-block``: patch embedding, ``blocks`` GPT blocks, final norm, last token -> classes."""

    def __init__(self, image_size: int = 32, patch: int = 4, d_model: int = 128, heads: int = 4,
                 ffn: int = 512, blocks: int = 2, num_classes: int = 10):
        super().__init__()
        patch_embedding(self, image_size, patch, d_model)
        self.blocks = nn.Sequential(*(GPTBlock(d_model, heads, ffn) for _ in range(blocks)))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, img):
        x = self.blocks(self.embed(patchify(img, self.patch)) + self.pos)
        return self.head(self.ln_f(x)[:, -1])


def resolve_image_size(name: str, image_size: int | None) -> int:
    """The input resolution a model will use; raises AccelsimError for an unusable one."""
    if name not in SPECS:
        raise AccelsimError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    spec = SPECS[name]
    if image_size is None:
        return spec.default_image_size
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < spec.min_image_size \
            or image_size % spec.image_multiple:
        need = f"an integer >= {spec.min_image_size}"
        if spec.image_multiple > 1:
            need += f" and a multiple of {spec.image_multiple}"
        raise AccelsimError(f"model {name}: image size must be {need}, got {image_size!r}")
    return image_size


def build_model(name: str, image_size: int | None = None) -> nn.Module:
    """A freshly initialised model (seed torch first for reproducible weights)."""
    size = resolve_image_size(name, image_size)
    if name == "resnet18-cifar":
        return ResNet(BasicBlock, (2, 2, 2, 2), 10, imagenet_stem=False)
    if name == "resnet50-imagenet":
        return ResNet(Bottleneck, (3, 4, 6, 3), 1000, imagenet_stem=True)
    if name == "vgg16-cifar":
        return VGG(10, size)
    if name == "gpt-block":
        return GPTBlocks(image_size=size)
    return TransformerBlock(image_size=size)
