"""DiskStorage figures: prints them; asserts nothing.

(a) one append = ``write()`` of a Ready holding one ~20-byte command, then
    ``sync()``, when the log already holds each of --sizes entries (built
    first with 10,000-entry batches); --appends single appends timed, median
    and p90 per append, and the largest size's median over the smallest's
    [target: 1M within 1.5x of 1k: an append costs what it adds];
(b) the same with ``os.fdatasync``/``os.fsync`` replaced by no-ops, so what is
    left is staging, encoding and the file writes (``write()`` and ``sync()``
    shown apart).  On the machine this was written on, this figure sits at
    either about 5.5 or about 9.5 µs, at every size, from one run to the next
    (the state of the process, not the log's length): compare a few runs
    before reading a ratio;
(c) recovery: opening the directory (every record read and checked) and
    ``restore()``, for each size.

The directories are made under the project (the real disk, not a tmpfs) and
removed afterwards.

Usage: python bench/bench_storage.py [--sizes 1000,100000,1000000] [--appends 2000]
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import msgspec

from _common import ROOT, percentile
from trioraft.core.messages import Entry
from trioraft.core.ready import HardState, Ready
from trioraft.storage.disk import DiskStorage

BATCH = 10_000


def command(i: int) -> msgspec.Raw:
    return msgspec.Raw(msgspec.msgpack.encode(f"set k{i:09d}=1"))  # 20 bytes


@contextmanager
def scratch_directory() -> Iterator[str]:
    directory = tempfile.mkdtemp(prefix=".bench-storage-", dir=ROOT)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


@contextmanager
def without_fsync() -> Iterator[None]:
    saved = os.fdatasync, os.fsync
    os.fdatasync = os.fsync = lambda fd: None
    try:
        yield
    finally:
        os.fdatasync, os.fsync = saved


def fill(storage: DiskStorage, count: int) -> None:
    storage.write(Ready(HardState(1, 0, 0), must_sync=True))
    for first in range(1, count + 1, BATCH):
        batch = [Entry(1, command(i)) for i in range(first, min(first + BATCH, count + 1))]
        storage.write(Ready(None, None, first, batch, must_sync=True))
        storage.sync()


def time_appends(storage: DiskStorage, first: int, appends: int) -> tuple[list[float], ...]:
    """µs per append: write(), sync(), and both."""
    gc.collect()  # start from the same collector state at every size (the fill leaves garbage)
    writes, syncs, totals = [], [], []
    clock = time.perf_counter
    for index in range(first, first + appends):
        ready = Ready(None, None, index, [Entry(1, command(index))], must_sync=True)
        t0 = clock()
        storage.write(ready)
        t1 = clock()
        storage.sync()
        t2 = clock()
        writes.append((t1 - t0) * 1e6)
        syncs.append((t2 - t1) * 1e6)
        totals.append((t2 - t0) * 1e6)
    return writes, syncs, totals


def describe(values: list[float]) -> str:
    return f"median {statistics.median(values):7.1f} µs, p90 {percentile(values, 0.9):7.1f} µs"


def bench_size(size: int, appends: int) -> tuple[float, float, float]:
    """Print (a), (b) and (c) for one log size; return the two medians and the recovery time."""
    with scratch_directory() as directory:
        storage = DiskStorage(directory)
        t0 = time.perf_counter()
        fill(storage, size)
        built = time.perf_counter() - t0
        warm = 100  # untimed appends first: the same code paths, caches and page warm
        time_appends(storage, size + 1, warm)
        _, _, with_fsync = time_appends(storage, size + 1 + warm, appends)
        with without_fsync():
            time_appends(storage, size + 1 + warm + appends, warm)
            writes, syncs, no_fsync = time_appends(storage, size + 1 + 2 * warm + appends, appends)
        storage.close()
        print(f"log of {size:,} entries (built in {built:.1f} s):")
        print(f"  (a) append, write + sync:       {describe(with_fsync)}")
        print(f"  (b) append without fsync:       {describe(no_fsync)}")
        print(f"      write() alone (staging):    {describe(writes)}")
        print(f"      sync() alone (encode+write): {describe(syncs)}")
        t0 = time.perf_counter()
        reopened = DiskStorage(directory)
        entries = len(reopened.restore().entries)
        recovery = time.perf_counter() - t0
        reopened.close()
        print(f"  (c) recovery of {entries:,} entries: {recovery:.2f} s")
    return statistics.median(with_fsync), statistics.median(no_fsync), recovery


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=lambda text: [int(size) for size in text.split(",")],
        default=[1_000, 100_000, 1_000_000],
        help="comma-separated log sizes (default 1000,100000,1000000)",
    )
    parser.add_argument("--appends", type=int, default=2000, help="appends timed per size")
    args = parser.parse_args()
    results = {size: bench_size(size, args.appends) for size in args.sizes}
    small, large = min(results), max(results)
    if small != large:
        for label, position in (("(a) with fsync", 0), ("(b) without fsync", 1)):
            ratio = results[large][position] / results[small][position]
            print(
                f"{label}: median append at {large:,} entries / at {small:,} = {ratio:.2f}x"
                "  [target <= 1.5x]"
            )


if __name__ == "__main__":
    main()
