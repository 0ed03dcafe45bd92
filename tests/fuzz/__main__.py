"""``python -m tests.fuzz [libFuzzer options] [corpus dirs]``: the oracle under atheris.

Every input goes through :meth:`tests.fuzz.oracle.Oracle.check` (inputs are mutated by
libFuzzer and by :mod:`tests.fuzz.mutate`); a problem raises
:class:`MismatchError`, which atheris reports as a crash (the input is written to
``-artifact_prefix``) and the run exits non-zero. ``tests/fuzz/run.sh`` is the way to run it
(sanitized C extension, corpus, dictionary, time limit); options used from the environment:

* ``FUZZ_EXT_DIR``: a directory holding a build of ``monitor/_featcols`` to import instead of
  the installed one (the sanitized build); the run stops if it is not the one imported;
* ``FUZZ_COLLECT``: a directory; instead of stopping at the first problem, each input whose
  problems are new (by their kind, not their details) is written there with a ``.txt`` note,
  and the run goes on (to survey a code base with known defects).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import sys
from pathlib import Path
from typing import Any

from tests.fuzz.replay import use_ext_dir

#: Modules whose Python code atheris instruments for coverage.
INSTRUMENTED = ["monitor", "tests.fuzz.oracle"]


class MismatchError(AssertionError):
    """The fast decoder broke its contract on this input (the message lists how)."""


def kind_of(problem: str) -> str:
    """A problem without its details (path, numbers, values): what makes it new."""
    words = problem.split(" ")
    if words and words[0] in ("wrapped", "after"):
        words = words[4:] if words[0] == "after" else words[1:]
    text = " ".join(words[1:])  # without the decoder path
    head = ":".join(re.split(r"[:(]", text, maxsplit=3)[:3])
    return re.sub(r"\d+", "N", head)[:90]


def main(argv: list[str] | None = None) -> int:
    """Run the fuzzer with these libFuzzer arguments (``sys.argv`` by default)."""
    argv = list(sys.argv if argv is None else argv)
    atheris: Any = importlib.import_module("atheris")
    use_ext_dir()
    with atheris.instrument_imports(include=INSTRUMENTED):
        from tests.fuzz import oracle as oracle_module
    oracle = oracle_module.Oracle()
    collect = os.environ.get("FUZZ_COLLECT")
    seen: set[str] = set()

    def test_one_input(data: bytes) -> None:
        problems = oracle.check(data)
        if not problems:
            return
        if not collect:
            head = f"input {data[:300]!r} ({len(data)} bytes):\n"
            raise MismatchError(head + "\n".join(problems))
        kinds = {kind_of(p) for p in problems} - seen
        if not kinds:
            return
        seen.update(kinds)
        name = hashlib.sha1(data).hexdigest()[:16]
        out = Path(collect)
        out.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
        (out / f"{name}.txt").write_text(
            f"{data[:2000]!r}\nnew kinds: {sorted(kinds)}\n" + "\n".join(problems) + "\n"
        )
        print(f"fuzz: new problem {sorted(kinds)} in {out / name}", file=sys.stderr)

    from tests.fuzz.mutate import json_mutator

    def byte_mutation(data: bytes, max_size: int) -> bytes:
        # Looked up at each call: atheris binds Mutate to libFuzzer's only once Fuzz() runs.
        return bytes(atheris.Mutate(data, max_size))

    atheris.Setup(argv, test_one_input, custom_mutator=json_mutator(byte_mutation))
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
