#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Save to a file and restore from it (multifd-bench --save F --restore F)
# against fio's sequential write and read of the same bytes, with the same
# block size and job count, measured in the same run (BENCHMARKING.md: a
# ratio from one run says more than an absolute number on a shared
# machine). For each directory, direct I/O off and on, and each channel
# count: fio write (end_fsync, as the save ends with fdatasync), fio read,
# then one bench run; each under the bench lock. fio writes one file with
# its jobs on disjoint parts, not preallocated, as the image is written.
# Same block and depth: fio's bs is one writer's batch (packet-pages x 4
# KiB, below), and psync keeps one write in flight per job, as a writer
# keeps one batch in the device (with direct I/O it prepares the next one
# meanwhile: multifd/filemig.c, save_loop).
#
# The same cache state for both reads: fio's read drops the file's page
# cache first (invalidate=1, stated below: posix_fadvise DONTNEED), and
# the bench drops the image's before its restore (--restore-cache cold,
# the same call). Both then read from the disk (on tmpfs the page cache is
# the file: nothing is dropped, for either).
#
# The save's and restore's rates here are bytes moved / time (the pages
# written, holes not counted: what the disk had to do), beside the
# effective rate (RAM / time) the bench reports.
#
# The same host memory state for every step (BENCHMARKING.md): on this VM
# the balloon hands freed memory back to the host about 2 s after it is
# freed, and the first touch of such memory costs about 1.5 s per GiB, in
# whichever copy first touches a page-cache page. A 1-channel buffered
# save to the disk took 4.8-5.3 s cold and 1.3-2.2 s warm (2026-12-07,
# docs/benchmarks.md). So right before each fio step the script touches
# and frees --warm GiB (two passes of a tmpfs file in /dev/shm), and the
# bench does the same right before its save and its restore
# (--warm-host).
#
# The restore is measured apart by default (--restore-run apart): a second
# bench process restores the image the first one saved (--restore only),
# as a restore on a host is its own process with a fresh guest. In the
# combined run (--restore-run same: --save F --restore F in one process)
# the restore's guest memory is mapped before the save, and part of it had
# gone back to the host by the time the restore touched it
# (host_reported_mib about 1270 against 0, placing 2 GiB took 1.4 s
# against 0.6 s: docs/benchmarks.md, "tmpfs direct I/O, second try"), a
# state fio's read, into a buffer it reuses, never meets. The save's
# figures come from the combined run in both cases.
set -euo pipefail

prog=file_fio.sh
usage() {
	cat <<EOF
Usage: bench/scripts/file_fio.sh [--build DIR] [--ram SIZE] [--dirs "D1 D2"]
                                 [--channels "1 2 4"] [--direct "off on"]
                                 [-- extra multifd-bench args]

  --build DIR     directory holding multifd-bench (default: build)
  --ram SIZE      guest RAM (default 2G), image mix
  --dirs LIST     directories for the files (default: "/var/tmp /dev/shm":
                  this machine's disk and tmpfs)
  --channels LIST channel counts = fio job counts (default "1 2 4")
  --direct LIST   direct-io values = fio --direct (default "off on")
  --warm GIB      touch and free GIB of memory before each step (default
                  6; 0: not)
  --restore-run apart|same
                  restore in a process of its own after the save (default)
                  or in the save's process
  -- ARGS         passed to multifd-bench (e.g. --io-engine uring)
Prints one line per configuration and a markdown table at the end.
EOF
}
die() { echo "$prog: $*" >&2; exit 1; }

build=build
ram=2G
dirs="/var/tmp /dev/shm"
chans="1 2 4"
directs="off on"
warm=6
restore_run=apart
extra=()
while (($#)); do
	case $1 in
	--build) build=${2:?}; shift 2 ;;
	--ram) ram=${2:?}; shift 2 ;;
	--dirs) dirs=${2:?}; shift 2 ;;
	--channels) chans=${2:?}; shift 2 ;;
	--direct) directs=${2:?}; shift 2 ;;
	--warm) warm=${2:?}; shift 2 ;;
	--restore-run) restore_run=${2:?}; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	--) shift; extra=("$@"); break ;;
	*) usage >&2; exit 2 ;;
	esac
done
case $restore_run in apart | same) ;; *) die "--restore-run apart|same" ;; esac
bench=$build/multifd-bench
[ -x "$bench" ] || die "no $bench (build it first)"
command -v fio >/dev/null || die "fio missing (apt-get install fio; scripts/deps.sh)"
command -v jq >/dev/null || die "jq missing"
lock=${MFD_BENCH_LOCK:-/tmp/mfd-bench.lock}
ram_mib=$(numfmt --from=iec "$ram" | awk '{print int($1 / 1048576)}')
# fio's block = one writer's batch: packet-pages (the bench's, with the
# extra arguments: 512 by default) x 4 KiB (the bench's page size). Was a
# fixed 512k while the default packet-pages was 512 (2 MiB writes).
pp=$("$bench" "${extra[@]}" --print-config 2>/dev/null |
	sed -n 's/^packet-pages = //p')
[ -n "$pp" ] || die "cannot read packet-pages from $bench --print-config"
bs=$((pp * 4))k

# fio: MB/s (1e6) of one sequential pass, rw = write or read. Like the
# image: one file, not preallocated (fallocate=none: blocks are allocated
# as they are written), the jobs each on their own part of it.
fio_mbps() { # dir rw jobs direct(0/1)
	local out per=$((ram_mib / $3))
	out=$(fio --name=seq --filename="$1/mfd-fio-seq.img" --rw="$2" \
		--bs=$bs --numjobs="$3" --size=${per}M \
		--offset_increment=${per}M --fallocate=none --ioengine=psync \
		--direct="$4" --end_fsync=1 --invalidate=1 --group_reporting \
		--output-format=json 2>/dev/null)
	jq -r --arg rw "$2" '.jobs[0][$rw].bw_bytes / 1e6' <<<"$out"
}

# Touch and free $1 GiB twice: free memory the host backs (see above).
warm_host() {
	local f=/dev/shm/mfd-fio-warm.$$
	[ "$1" = 0 ] && return 0
	for _ in 1 2; do
		dd if=/dev/zero of="$f" bs=1M count=$(($1 * 1024)) 2>/dev/null ||
			true
		rm -f "$f"
	done
}
warm_args=()
[ "$warm" = 0 ] || warm_args=(--warm-host "$warm")

rows=()
for dir in $dirs; do
	fs=$(stat -f -c %T "$dir")
	for d in $directs; do
		dnum=0
		[ "$d" = on ] && dnum=1
		for n in $chans; do
			img=$dir/mfd-file-fio.img
			w=$(flock "$lock" bash -c "$(declare -f fio_mbps warm_host); \
				warm_host $warm; \
				bs=$bs ram_mib=$ram_mib fio_mbps $dir write $n $dnum" ||
				echo nan)
			r=$(flock "$lock" bash -c "$(declare -f fio_mbps warm_host); \
				warm_host $warm; \
				bs=$bs ram_mib=$ram_mib fio_mbps $dir read $n $dnum" ||
				echo nan)
			rm -f "$dir"/mfd-fio-seq.img
			json=$(flock "$lock" "$bench" --ram "$ram" --image mix \
				--channels "$n" --direct-io "$d" --save "$img" \
				--restore "$img" --restore-cache cold \
				"${warm_args[@]}" "${extra[@]}" --json 2>/dev/null ||
				true)
			rjson=$json
			if [ "$restore_run" = apart ]; then
				rjson=$(flock "$lock" "$bench" --ram "$ram" \
					--image mix --channels "$n" \
					--direct-io "$d" --restore "$img" \
					--restore-cache cold "${warm_args[@]}" \
					"${extra[@]}" --json 2>/dev/null || true)
			fi
			rm -f "$img"
			line=$(jq -r --arg fs "$fs" --arg d "$d" --arg n "$n" \
				--arg w "$w" --arg r "$r" \
				--argjson rj "${rjson:-{\}}" '
				def mb(b; ms): if ms > 0 then b / ms / 1e3 else 0 end;
				(mb(.save_written_bytes; .save_ms)) as $sv |
				(mb($rj.restore_read_bytes; $rj.restore_ms)) as $rs |
				(if .status == $rj.status then .status
				 else "\(.status)/\($rj.status)" end) as $st |
				"| \($fs) | \($d) | \($n) | \($st) | " +
				"\($w | tonumber | floor) | \($sv | floor) | " +
				"\(.save_mbps | floor) | " +
				"\(($sv / ($w | tonumber)) * 100 | round / 100) | " +
				"\($r | tonumber | floor) | \($rs | floor) | " +
				"\($rj.restore_mbps | floor) | " +
				"\(($rs / ($r | tonumber)) * 100 | round / 100) |"' \
				<<<"${json:-{\}}" 2>/dev/null ||
				echo "| $fs | $d | $n | failed | $w | | | | $r | | | |")
			echo "$line"
			rows+=("$line")
		done
	done
done
echo
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); warm: $warm GiB; fio bs: $bs; restore run: $restore_run; bench args: ${extra[*]:-none}"
echo "| fs | direct | ch | status | fio write MB/s | save MB/s written | save MB/s RAM | save/fio | fio read MB/s | restore MB/s read | restore MB/s RAM | restore/fio |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
