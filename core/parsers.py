"""JSON request bodies with numbers as Decimal, nested at most MAX_JSON_DEPTH levels."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from core import json_depth


class DecimalJSONParser(JSONParser):
    """DRF's JSON parser with `parse_float=Decimal` (and no NaN or Infinity), refusing a body
    nested deeper than MAX_JSON_DEPTH before parsing it: `json.loads` recurses once per level,
    and so does everything the body is handed to, up to the pickling in a Celery worker."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = stream.read().decode(encoding)
            json_depth.check_raw(text)
            return json.loads(text, parse_float=Decimal, parse_constant=_refuse)
        except json_depth.TooDeep as exc:
            raise ParseError(
                f"JSON parse error: the body is nested more than {exc.limit} levels deep"
            ) from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"JSON parse error: {exc}") from None
        except RecursionError:  # the scan above should make this unreachable; never a 500
            raise ParseError("JSON parse error: the body is nested too deeply") from None


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")
