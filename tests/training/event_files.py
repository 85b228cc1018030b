"""Reads TensorBoard event files back (TFRecord framing + tensorboardX's `Event` protobuf).

`tensorboard` itself is not a test dependency; this checks every record's length and data
CRCs as TensorBoard's reader does, so a file that parses here is one TensorBoard can load.
"""

import struct

from tensorboardX.proto import event_pb2
from tensorboardX.record_writer import masked_crc32c


def read_events(data: bytes) -> list:
    """The `Event` protos of an event file's bytes; raises ValueError on a corrupt record."""
    events, offset = [], 0
    while offset < len(data):
        header = data[offset : offset + 8]
        (length,) = struct.unpack("Q", header)
        (header_crc,) = struct.unpack("I", data[offset + 8 : offset + 12])
        body = data[offset + 12 : offset + 12 + length]
        (body_crc,) = struct.unpack("I", data[offset + 12 + length : offset + 16 + length])
        if header_crc != masked_crc32c(header) or body_crc != masked_crc32c(body):
            raise ValueError(f"corrupt record at byte {offset}")
        events.append(event_pb2.Event.FromString(body))
        offset += 16 + length
    return events


def scalars(events) -> dict[str, dict[int, float]]:
    """`{tag: {step: value}}` of the scalar summaries."""
    out = {}
    for event in events:
        for value in event.summary.value:
            if value.HasField("simple_value"):
                out.setdefault(value.tag, {})[event.step] = value.simple_value
    return out


def images(events) -> dict[str, dict[int, tuple[int, int]]]:
    """`{tag: {step: (height, width)}}` of the image summaries."""
    out = {}
    for event in events:
        for value in event.summary.value:
            if value.HasField("image"):
                out.setdefault(value.tag, {})[event.step] = (value.image.height, value.image.width)
    return out
