"""``python -m tests.fuzz.replay SECONDS ARTIFACTS DIR...``: the oracle over a corpus, then over
mutations of it, without libFuzzer (the sanitized run of ``tests/fuzz/run.sh``).

Under gcc's AddressSanitizer runtime libFuzzer gets no coverage (the runtime defines the
callbacks atheris hands it), so its corpus shrinks to one input and its mutations are of that
one. Here every input of the directories is checked, then until ``SECONDS`` are over a random
input is mutated (:mod:`tests.fuzz.mutate`, or a byte mutation) and checked. Before each check
the input is written to ``ARTIFACTS/last-input``, so that a sanitizer abort leaves it behind; a
problem the oracle reports is written to ``ARTIFACTS/crash-<sha1>`` and ends the run with exit
status 1. ``FUZZ_EXT_DIR`` and ``FUZZ_SEED`` as for ``python -m tests.fuzz`` (the seed is
printed).
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

#: Byte strings a byte mutation inserts (JSON's tokens and the schema's own).
TOKENS = [
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b'"',
    b"\\",
    b"null",
    b"NaN",
    b"-0",
    b"1e400",
    b"\\ud800",
    b"\xff",
    b'"features"',
    b'"events"',
    b'"timestamp"',
    b"253402300800000",
]
MAX_SIZE = 8192


def byte_mutation(rng: random.Random, pool: list[bytes]) -> Callable[[bytes, int], bytes]:
    """A few of libFuzzer's mutations: flip, insert a token, erase, repeat, splice."""

    def mutate(data: bytes, max_size: int) -> bytes:
        out = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            at = rng.randint(0, len(out))
            op = rng.randrange(5)
            if op == 0 and out:
                out[min(at, len(out) - 1)] ^= 1 << rng.randrange(8)
            elif op == 1:
                out[at:at] = rng.choice(TOKENS)
            elif op == 2:
                del out[at : at + rng.randint(1, 16)]
            elif op == 3:
                out[at:at] = out[at : at + rng.randint(1, 64)] * rng.randint(1, 8)
            else:
                other = rng.choice(pool)
                start = rng.randint(0, len(other))
                out[at:] = other[start:]
        return bytes(out[:max_size])

    return mutate


def use_ext_dir() -> None:
    """Import ``monitor._featcols`` from ``FUZZ_EXT_DIR`` (when set), by way of
    ``monitor.accelerator``; stop if it is not the one loaded. With ``DRIFTWATCH_ACCEL=0`` (and
    no ``FUZZ_EXT_DIR``) the oracle checks the accelerator's pure-Python twin instead."""
    import monitor

    ext_dir = os.environ.get("FUZZ_EXT_DIR")
    if ext_dir:
        monitor.__path__.insert(0, os.path.abspath(ext_dir))
    from monitor import accelerator

    if accelerator.IMPLEMENTATION != "c":
        if ext_dir:
            raise SystemExit(f"fuzz: expected the build in {ext_dir}, got the Python twin")
        print("fuzz: the accelerator's pure-Python twin (monitor.accelerator_py)", file=sys.stderr)
        return
    loaded = os.path.abspath(getattr(sys.modules["monitor._featcols"], "__file__", None) or "")
    print(f"fuzz: monitor._featcols from {loaded}", file=sys.stderr)
    if ext_dir and not loaded.startswith(os.path.abspath(ext_dir) + os.sep):
        raise SystemExit(f"fuzz: expected the build in {ext_dir}")


def main(argv: list[str]) -> int:
    """Check the corpus, then mutations of it, for ``argv[0]`` seconds in all."""
    seconds, artifacts, *dirs = argv
    use_ext_dir()
    from tests.fuzz.mutate import json_mutator
    from tests.fuzz.oracle import Oracle

    out = Path(artifacts)
    out.mkdir(parents=True, exist_ok=True)
    last = out / "last-input"
    deadline = time.monotonic() + float(seconds)
    seed = int(os.environ.get("FUZZ_SEED") or time.time_ns() % 2**32)
    print(f"fuzz: replay seed {seed}", file=sys.stderr)
    rng = random.Random(seed)
    pool = [p.read_bytes() for d in dirs for p in sorted(Path(d).iterdir()) if p.is_file()]
    mutate = json_mutator(byte_mutation(rng, pool))
    oracle = Oracle()

    def failed(data: bytes) -> bool:
        last.write_bytes(data)
        problems = oracle.check(data)
        if not problems:
            return False
        crash = out / f"crash-{hashlib.sha1(data).hexdigest()}"
        crash.write_bytes(data)
        print(f"fuzz: input {data[:300]!r} ({len(data)} bytes) in {crash}:", file=sys.stderr)
        print("\n".join(problems), file=sys.stderr)
        return True

    runs = 0
    for data in pool:
        runs += 1
        if failed(data):
            return 1
    print(f"fuzz: {runs} corpus inputs checked", file=sys.stderr)
    while time.monotonic() < deadline and pool:
        data = mutate(rng.choice(pool), MAX_SIZE, rng.randrange(2**32))
        runs += 1
        if failed(data):
            return 1
        if rng.random() < 0.1:
            pool.append(data)  # mutations of mutations, now and then
    print(f"fuzz: {runs} inputs checked, no problem", file=sys.stderr)
    last.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
