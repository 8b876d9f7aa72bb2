/* SPDX-License-Identifier: MIT */
/* The bench's sampler, progress line and timeline CSV: see progress.h. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "progress.h"

struct sampler {
	mfd_source *src;
	mfd_dest *dst;
	uint32_t page_size;
	bool draw; /* progress line on */
	bool drawn;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
	uint64_t t0;
	uint64_t prev_pages;
	struct sample *v; /* owned by the thread until it is joined */
	size_t n, cap;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* "1.23 GB" style, decimal units as the report uses. */
static void human(char *buf, size_t len, double v, const char *unit)
{
	static const char *const pfx[] = { "", "k", "M", "G", "T" };
	unsigned i = 0;

	while (v >= 1000 && i < 4) {
		v /= 1000;
		i++;
	}
	snprintf(buf, len, "%.*f %s%s",
		 v < 10 && i ? 2 : (v < 100 && i ? 1 : 0), v, pfx[i], unit);
}

static void take(struct sampler *s)
{
	mfd_stats st;
	struct sample x = { 0 }, *prev = s->n ? &s->v[s->n - 1] : NULL;
	uint64_t now = mono_ns();

	memset(&st, 0, sizeof(st));
	if (s->src)
		mfd_source_get_stats(s->src, &st, sizeof(st));
	else
		mfd_dest_get_stats(s->dst, &st, sizeof(st));
	if (!s->n)
		s->t0 = now; /* time 0 is the first sample, exactly */
	x.t_ns = now - s->t0;
	x.phase = st.phase;
	x.round = st.round;
	x.wire_bytes = st.wire_bytes;
	x.pending_bytes = st.pending_bytes;
	x.budget_ms = st.expected_downtime_ns &&
				      st.expected_downtime_ns < UINT64_MAX / 8
			      ? (double)st.expected_downtime_ns / 1e6
			      : -1;
	x.over_part = (int)st.over_part;
	if (st.bandwidth_bps)
		x.expected_downtime_ms = (double)st.pending_bytes * 1e3 /
					 (double)st.bandwidth_bps;
	if (prev && x.t_ns > prev->t_ns) {
		double dt = (double)(x.t_ns - prev->t_ns) / 1e9;
		double sent = (double)(st.pages - s->prev_pages) * s->page_size;
		double grown = (double)x.pending_bytes -
			       (double)prev->pending_bytes + sent;

		x.throughput_bps =
			(double)(x.wire_bytes - prev->wire_bytes) / dt;
		if (x.phase == MFD_PHASE_PRECOPY &&
		    prev->phase == MFD_PHASE_PRECOPY && x.round > 0 &&
		    grown > 0)
			x.dirty_bps = grown / dt;
	}
	/* Before the first round ends the library has no bandwidth yet:
	 * estimate with the current throughput. */
	if (!st.bandwidth_bps && x.throughput_bps > 0)
		x.expected_downtime_ms =
			(double)st.pending_bytes * 1e3 / x.throughput_bps;
	s->prev_pages = st.pages;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 256;
		struct sample *v = realloc(s->v, cap * sizeof(*v));

		if (!v)
			return; /* a gap in the timeline, not a failure */
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = x;
}

static void draw(struct sampler *s)
{
	const struct sample *x = &s->v[s->n - 1];
	char rem[32], tput[32], dirty[32];

	if (!s->draw || !s->n)
		return;
	human(rem, sizeof(rem), (double)x->pending_bytes, "B");
	human(tput, sizeof(tput), x->throughput_bps, "B/s");
	human(dirty, sizeof(dirty), x->dirty_bps, "B/s");
	fprintf(stderr,
		"\r\033[K%6.1fs %-10s round %-3" PRIu32
		" remaining %-10s %-12s dirty %-12s downtime ~%.0f ms",
		(double)x->t_ns / 1e9, mfd_phase_name(x->phase), x->round, rem,
		tput, dirty, x->expected_downtime_ms);
	fflush(stderr);
	s->drawn = true;
}

static void *sampler_thread(void *arg)
{
	struct sampler *s = arg;
	uint64_t k = 1;

	pthread_mutex_lock(&s->lock);
	while (!s->stop) {
		uint64_t deadline = s->t0 + k * SAMPLE_INTERVAL_NS;
		struct timespec ts = {
			.tv_sec = (time_t)(deadline / 1000000000ULL),
			.tv_nsec = (long)(deadline % 1000000000ULL)
		};
		int rc = pthread_cond_timedwait(&s->cond, &s->lock, &ts);

		if (s->stop)
			break;
		if (rc != ETIMEDOUT)
			continue; /* spurious wakeup */
		take(s);
		draw(s);
		/* One sample per interval. When this thread could not run
		 * for longer than that (CPU starved), the sample just taken
		 * covers the missed intervals: no run of zero-length rows. */
		k = (mono_ns() - s->t0) / SAMPLE_INTERVAL_NS + 1;
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

int sampler_start(struct sampler **out, mfd_source *src, mfd_dest *dst,
		  uint32_t page_size, bool progress)
{
	struct sampler *s = calloc(1, sizeof(*s));
	pthread_condattr_t ca;
	int err;

	if (!s)
		return -ENOMEM;
	s->src = src;
	s->dst = dst;
	s->page_size = page_size;
	s->draw = progress && isatty(STDERR_FILENO);
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &ca);
	pthread_condattr_destroy(&ca);
	s->t0 = mono_ns();
	take(s);
	err = pthread_create(&s->thread, NULL, sampler_thread, s);
	if (err) {
		pthread_cond_destroy(&s->cond);
		pthread_mutex_destroy(&s->lock);
		free(s->v);
		free(s);
		return -err;
	}
	*out = s;
	return 0;
}

void sampler_stop(struct sampler *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->stop = true;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->thread, NULL);
	/* The end of the last (partial) interval. */
	take(s);
	if (s->drawn)
		fprintf(stderr, "\r\033[K");
}

uint64_t sampler_t0(const struct sampler *s)
{
	return s->t0;
}

const struct sample *sampler_samples(const struct sampler *s, size_t *n)
{
	*n = s->n;
	return s->v;
}

int sampler_write_csv(const struct sampler *s, const char *path)
{
	FILE *f = fopen(path, "w");
	int err = 0;

	if (!f) {
		err = -errno;
		fprintf(stderr, "multifd-bench: --timeline %s: %s\n", path,
			strerror(-err));
		return err;
	}
	fprintf(f, "time_s,bytes_sent,throughput_mbps,pending_bytes,"
		   "dirty_rate_mbps,phase,round,expected_downtime_ms,"
		   "budget_ms,over_part\n");
	for (size_t i = 0; i < s->n; i++) {
		const struct sample *x = &s->v[i];

		fprintf(f,
			"%.6f,%" PRIu64 ",%.1f,%" PRIu64 ",%.1f,%s,%" PRIu32
			",%.1f,%.1f,%s\n",
			(double)x->t_ns / 1e9, x->wire_bytes,
			x->throughput_bps / 1e6, x->pending_bytes,
			x->dirty_bps / 1e6, mfd_phase_name(x->phase), x->round,
			x->expected_downtime_ms, x->budget_ms,
			mfd_down_part_name(x->over_part));
	}
	if (fclose(f)) {
		err = -errno;
		fprintf(stderr, "multifd-bench: --timeline %s: %s\n", path,
			strerror(-err));
	}
	return err;
}

void sampler_free(struct sampler *s)
{
	if (!s)
		return;
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s->v);
	free(s);
}
