"""The embedding column: pgvector's ``vector`` on PostgreSQL, float32 bytes elsewhere (SQLite).

The column carries no dimension: collections choose their embedder, and each embedder its dimension. The
HNSW index on PostgreSQL is an expression index per dimension (see the migration and ``knowledge.index``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from django.db import models


def _postgres(connection: Any) -> bool:
    return bool(connection.vendor == "postgresql")


class EmbeddingField(models.Field):
    description = "An embedding vector (float32)"
    empty_strings_allowed = False

    def db_type(self, connection: Any) -> str:
        return "vector" if _postgres(connection) else "blob"

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if value is None:
            return None
        array = np.asarray(value, dtype=np.float32)
        if _postgres(connection):
            # Nine significant digits read back as the same float32 (and format faster than repr per element).
            return "[" + ",".join([f"{x:.9g}" for x in array.tolist()]) + "]"
        return array.tobytes()

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> np.ndarray[Any, Any] | None:
        return self.to_python(value)

    def to_python(self, value: Any) -> np.ndarray[Any, Any] | None:
        if value is None or isinstance(value, np.ndarray):
            return value
        if isinstance(value, bytes | memoryview):
            return np.frombuffer(bytes(value), dtype=np.float32)
        if isinstance(value, str):
            return np.array([float(x) for x in value.strip("[]").split(",") if x], dtype=np.float32)
        return np.asarray(value, dtype=np.float32)
