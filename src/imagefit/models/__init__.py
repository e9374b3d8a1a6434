"""Models: backbone registry, heads, classifier."""

from .heads import Head, ImageClassifier, loss_fn, probabilities
from .registry import (
    BackboneSpec,
    create_backbone,
    create_model,
    get_spec,
    list_backbones,
    register_backbone,
    weights_available,
)

__all__ = [
    "BackboneSpec",
    "Head",
    "ImageClassifier",
    "create_backbone",
    "create_model",
    "get_spec",
    "list_backbones",
    "loss_fn",
    "probabilities",
    "register_backbone",
    "weights_available",
]
