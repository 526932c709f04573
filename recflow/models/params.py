"""Each registered model's config params, derived from its ``__init__`` signature.

The model class stays the single source of hyperparameters and defaults; the params model only
validates them (unknown keys, wrong types) and adds the ``name`` discriminator. It lives beside
the registry, so ``recflow.experiments.config`` reads the models' params without the models reading the
config back.
"""

from __future__ import annotations

import inspect
import typing
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from recflow.models import MODELS

#: upper bounds of a model's width parameters (embedding sizes, factors, SVD components)
SIZE_LIMITS = {"dim": 4096, "factors": 4096, "n_components": 4096}


class StrictParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def params_model(cls: type) -> type[BaseModel]:
    """A strict pydantic model of a recommender's ``__init__`` signature (its defaults, its types)."""
    hints = typing.get_type_hints(cls.__init__)
    fields: dict[str, Any] = {"name": (Literal[cls.name], cls.name)}
    for pname, param in inspect.signature(cls.__init__).parameters.items():
        if pname == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = ... if param.default is param.empty else param.default
        hint = hints.get(pname, Any)
        if pname in SIZE_LIMITS and hint is int:  # a typo'd width is a config error, not an out-of-memory minutes in
            hint = Annotated[int, Field(ge=1, le=SIZE_LIMITS[pname])]
        fields[pname] = (hint, Field(default, **getattr(cls, "param_bounds", {}).get(pname, {})))
    title = "".join(part.capitalize() for part in cls.name.split("_")) + "Params"
    return create_model(title, __base__=StrictParams, __doc__=(cls.__doc__ or "").strip().split("\n")[0], **fields)


MODEL_PARAMS: dict[str, type[BaseModel]] = {name: params_model(cls) for name, cls in MODELS.items()}
PopularParams = MODEL_PARAMS["popular"]
BiasParams = MODEL_PARAMS["bias"]
ModelParams = Annotated[Union[tuple(MODEL_PARAMS.values())], Field(discriminator="name")]
