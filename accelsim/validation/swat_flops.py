"""SWAT FLOP accounting on ImageNet ResNet-50 and WRN-50-2 shapes (batch 1, 224x224).

Layer lists are built here from the architectures (He et al. 2016 Table 1, torchvision's
ResNet "v1.5" with the stride on the 3x3 conv of each bottleneck, which is what SWAT's ImageNet code
trains; WRN-50-2 = Zagoruyko & Komodakis 2016 bottleneck width x2, outputs unchanged).

Per-layer accounting (docs/sources.md "SWAT as implemented" and "SWAT FLOP accounting"): forward MACs F,
`fwd = F*d_w`, `dgrad = F*d_w`, `wgrad = F*d_a`; conv1 dense (d_w = d_a = 1: its input is the image,
which SWAT does not sparsify) and without a dgrad (nothing upstream needs the input gradient);
every other conv, including the 1x1 downsample, and the FC at d_w = d_a = 1 - s (SWAT-U).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layer:
    name: str
    kind: str                 # "conv" | "linear"
    c: int; k: int; r: int; s: int; p: int; q: int   # in ch, out ch, kernel, output size
    stride: int = 1

    @property
    def macs(self) -> int:
        """Forward MACs at batch 1: K*C*R*S*P*Q (linear: C*K)."""
        return self.k * self.c * self.r * self.s * self.p * self.q


def _out(h: int, r: int, stride: int, pad: int) -> int:
    return (h + 2 * pad - r) // stride + 1


def resnet_imagenet(blocks=(3, 4, 6, 3), width_factor: int = 1, image: int = 224) -> list[Layer]:
    """Conv/linear layers of a bottleneck ResNet (torchvision layout). width_factor=2: WRN-50-2."""
    layers = []
    h = _out(image, 7, 2, 3)                                   # conv1 7x7/2 pad 3 -> 112
    layers.append(Layer("conv1", "conv", 3, 64, 7, 7, h, h, 2))
    h = _out(h, 3, 2, 1)                                       # maxpool 3x3/2 pad 1 -> 56
    cin = 64
    for stage, (n, planes) in enumerate(zip(blocks, (64, 128, 256, 512)), start=1):
        width, cout = planes * width_factor, planes * 4
        for b in range(n):
            stride = 2 if (b == 0 and stage > 1) else 1
            ho = _out(h, 3, stride, 1)
            pre = f"layer{stage}.{b}"
            layers.append(Layer(pre + ".conv1", "conv", cin, width, 1, 1, h, h, 1))
            layers.append(Layer(pre + ".conv2", "conv", width, width, 3, 3, ho, ho, stride))
            layers.append(Layer(pre + ".conv3", "conv", width, cout, 1, 1, ho, ho, 1))
            if b == 0:
                layers.append(Layer(pre + ".downsample", "conv", cin, cout, 1, 1, ho, ho, stride))
            cin, h = cout, ho
    layers.append(Layer("fc", "linear", cin, 1000, 1, 1, 1, 1))
    return layers


MODELS = {"ResNet-50": dict(width_factor=1), "WRN-50-2": dict(width_factor=2)}


@dataclass(frozen=True)
class SwatFlops:
    model: str
    sparsity: float
    total_fwd_macs: int
    f1: float                  # conv1's share of forward MACs
    fwd_reduction: float       # 1 - sparse fwd / dense fwd
    train_reduction: float     # 1 - sparse (fwd+dgrad+wgrad) / dense (fwd+dgrad+wgrad)
    dense_train_macs: int
    sparse_train_macs: float


def swat_flops(model: str, sparsity: float, *, dense_downsample_passes: int = 0) -> SwatFlops:
    """SWAT-U accounting. ``dense_downsample_passes`` (0..3) counts that many of the three passes of
    each 1x1 downsample conv dense: only used to test a hypothesis about the README's counter."""
    layers = resnet_imagenet(**MODELS[model])
    d = 1.0 - sparsity
    dense_fwd = dense_train = 0
    sparse_fwd = sparse_train = 0.0
    for i, l in enumerate(layers):
        f = l.macs
        first = i == 0
        dw = da = 1.0 if first else d
        dense_fwd += f
        sparse_fwd += f * dw
        dense_train += f + (0 if first else f) + f           # fwd + dgrad + wgrad
        sparse_train += f * dw + (0 if first else f * dw) + f * da
        if l.name.endswith(".downsample"):
            sparse_train += dense_downsample_passes * f * (1.0 - d)
    f1 = layers[0].macs / dense_fwd
    return SwatFlops(model, sparsity, dense_fwd, f1, 1 - sparse_fwd / dense_fwd,
                     1 - sparse_train / dense_train, dense_train, sparse_train)


# SWAT README (github AamirRaihan/SWAT, README.md, "Unstructured SWAT / IMAGENET" table, column
# "Training FLOP ⬇ %", SWAT-U rows with weight = activation sparsity), read at commit 802f544.
README_TRAIN_REDUCTION = {("ResNet-50", 0.8): 76.1, ("ResNet-50", 0.9): 85.6,
                          ("WRN-50-2", 0.8): 78.6, ("WRN-50-2", 0.9): 88.4}
README_SOURCE = ("SWAT README (github.com/AamirRaihan/SWAT README.md @802f544, Unstructured SWAT, "
                 "IMAGENET table, SWAT-U, 'Training FLOP ⬇ %')")
# Tolerance fixed before computing: ±3.0 percentage points. Our count is conv/linear MACs only at
# exact target density; the README's counter is not published (its 'FLOP count' section is empty),
# and SWAT's top-k runs every 5 steps on ImageNet, between which density only approximates s.
README_TOL_PP = 3.0
