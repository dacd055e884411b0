#!/usr/bin/env bash
# Runs every Go fuzz target of the module for FUZZTIME each (default 60s; CI runs them briefly). A failing
# input is written by the fuzzer under the package's testdata/fuzz/<Target>/, where `go test` replays it as
# a regression case from then on: commit it with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-60s}"
status=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# The targets are found in the test sources (func FuzzX(f *testing.F)), not by go test -list, which would
# build every package's test binary only to list it; go test -fuzz below refuses a name that is not a target.
for dir in $(git ls-files '*_test.go' | xargs grep -l '^func Fuzz[A-Za-z0-9_]*(f \*testing\.F)' | xargs -n1 dirname | sort -u); do
  pkg=./$dir
  targets=$(cat "$dir"/*_test.go | sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(f \*testing\.F).*/\1/p' | sort -u)
  for t in $targets; do
    echo "fuzz $pkg $t ($fuzztime)" >&2
    if ! go test -run '^$' -fuzz "^${t}\$" -fuzztime "$fuzztime" -fuzzminimizetime 5s "$pkg" >"$log" 2>&1; then
      cat "$log" >&2
      # go's fuzzer reports "context deadline exceeded" when -fuzztime ends during a slow input; that is
      # not a finding. A finding always writes its input under testdata/fuzz.
      if grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written to' "$log"; then
        echo "fuzz $pkg $t: stopped by the time limit during an input, nothing found" >&2
      else
        status=1
      fi
    fi
  done
done
exit $status
