"""A tiny model pruned with torch.nn.utils.prune, recorded for one step (test_record, test_footprint).

A 1x1 conv (its mask's last dim is 1) and a linear layer, each l1_unstructured(amount=0.5): both
masks are saved for backward by MulBackward0 and must count as weight-side.
"""

from pathlib import Path


def record_pruned_step(path: Path) -> Path:
    import torch
    from torch import nn
    from torch.nn.utils import prune

    import accelsim

    class Pruned(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.fc = nn.Linear(16, 3)

        def forward(self, x):
            return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))

    torch.manual_seed(0)
    net = Pruned()
    prune.l1_unstructured(net.conv, "weight", amount=0.5)
    prune.l1_unstructured(net.fc, "weight", amount=0.5)
    with accelsim.record(net, path):
        net(torch.randn(2, 3, 2, 2)).sum().backward()
    return path
