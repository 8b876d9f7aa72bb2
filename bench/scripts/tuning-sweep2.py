#!/usr/bin/env python3
"""The second set of measurements behind docs/tuning.md: a busy guest
(downtime limit against dirty rate), max-bandwidth and auto-converge,
compression, and the I/O engine. Prints one row per run and, per
configuration, a row of medians. Run under the benchmark lock, as root
(shaped links go through bench/scripts/netns.sh):

  flock /tmp/mfd-bench.lock bench/scripts/tuning-sweep2.py SECTION [REPEATS]

SECTION: downtime | bandwidth | autoconverge-1gbit | compression | io-engine |
         io-engine-interleaved (one run per line, engines alternated)
"""
import json
import os
import statistics
import subprocess
import sys

os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BENCH = os.environ.get("BENCH", "build/multifd-bench")
REPS = int(sys.argv[2]) if len(sys.argv) > 2 else 3

COLS = [
    ("rounds", lambda r: r["rounds"], "%d"),
    ("down_ms", lambda r: r["downtime_ms"], "%.1f"),
    ("exp_ms", lambda r: r["expected_downtime_ms"], "%.1f"),
    ("total_ms", lambda r: r["total_ms"], "%.0f"),
    ("wire_MB", lambda r: r["wire_bytes"] / 1e6, "%.0f"),
    ("MB/s", lambda r: r["throughput_mbps"], "%.0f"),
    ("src_cpu_s", lambda r: r["src_cpu_s"], "%.3f"),
    ("dst_cpu_s", lambda r: r["dst_cpu_s"], "%.3f"),
    ("src_s/GiB", lambda r: r["src_cpu_s_per_gib"], "%.3f"),
    ("dst_s/GiB", lambda r: r["dst_cpu_s_per_gib"], "%.3f"),
    ("thr%", lambda r: r["throttle_pct"], "%d"),
    ("slow%", lambda r: r.get("guest_slowdown_pct", 0), "%.1f"),
]


def run(link, label, args, reps=None):
    cmd = [BENCH, "--json", "--verify", "off"] + args
    if link != "loopback":
        cmd = ["bench/scripts/netns.sh", "--rate", link, "--bench", BENCH, "--"] + cmd[1:]
    rows = []
    n = 0
    for _ in range(reps or REPS):
        p = subprocess.run(cmd, capture_output=True, text=True)
        n += 1
        line = [l for l in p.stdout.splitlines() if l.startswith("{")]
        if not line:
            print("%-9s %-28s FAILED rc=%d %s" % (link, label, p.returncode,
                  p.stderr.strip().splitlines()[-1:] ), flush=True)
            continue
        r = json.loads(line[-1])
        # As bench/scripts/stats.jq run_ok; a non-zero exit is never ok.
        ok = (r.get("status") == "ok" and r.get("memcmp_ok") is not False
              and p.returncode == 0)
        print("%-9s %-28s %-6s %s%s" % (link, label, "ok" if ok else "FAILED",
              " ".join(f % g(r) for _, g, f in COLS) if ok else
              "%s memcmp_ok=%s rc=%d" % (r.get("error", ""), r.get("memcmp_ok"),
                                         p.returncode),
              " forced" if r.get("forced") else ""), flush=True)
        if ok:
            rows.append(r)
    print("%-9s %-28s %d of %d ok" % (link, label, len(rows), n), flush=True)
    if len(rows) > 1:
        med = [statistics.median(g(r) for r in rows) for _, g, _ in COLS]
        print("%-9s %-28s %-6s %s" % (link, label, "MEDIAN",
              " ".join(f % m for (_, _, f), m in zip(COLS, med))), flush=True)


def header(what):
    k = subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout.strip()
    d = subprocess.run(["date", "-u", "+%F %T"], capture_output=True, text=True).stdout.strip()
    print("# %s UTC %s %d cores, %s, %d run(s) each, --verify off" %
          (d, k, os.cpu_count(), what, REPS))
    print("%-9s %-28s %-6s %s" % ("link", "config", "status",
          " ".join(n for n, _, _ in COLS)), flush=True)


def main():
    sec = sys.argv[1] if len(sys.argv) > 1 else ""
    if sec == "downtime":
        header("--ram 512M --image mix --writers 2 --pattern hotset")
        for link in ["loopback", "1gbit"]:
            for rate in [100, 300]:
                for dl in [100, 300]:
                    run(link, "dirty=%d dl=%dms" % (rate, dl),
                        ["--ram", "512M", "--image", "mix", "--writers", "2",
                         "--pattern", "hotset", "--dirty-rate", str(rate),
                         "--downtime-limit", str(dl)])
    elif sec == "bandwidth":
        header("--ram 512M --image mix --writers 2 --pattern hotset, loopback")
        base = ["--ram", "512M", "--image", "mix", "--writers", "2",
                "--pattern", "hotset"]
        for bw in ["0", "400M", "100M"]:
            run("loopback", "dirty=100 maxbw=%s" % bw,
                base + ["--dirty-rate", "100", "--max-bandwidth", bw])
        for ac in ["off", "on"]:
            run("loopback", "dirty=300 maxbw=100M ac=%s" % ac,
                base + ["--dirty-rate", "300", "--max-bandwidth", "100M",
                        "--auto-converge", ac])
    elif sec == "compression":
        header("--ram 512M --image mix, idle guest")
        for link in ["1gbit", "loopback"]:
            for c in [["none"], ["zstd", "1"], ["zstd", "3"]]:
                a = ["--ram", "512M", "--image", "mix", "--compression", c[0]]
                if len(c) > 1:
                    a += ["--zstd-level", c[1]]
                run(link, "/".join(c), a)
    elif sec == "io-engine":
        header("--ram 1G, idle guest, loopback")
        for img in ["random", "mix"]:
            for e in ["sockets", "uring"]:
                run("loopback", "%s %s" % (img, e),
                    ["--ram", "1G", "--image", img, "--io-engine", e])
    elif sec == "autoconverge-1gbit":
        header("--ram 512M --image mix --writers 2 --pattern hotset "
               "--dirty-rate 300 --downtime-limit 300, 1gbit")
        for ac in ["off", "on"]:
            run("1gbit", "dirty=300 dl=300ms ac=%s" % ac,
                ["--ram", "512M", "--image", "mix", "--writers", "2",
                 "--pattern", "hotset", "--dirty-rate", "300",
                 "--downtime-limit", "300", "--auto-converge", ac])
    elif sec == "io-engine-interleaved":
        header("--ram 1G --image random, idle guest, loopback, engines alternated")
        for _ in range(REPS):
            for e in ["sockets", "uring"]:
                run("loopback", "random %s" % e,
                    ["--ram", "1G", "--image", "random", "--io-engine", e], 1)
    else:
        sys.exit(__doc__)


main()
