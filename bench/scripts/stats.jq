# jq helpers of the bench scripts (jq -L bench 'include "stats"; ...').
# Median of an array of numbers.
def med: sort | if length % 2 == 1 then .[length / 2 | floor]
           else (.[length / 2 - 1] + .[length / 2]) / 2 end;
