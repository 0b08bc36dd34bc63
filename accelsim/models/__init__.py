"""Built-in model zoo and data for ``accelsim record`` (needs PyTorch and scikit-learn)."""

from accelsim.models.zoo import MODELS, build_model, resolve_image_size

__all__ = ["MODELS", "build_model", "resolve_image_size"]
