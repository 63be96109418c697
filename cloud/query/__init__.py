"""The analysts' query API: stored readings, aggregates, rollups, the delivery ledger,
events and dead letters as pandas DataFrames (docs/analyst-queries.md)."""

from cloud.query.catalog import EVENT_TYPES, POLICIES, ROLLUPS
from cloud.query.city_data import CityData
from cloud.query.errors import BadArgument, IncompleteAnswer, NotWholeCount, QueryError
from cloud.query.typed_csv import read_csv

__all__ = ["EVENT_TYPES", "POLICIES", "ROLLUPS", "BadArgument", "CityData", "IncompleteAnswer",
           "NotWholeCount", "QueryError", "read_csv"]
