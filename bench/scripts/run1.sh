#!/bin/sh
# One benchmark run for the repeat scripts: runs CMD (multifd-bench --json,
# or a wrapper such as netns.sh that ends with the bench's JSON line) and
# prints exactly one JSON object, with "exit" (CMD's status) added. A run
# that crashed or printed no JSON becomes {"status": "failed", ...}, so it
# is counted and never silently dropped; a non-zero exit is never "ok".
# Which runs count is stats.jq's run_ok. Always exits 0.
#   bench/scripts/run1.sh CMD [ARGS...]
out=$(mktemp)
rc=0
"$@" >"$out" || rc=$?
line=$(grep '^{' "$out" | tail -n 1)
rm -f "$out"
if [ -n "$line" ] && printf '%s\n' "$line" | jq -e 'type == "object"' >/dev/null 2>&1; then
	printf '%s\n' "$line" | jq -c --argjson rc "$rc" '. + {exit: $rc} |
	  if $rc != 0 and .status == "ok"
	  then .status = "failed" | .error = "exit status \($rc)" else . end'
else
	jq -nc --argjson rc "$rc" '{status: "failed", memcmp_ok: null, exit: $rc,
	  error: "no JSON from the run (exit status \($rc))"}'
fi
