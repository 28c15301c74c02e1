#!/usr/bin/env bash
# Passes `go test -v` output through and ends with one line counting the
# top-level tests, so a long lab run ends with its verdict in plain sight.
# The exit status is go test's.
set -o pipefail
passed=0; failed=0; skipped=0; pkgfail=0
while IFS= read -r line; do
  printf '%s\n' "$line"
  case "$line" in
    "--- PASS: "*) passed=$((passed+1)) ;;
    "--- FAIL: "*) failed=$((failed+1)) ;;
    "--- SKIP: "*) skipped=$((skipped+1)) ;;
    # A package that fails outside any test (build error, timeout panic).
    "FAIL"|"FAIL	"*) pkgfail=1 ;;
  esac
done
echo "e2e: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "$pkgfail" -eq 0 ] && [ "$passed" -gt 0 ]
