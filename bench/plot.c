/* SPDX-License-Identifier: MIT */
/* --plot through gnuplot (Debian package gnuplot-nox): see plot.h. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "plot.h"

bool plot_available(void)
{
	const char *path = getenv("PATH");
	char dir[4096];

	if (!path)
		path = "/usr/bin:/bin";
	while (*path) {
		size_t n = strcspn(path, ":");

		if (n && n < sizeof(dir) - 16) {
			memcpy(dir, path, n);
			strcpy(dir + n, "/gnuplot");
			if (!access(dir, X_OK))
				return true;
		}
		path += n + (path[n] == ':');
	}
	return false;
}

/* A string literal for gnuplot: single quotes, none inside. */
static void quoted(FILE *f, const char *s)
{
	fputc('\'', f);
	for (; *s; s++)
		fputc(*s == '\'' ? '"' : *s, f);
	fputc('\'', f);
}

int plot_png(const char *path, const struct sample *v, size_t n,
	     double switch_s, double down_s, const char *title)
{
	double tmax = n ? (double)v[n - 1].t_ns / 1e9 : 1;
	FILE *g;
	int st;

	if (!plot_available()) {
		fprintf(stderr,
			"multifd-bench: --plot needs gnuplot, which is not "
			"installed (Debian: apt-get install gnuplot-nox, or "
			"scripts/deps.sh); the timeline is still available "
			"with --timeline FILE.csv\n");
		return -1;
	}
	if (n < 2) {
		fprintf(stderr, "multifd-bench: --plot: too few samples\n");
		return -1;
	}
	g = popen("gnuplot", "w");
	if (!g) {
		fprintf(stderr,
			"multifd-bench: --plot: cannot run gnuplot: "
			"%s\n",
			strerror(errno));
		return -1;
	}
	fprintf(g, "set terminal pngcairo size 1200,650 font 'Sans,11'\n"
		   "set output ");
	quoted(g, path);
	fprintf(g, "\nset title ");
	quoted(g, title);
	fprintf(g,
		" noenhanced\n"
		"set xlabel 'time since start (s)'\n"
		"set ylabel 'throughput (MB/s)' textcolor rgb '#1f5fbf'\n"
		"set y2label 'pending (MiB)' textcolor rgb '#c0392b'\n"
		"set ytics nomirror\nset y2tics\nset grid xtics ytics\n"
		"set key below horizontal\n"
		"set datafile missing '?'\n"
		"set yrange [0:*]\nset y2range [0:*]\n"
		"set xrange [0:%.3f]\n"
		"set datafile separator ','\n",
		tmax * 1.02);
	if (switch_s >= 0) {
		double w = down_s > 0 ? down_s : 0;

		fprintf(g,
			"set object 1 rect from %.6f, graph 0 to %.6f, graph 1 "
			"behind fc rgb '#f5b041' fs solid 0.35 noborder\n"
			"set arrow 1 from %.6f, graph 0 to %.6f, graph 1 "
			"nohead lw 2 lc rgb '#7d3c98' dt 2\n"
			"set label 1 'switchover at %.3f s, downtime "
			"%.1f ms' at %.6f, graph 0.93 offset 0.5,0 "
			"textcolor rgb '#7d3c98'\n",
			switch_s, switch_s + w, switch_s, switch_s, switch_s,
			w * 1e3, switch_s);
		/* Keep the label inside when the switchover is late. */
		if (switch_s > tmax * 0.6)
			fprintf(g, "set label 1 right offset -0.5,0\n");
	}
	fprintf(g, "$D << EOD\n");
	/* Before the migration starts nothing is pending yet: no point. */
	for (size_t i = 0; i < n; i++) {
		fprintf(g, "%.6f,%.3f,", (double)v[i].t_ns / 1e9,
			v[i].throughput_bps / 1e6);
		if (v[i].phase == MFD_PHASE_NONE ||
		    v[i].phase == MFD_PHASE_SETUP)
			fprintf(g, "?\n");
		else
			fprintf(g, "%.3f\n",
				(double)v[i].pending_bytes / 1048576.0);
	}
	fprintf(g,
		"EOD\n"
		"plot $D using 1:2 axes x1y1 with fsteps lw 2 "
		"lc rgb '#1f5fbf' title 'throughput (MB/s, per 100 ms)', \\\n"
		"     $D using 1:3 axes x1y2 with lines lw 2 "
		"lc rgb '#c0392b' title 'pending: dirty, not yet sent "
		"(MiB)'\n");
	st = pclose(g);
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "multifd-bench: --plot: gnuplot failed\n");
		return -1;
	}
	return 0;
}

int bench_outputs(const struct sampler *s, const char *timeline,
		  const char *plot, uint64_t stop_ns, uint64_t downtime_ns,
		  const char *title)
{
	const struct sample *v;
	size_t n;
	int ret = 0;

	if (!s)
		return timeline || plot ? -1 : 0;
	v = sampler_samples(s, &n);
	if (timeline && sampler_write_csv(s, timeline))
		ret = -1;
	if (plot) {
		double sw = -1;

		if (stop_ns && stop_ns >= sampler_t0(s))
			sw = (double)(stop_ns - sampler_t0(s)) / 1e9;
		if (plot_png(plot, v, n, sw, (double)downtime_ns / 1e9, title))
			ret = -1;
	}
	return ret;
}
