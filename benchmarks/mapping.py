"""Cost of decoding and mapping the issue's nested telemetry payload (8 features, ISO time, two
categories) against today's decoder on riverflow's own 8-feature reading.

    python benchmarks/mapping.py [--n 20000] [--rounds 15]

Prints both costs and the throughput ratio (riverflow's own time / the mapped time); the
target is 0.8 or more.
"""

from __future__ import annotations

import argparse
import json
import time
import timeit
from collections.abc import Callable
from datetime import UTC, datetime

from riverflow.extract import ReadingExtractor
from riverflow.mapping import parse_mapping
from riverflow.schemas import Decoder, now_ms
from riverflow.transport.base import Message

MAPPING = """
[readings]
topic = "telemetry"
event_id = "msg_id"
entity = "device.id"
time = "measured_at"
time_format = "auto"
features = ["metrics.temp_c", "metrics.vibration", "metrics.rpm", "metrics.pressure",
            "metrics.flow", "metrics.current", "metrics.voltage", "metrics.humidity"]
categorical = ["status", "device.site"]
optional = ["metrics.rpm"]
"""


def payloads(now: int) -> tuple[bytes, bytes]:
    values = [71.2, 0.031, 1480, 3.2, 12.5, 4.75, 229.8, 0.41]
    own = json.dumps(
        {
            "event_id": "0f8c6a4e-5d3b-4b1e-9a7f-2c1d0e9b8a76",
            "sensor_id": "pump-7",
            "ts": now,
            "features": {f"f{i}": v for i, v in enumerate(values)},
        }
    ).encode()
    iso = datetime.fromtimestamp(now / 1000, UTC).isoformat(timespec="milliseconds")
    names = ["temp_c", "vibration", "rpm", "pressure", "flow", "current", "voltage", "humidity"]
    nested = json.dumps(
        {
            "msg_id": "0f8c6a4e-5d3b-4b1e-9a7f-2c1d0e9b8a76",
            "device": {"id": "pump-7", "site": "north"},
            "measured_at": iso.replace("+00:00", "Z"),
            "metrics": dict(zip(names, values, strict=True)),
            "status": "running",
        }
    ).encode()
    return own, nested


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    now = now_ms()
    own, nested = payloads(now)
    decoder = Decoder(max_features=256, max_message_bytes=65536, max_ts_skew_s=86400)
    mapping = parse_mapping(MAPPING, "benchmark")
    extractor = ReadingExtractor(mapping.readings, 256, 65536, 86400)
    record = Message("telemetry", 3, 12345, b"pump-7", nested, (), now)
    mapped = extractor.reading(record, now)
    assert len(mapped.features) == 8 and mapped.categories == {
        "status": "running",
        "device.site": "north",
    }

    # Rounds alternate between the two and count this process's CPU time, so a busy machine
    # slows both alike; the best round of each.
    def cpu(stmt: Callable[[], object]) -> float:
        return timeit.Timer(stmt, timer=time.process_time).timeit(number=args.n)

    today = with_map = float("inf")
    for _ in range(args.rounds):
        today = min(today, cpu(lambda: decoder.reading(own, now)))
        with_map = min(with_map, cpu(lambda: extractor.reading(record, now)))
    today, with_map = today / args.n * 1e6, with_map / args.n * 1e6
    print(f"riverflow's own reading: {len(own)} bytes; telemetry payload: {len(nested)} bytes")
    print(f"today's decoder (own format)   {today:6.2f} us/reading")
    print(f"mapped decode (nested, ISO)    {with_map:6.2f} us/reading")
    print(f"throughput ratio mapped/today  {today / with_map:6.2f}  (target >= 0.8)")


if __name__ == "__main__":
    main()
