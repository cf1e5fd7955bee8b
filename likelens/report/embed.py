"""JSON embedded in an HTML page as data (``<script type="application/json">``)."""

from __future__ import annotations

import json
from typing import Any


def script_json(data: Any, *, sort_keys: bool = False) -> str:
    """Compact JSON that is safe inside ``<script type="application/json">``: ``<``, ``>`` and
    ``&`` are escaped, so no text from the log can close the element or open another. It
    parses back to the same value (the brand audit's signature is checked on that value)."""
    text = json.dumps(data, sort_keys=sort_keys, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
