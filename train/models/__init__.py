"""tseg.train.models: the model zoo behind one registry.

Importing this package registers every family.
"""

from tseg.train.models import (  # noqa: F401  (each module registers its builders)
    deconvnet,
    deeplabv1,
    deeplabv2,
    deeplabv3,
    deeplabv3plus,
    fcn,
)
from tseg.train.models.registry import check_model_name, get_model, list_models, register_model

__all__ = ["check_model_name", "get_model", "list_models", "register_model"]
