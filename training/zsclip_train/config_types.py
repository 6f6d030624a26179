"""Type checks for the scalar fields of the frozen config dataclasses, so a TOML value of the wrong type
(`lock_image = "no"`, `text_unlocked_layers = 1.5`) is a one-line ConfigError naming the key, not a silently truthy
string or a traceback deep inside model building."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Tuple

# field annotations as written (the modules use `from __future__ import annotations`) -> accepted types, wording
SCALAR_TYPES: Dict[str, Tuple[Tuple[type, ...], str]] = {
    "bool": ((bool,), "true or false"),
    "int": ((int,), "an integer"),
    "float": ((int, float), "a number"),
    "str": ((str,), "a string"),
    "Optional[str]": ((str, type(None)), "a string"),
    "Optional[int]": ((int, type(None)), "an integer"),
}


def type_error(obj: Any, prefix: str = "") -> str:
    """The first scalar field of dataclass `obj` whose value has the wrong type, as an error message; "" if none."""
    for f in dataclasses.fields(obj):
        rule = SCALAR_TYPES.get(f.type if isinstance(f.type, str) else getattr(f.type, "__name__", ""))
        if rule is None:
            continue
        value = getattr(obj, f.name)
        types, wording = rule
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            return f"{prefix}{f.name} must be {wording}, got {value!r}"
    return ""
