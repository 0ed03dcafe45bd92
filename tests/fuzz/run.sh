#!/usr/bin/env bash
# The fuzzer as CI runs it (`make fuzz`): `python -m tests.fuzz` (atheris, the oracle of
# tests/fuzz/oracle.py) for FUZZ_SECONDS (120 by default) in all, seeded with tests/fuzz/corpus/:
# two thirds guided by coverage with the normal build, then the whole corpus and more mutations
# with monitor/_featcols.c built with AddressSanitizer and UndefinedBehaviorSanitizer into
# build/fuzz/. Exits non-zero on any crash, sanitizer report, oracle mismatch or timeout; the
# input is in build/fuzz/artifacts/ (once fixed, add it to tests/fuzz/corpus/ as a regression
# case); the logs are build/fuzz/guided.log and build/fuzz/sanitized.log.
#
# Needs: the venv (`make install`), gcc with libasan and libubsan (Debian's gcc package), and
# atheris (installed here into the venv from its prebuilt wheel when missing).
# FUZZ_COLLECT=DIR: survey mode, each new kind of problem is written to DIR and the run goes on.
set -euo pipefail
cd "$(dirname "$0")/../.."

FUZZ_SECONDS="${FUZZ_SECONDS:-120}"
PY=.venv/bin/python
OUT=build/fuzz
mkdir -p "$OUT/monitor" "$OUT/corpus" "$OUT/artifacts"

"$PY" -c 'import atheris' 2>/dev/null ||
  "$PY" -m pip install -q --only-binary=:all: 'atheris==3.0.0'

# The sanitized extension, rebuilt when the source changes.
suffix="$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
include="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
so="$OUT/monitor/_featcols$suffix"
if [ ! -f "$so" ] || [ monitor/_featcols.c -nt "$so" ] || [ "$0" -nt "$so" ]; then
  gcc -shared -fPIC -g -O1 -fno-omit-frame-pointer \
    -fsanitize=address,undefined -fno-sanitize-recover=undefined \
    -I"$include" monitor/_featcols.c -o "$so.tmp"
  mv "$so.tmp" "$so"
fi

# Two runs share FUZZ_SECONDS. gcc's ASan runtime also defines the coverage callbacks that
# atheris gives libFuzzer, so under it libFuzzer sees no coverage: the first two thirds fuzz
# guided by coverage with the normal build (new inputs go to build/fuzz/corpus, the committed
# corpus is only read); the rest checks every input of both corpora, then mutations of them
# (tests/fuzz/replay.py, no libFuzzer), with the sanitized build.
guided=$(( FUZZ_SECONDS * 2 / 3 ))
sanitized=$(( FUZZ_SECONDS - guided ))
options=(-timeout=20 -rss_limit_mb=4096 -max_len=8192 -dict=tests/fuzz/json.dict
  -artifact_prefix="$OUT/artifacts/" -print_final_stats=1)
status=0

failed() { # log: whether the run's output reports a crash, a sanitizer error or a mismatch
  grep -qE 'ERROR: AddressSanitizer|runtime error:|UndefinedBehaviorSanitizer|ERROR: libFuzzer|Uncaught Python exception|==[0-9]+==ERROR' "$1"
}

echo "fuzz: ${guided}s guided by coverage (normal build)" >&2
"$PY" -m tests.fuzz -max_total_time="$guided" "${options[@]}" "$OUT/corpus" tests/fuzz/corpus \
  2>&1 | tee "$OUT/guided.log" || status=$?
if [ "$status" -eq 0 ] && failed "$OUT/guided.log"; then status=1; fi

if [ "$status" -eq 0 ]; then
  echo "fuzz: ${sanitized}s with ASan and UBSan" >&2
  # CPython is not built with ASan: its runtime must be loaded first, and libstdc++ with it
  # (ASan intercepts __cxa_throw, which C++ code in extensions such as scipy may call, and
  # finds the real one only in what is loaded when it starts). Python objects go through
  # malloc, not pymalloc's arenas, so that ASan sees the bounds of every buffer; CPython's
  # interned strings and caches are never freed, so leak checking is off.
  LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so.6)" \
    ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:malloc_context_size=10" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    PYTHONMALLOC=malloc FUZZ_EXT_DIR="$OUT/monitor" \
    "$PY" -m tests.fuzz.replay "$sanitized" "$OUT/artifacts" "$OUT/corpus" tests/fuzz/corpus \
    2>&1 | tee "$OUT/sanitized.log" || status=$?
  if [ "$status" -eq 0 ] && failed "$OUT/sanitized.log"; then status=1; fi
  if ! grep -q 'monitor._featcols from .*build/fuzz/monitor/' "$OUT/sanitized.log"; then
    echo "fuzz: the sanitized build was not the one imported" >&2
    [ "$status" -ne 0 ] || status=1
  fi
fi

if [ -n "${FUZZ_COLLECT:-}" ]; then
  echo "fuzz: survey done (exit $status); inputs with new kinds of problem in $FUZZ_COLLECT" >&2
elif [ "$status" -ne 0 ]; then
  echo "fuzz: FAILED (exit $status); the input: $(ls -t "$OUT"/artifacts/* 2>/dev/null | head -1)" >&2
else
  echo "fuzz: clean for ${FUZZ_SECONDS}s" >&2
fi
exit "$status"
