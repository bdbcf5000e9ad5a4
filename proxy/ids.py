"""Generated keys for sharded tables: snowflake-style 63-bit integers.

    | 41 bits: milliseconds since EPOCH | 10 bits: worker id | 12 bits: sequence |

Keys from one proxy instance strictly increase; two instances with different worker ids never
produce the same key. The worker id comes from `transactions.worker_id`, else from a hash of
the instance id: two instances whose ids hash alike would collide, so when several instances
run, give each its own `worker_id` (0..1023) or instance id checked to hash apart (see
docs/transactions.md).

The clock is only a source of spread: if it steps back, or more than 4096 keys are asked for in
one millisecond, keys borrow from the next milliseconds instead of waiting or repeating.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
WORKER_BITS = 10
SEQUENCE_BITS = 12
WORKERS = 1 << WORKER_BITS
_SEQUENCE_MASK = (1 << SEQUENCE_BITS) - 1
_TIMESTAMP_SHIFT = WORKER_BITS + SEQUENCE_BITS


def worker_for(instance_id: str) -> int:
    """The worker id an instance gets when the config doesn't pin one."""
    return zlib.crc32(instance_id.encode()) % WORKERS


class SnowflakeIds:
    """Hands out keys for one proxy instance."""

    def __init__(self, worker_id: int, clock: Callable[[], float] = time.time):
        if not 0 <= worker_id < WORKERS:
            raise ValueError(f"worker id {worker_id} is out of range (0..{WORKERS - 1})")
        self.worker_id = worker_id
        self._clock = clock
        self._last = 0  # the last key handed out

    def next_ids(self, count: int) -> list[int]:
        """`count` new keys, increasing, all greater than any handed out before."""
        now = (int(self._clock() * 1000) - EPOCH_MS) << _TIMESTAMP_SHIFT
        floor = now | self.worker_id << SEQUENCE_BITS
        keys = []
        last = self._last
        for _ in range(count):
            if floor > last:
                key = floor
            elif last & _SEQUENCE_MASK < _SEQUENCE_MASK:
                key = last + 1
            else:  # this millisecond's sequence is used up: borrow the next millisecond
                key = ((last >> _TIMESTAMP_SHIFT) + 1) << _TIMESTAMP_SHIFT
                key |= self.worker_id << SEQUENCE_BITS
            keys.append(key)
            last = key
        self._last = last
        return keys


def decode(key: int) -> tuple[float, int, int]:
    """(unix time in seconds, worker id, sequence) of a key, for humans and tests."""
    millis = (key >> _TIMESTAMP_SHIFT) + EPOCH_MS
    return millis / 1000, key >> SEQUENCE_BITS & (WORKERS - 1), key & _SEQUENCE_MASK
