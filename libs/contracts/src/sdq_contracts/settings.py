"""The one way every sdq service validates its environment.

Each service declares a frozen pydantic-settings class in its own ``settings.py`` (the only
module that reads the environment) and loads it through :func:`load`, which names each bad
variable in a :class:`SettingsError`. Imports pydantic only (the settings classes themselves
come from pydantic-settings in the services).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from pydantic import AliasChoices, BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class SettingsError(ValueError):
    """Invalid environment; ``errors`` lists ``(VARIABLE, message)`` pairs."""

    def __init__(self, service: str, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        lines = "\n".join(f"  {name}: {msg}" for name, msg in errors)
        super().__init__(f"invalid {service} environment:\n{lines}")


def load(
    model: type[M],
    environ: Mapping[str, str] | None,
    *,
    service: str,
    prefix: str = "SDQ_",
    plain: Iterable[str] = (),
) -> M:
    """``model()`` reading the process environment (``environ`` None), or validated from
    ``environ``: ``<prefix>FOO_BAR`` fills field ``foo_bar``; the ``plain`` variables (standard
    names such as ``AWS_REGION``, declared as validation aliases) are passed as they are."""
    try:
        if environ is None:
            return model()
        values: dict[str, object] = {
            k[len(prefix) :].lower(): v for k, v in environ.items() if k.startswith(prefix)
        }
        values |= {name: environ[name] for name in plain if name in environ}
        return model.model_validate(values)
    except ValidationError as exc:
        raise SettingsError(
            service, [_variable(err, model, prefix) for err in exc.errors()]
        ) from None


def _variable(err: Mapping[str, Any], model: type[BaseModel], prefix: str) -> tuple[str, str]:
    loc, msg = err["loc"], str(err["msg"]).removeprefix("Value error, ")
    field = str(loc[0]) if loc else ""
    if not field:
        return "(settings)", msg
    info = model.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, str):
        return alias, msg
    if isinstance(alias, AliasChoices):  # the first name is the documented one
        return str(alias.choices[0]), msg
    return (field if field.isupper() else f"{prefix}{field.upper()}"), msg
