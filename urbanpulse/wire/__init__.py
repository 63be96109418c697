"""The wire contract between edge nodes and the cloud: one definition, both sides.

See docs/wire-contract.md for the prose version.
"""

from urbanpulse.wire.kinds import KINDS, FieldSpec, KindSpec, field_range, outside_range
from urbanpulse.wire.payload import (
    MAX_PAYLOAD_BYTES,
    MAX_READINGS_PER_BATCH,
    ParsedBatch,
    Reading,
    ReadingRefused,
    RejectedReading,
    WireError,
    decode_ack,
    decode_batch,
    decode_status,
    encode_ack,
    encode_batch,
    encode_status,
    format_ts,
)
from urbanpulse.wire.topics import (
    ACK_FILTER,
    CONTRACT_VERSION,
    Topic,
    ack_topic,
    alerts_topic,
    data_topic,
    node_filter,
    parse_topic,
    status_topic,
    validate_id,
)
from urbanpulse.wire.values import Refusal, reading_problem

__all__ = [
    "ACK_FILTER",
    "CONTRACT_VERSION",
    "KINDS",
    "MAX_PAYLOAD_BYTES",
    "MAX_READINGS_PER_BATCH",
    "FieldSpec",
    "KindSpec",
    "ParsedBatch",
    "Reading",
    "ReadingRefused",
    "Refusal",
    "RejectedReading",
    "Topic",
    "WireError",
    "ack_topic",
    "alerts_topic",
    "data_topic",
    "decode_ack",
    "decode_batch",
    "decode_status",
    "encode_ack",
    "encode_batch",
    "encode_status",
    "field_range",
    "format_ts",
    "node_filter",
    "outside_range",
    "parse_topic",
    "reading_problem",
    "status_topic",
    "validate_id",
]
