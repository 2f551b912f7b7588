"""`where=`: which rows a search may return, by the metadata stored with them.

    {"section": "utils"}                      equality (a list of such pairs: all must hold)
    {"year": {"gte": 2020, "lt": 2024}}       ranges: gt, gte, lt, lte
    {"section": {"in": ["utils", "libs"]}}    membership; "ne" for inequality

A row without the field, or whose value cannot be compared with the bound (a string against a
number), does not match. Fields are those named at index time (`--metadata-field`).
"""

from __future__ import annotations

import operator
from typing import Any, Iterable

import numpy as np

from ..errors import ArrError

_COMPARE = {"eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "gte": operator.ge, "lt": operator.lt,
            "lte": operator.le}
OPERATORS = (*_COMPARE, "in")
_SCALARS = (str, int, float, bool, type(None))


def check_where(where: Any) -> dict[str, dict[str, Any]]:
    """`where` as {field: {operator: value}}, or one line saying what is wrong with it."""
    if not isinstance(where, dict) or not where:
        raise ArrError('where must be an object of field conditions, e.g. {"section": "utils"}')
    conditions = {}
    for name, condition in where.items():
        if not isinstance(condition, dict):
            condition = {"eq": condition}
        if not condition:
            raise ArrError(f"where: field {name!r} has an empty condition")
        for op, value in condition.items():
            if op not in OPERATORS:
                raise ArrError(f"where: unknown operator {op!r} for field {name!r}; use {', '.join(OPERATORS)}")
            values = value if op == "in" else [value]
            if op == "in" and not isinstance(value, list):
                raise ArrError(f"where: 'in' for field {name!r} takes a list")
            if not all(isinstance(v, _SCALARS) for v in values):
                raise ArrError(f"where: field {name!r} compares with strings, numbers, true/false or null only")
        conditions[str(name)] = condition
    return conditions


def _holds(value: Any, condition: dict[str, Any]) -> bool:
    for op, bound in condition.items():
        if op == "in":
            if value not in bound or value is None:
                return False
            continue
        if value is None or isinstance(value, bool) != isinstance(bound, bool):
            return op == "ne" and value != bound
        try:
            if not _COMPARE[op](value, bound):
                return False
        except TypeError:  # "2020" against 2020: no match, never an error
            return False
    return True


def matching_rows(where: dict[str, dict[str, Any]], metadata: Iterable[dict]) -> np.ndarray:
    """A boolean mask over rows: True where every condition holds."""
    return np.fromiter((all(_holds(meta.get(name), condition) for name, condition in where.items())
                        for meta in metadata), dtype=bool)
