# jq helpers of the bench scripts (jq -L bench 'include "stats"; ...').
# Median of an array of numbers; null for an empty one.
def med: sort | if length == 0 then null
           elif length % 2 == 1 then .[length / 2 | floor]
           else (.[length / 2 - 1] + .[length / 2]) / 2 end;
# A run counts when it completed and its memory matched (memcmp_ok null or
# absent: not checked by that command). bench/run1.sh turns a crashed run
# into a failed record, so that it is counted here and never dropped.
def run_ok: .status == "ok" and .memcmp_ok != false;
# Of an array of runs: those that count (the only ones a median or a ratio
# may use), and "N of M ok".
def oks: map(select(run_ok));
def ok_of: "\(oks | length) of \(length) ok";
