"""Cost of decoding and validating one reading, against json.loads of the same bytes.

    python benchmarks/decode.py [--features 8] [--n 200000]
"""

from __future__ import annotations

import argparse
import json
import timeit
from collections.abc import Callable

from riverflow.schemas import Decoder, now_ms, reading_value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--n", type=int, default=200_000)
    args = parser.parse_args()

    now = now_ms()
    features = {f"f{i}": 0.1234567 * (i + 1) for i in range(args.features)}
    raw = reading_value("0f8c6a4e-5d3b-4b1e-9a7f-2c1d0e9b8a76", "sensor-007", now, features)
    decoder = Decoder(max_features=256, max_message_bytes=65536, max_ts_skew_s=86400)

    def best(stmt: Callable[[], object]) -> float:
        return float(min(timeit.repeat(stmt, number=args.n, repeat=5)) / args.n * 1e6)

    validate = best(lambda: decoder.reading(raw, now))
    plain = best(lambda: json.loads(raw))
    print(f"reading: {len(raw)} bytes, {args.features} features, best of 5 x {args.n:,}")
    print(f"riverflow decode+validate  {validate:6.2f} us/reading")
    print(f"json.loads only            {plain:6.2f} us/reading")
    print(f"ratio validate/json.loads  {validate / plain:6.2f}")


if __name__ == "__main__":
    main()
