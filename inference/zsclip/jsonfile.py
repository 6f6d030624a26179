"""Reading a JSON object from a file, with one clear error of the caller's type when it is not one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Type, Union


def read_json_object(path: Union[str, Path], error: Type[Exception], what: str = "JSON") -> Dict[str, Any]:
    """The JSON object in `path`.

    Raises:
        error: "PATH: unreadable WHAT (...)" for a missing/undecodable file, "PATH: WHAT must be a JSON
            object" for any other JSON value.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: unreadable {what} ({exc})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: {what} must be a JSON object")
    return data
