"""Models: 2D frame-averaging ResNets, 3D-ResNets and 3D-ResNeXts, external weights.

``create_model(name, num_classes, **options)`` builds any name of ``list_models()``;
every model follows :class:`~momentlens.models.base.VideoClassifier`.
"""

from momentlens.models.base import VideoClassifier, set_finetune
from momentlens.models.registry import create_model, list_models, register_model
from momentlens.models.spec import InputSpec
from momentlens.models.weights import LoadReport, inflate_2d_to_3d, load_pretrained

__all__ = [
    "InputSpec", "LoadReport", "VideoClassifier", "create_model", "inflate_2d_to_3d",
    "list_models", "load_pretrained", "register_model", "set_finetune",
]
