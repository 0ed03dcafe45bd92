#!/usr/bin/env bash
# The Debian packages each make target needs: the one place that knows them.
#
#   bash deploy/deps.sh TARGET...        install what TARGET needs (as root), or say how
#   bash deploy/deps.sh --list TARGET... print the packages TARGET needs, one a line
#
# Targets: install (the venv and its C extension), kafka (the local broker), demo, test, fuzz.
# `make install`, `make demo`, `make test` and `make fuzz` call it before anything else, and
# .ci/run calls it through them. A package counts as present when the command it provides is
# on PATH (headers and venv support are checked through the interpreter), so a machine that has
# them from elsewhere is left alone.
#
# When something is missing: as root it runs one quiet `apt-get update`, then
# `apt-get install` of exactly the missing packages, saying what it installs and why; otherwise
# it stops with one line giving the exact `sudo apt-get install ...` command. Exit codes: 0 all
# present (or installed), 1 missing and not root, 2 usage or a failed install.
#
# Environment: PY, the interpreter the venv is made from (python3.11).
set -euo pipefail

PY=${PY:-python3.11}

# TARGET -> "command:package ..." ; a command in <angle brackets> is a check of the interpreter.
declare -A NEEDS=(
  [install]="gcc:gcc <headers>:python3.11-dev <venv>:python3.11-venv"
  [kafka]="java:openjdk-17-jre-headless mvn:maven"
  [demo]="prometheus-alertmanager:prometheus-alertmanager amtool:prometheus-alertmanager"
  [test]="prometheus:prometheus promtool:prometheus prometheus-alertmanager:prometheus-alertmanager amtool:prometheus-alertmanager chromium:chromium chromedriver:chromium-driver openssl:openssl"
  [fuzz]=""  # gcc's own AddressSanitizer and UBSan runtimes; atheris comes from PyPI
)
# What a target needs besides its own list (make demo and make test also install and run Kafka).
declare -A ALSO=([demo]="install kafka" [test]="install kafka" [fuzz]="install")

die() { printf 'deps: %s\n' "$*" >&2; exit 2; }

# Prints "package<TAB>target" for each package TARGET (and what it builds on) needs.
expand() {
  local target=$1 also entry
  for also in ${ALSO[$target]:-}; do expand "$also"; done
  for entry in ${NEEDS[$target]}; do printf '%s\t%s\t%s\n' "${entry#*:}" "${entry%%:*}" "$target"; done
}

present() {
  case $1 in
    "<headers>")
      "$PY" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
        >/dev/null 2>&1 ;;
    "<venv>") "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1 ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

list=false
if [ "${1:-}" = --list ]; then list=true; shift; fi
[ $# -gt 0 ] || die "usage: deploy/deps.sh [--list] TARGET... (targets: ${!NEEDS[*]})"

for t in "$@"; do
  [ -n "${NEEDS[$t]+x}" ] || die "unknown target '$t' (known: ${!NEEDS[*]})"
done
targets="$*"
declare -A why=()
missing=()
while IFS=$'\t' read -r package command target; do
  if $list; then
    [ -n "${why[$package]+x}" ] || { why[$package]=1; echo "$package"; }
    continue
  fi
  present "$command" && continue
  if [ -z "${why[$package]+x}" ]; then
    missing+=("$package")
    why[$package]="$target"
  fi
done < <(for t in "$@"; do expand "$t"; done)
$list && exit 0
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
  printf 'deps: make %s needs Debian packages that are missing; run: sudo apt-get install -y %s\n' \
    "$targets" "${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
for package in "${missing[@]}"; do
  printf 'deps: installing %s (needed by make %s)\n' "$package" "${why[$package]}"
done
# Quiet unless it fails: then its whole output, to see why.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
  >"$log" 2>&1; then
  cat "$log" >&2
  die "apt-get install ${missing[*]} failed"
fi
# Debian starts the packaged Alertmanager and Prometheus as services on :9093/:9090 where
# systemd runs; the tests and the demo run their own on free 127.0.0.1 ports.
if command -v systemctl >/dev/null 2>&1; then
  systemctl stop prometheus-alertmanager prometheus >/dev/null 2>&1 || true
fi
