"""Mutations of nested JSON-like data (COCO files, checkpoint payloads) for bad-input tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def _parent(data: Any, path: Sequence[Any]) -> Any:
    for key in path[:-1]:
        data = data[key]
    return data


def set_at(path: Sequence[Any], value: Any) -> Callable[[Any], None]:
    """A mutation that sets ``data[path[0]][path[1]]... = value``."""

    def mutate(data: Any) -> None:
        _parent(data, path)[path[-1]] = value

    return mutate


def drop_at(path: Sequence[Any]) -> Callable[[Any], None]:
    """A mutation that deletes ``data[path[0]][path[1]]...``."""

    def mutate(data: Any) -> None:
        del _parent(data, path)[path[-1]]

    return mutate
