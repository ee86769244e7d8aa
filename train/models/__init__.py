"""tseg.train.models: the model zoo behind one registry.

Importing this package registers every family.
"""

from tseg.train.models import deeplabv3  # noqa: F401  (registers its builders)
from tseg.train.models.registry import check_model_name, get_model, list_models, register_model

__all__ = ["check_model_name", "get_model", "list_models", "register_model"]
