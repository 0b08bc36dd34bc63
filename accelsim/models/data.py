"""Real images for recording: scikit-learn's bundled handwritten digits (no download).

``sklearn.datasets.load_digits``: 1797 8x8 grey images (values 0..16) with 10 real labels
(Alpaydin & Kaynak, UCI). Each image is bilinearly upsampled to the model's resolution, replicated
to 3 channels and normalised by the data set's mean and standard deviation. Batches walk a
seeded permutation, reshuffled every epoch, so a run is reproducible from its seed.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


class DigitsData:
    def __init__(self, image_size: int, seed: int = 0):
        from sklearn.datasets import load_digits

        d = load_digits()
        img = torch.from_numpy(d.images.astype(np.float32) / 16.0)       # (1797, 8, 8) in [0, 1]
        self.mean = float(img.mean())
        self.std = float(img.std())
        self.images = img
        self.labels = torch.from_numpy(d.target.astype(np.int64))
        self.image_size = image_size
        self._gen = torch.Generator().manual_seed(seed)
        self._perm = torch.randperm(len(self.labels), generator=self._gen)
        self._pos = 0

    def __len__(self) -> int:
        return len(self.labels)

    def _indices(self, batch: int) -> torch.Tensor:
        out = []
        while batch > 0:
            if self._pos >= len(self._perm):
                self._perm = torch.randperm(len(self.labels), generator=self._gen)
                self._pos = 0
            take = min(batch, len(self._perm) - self._pos)
            out.append(self._perm[self._pos:self._pos + take])
            self._pos += take
            batch -= take
        return torch.cat(out)

    def next_batch(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(images (B, 3, S, S) float32, labels (B,) int64)."""
        idx = self._indices(batch)
        x = (self.images[idx] - self.mean) / self.std
        x = x.unsqueeze(1)
        if self.image_size != 8:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return x.expand(-1, 3, -1, -1).contiguous(), self.labels[idx]
