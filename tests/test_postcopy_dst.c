/* SPDX-License-Identifier: MIT */
/*
 * The destination's post-copy state (multifd/postcopy_dst.c) without
 * sockets: pre-copy pages arrive, DISCARD drops the stale ones, the switch
 * registers guest memory, and guest threads run on it while an urgent lane
 * answers their requests and a bulk lane streams the rest.
 *
 * Checked: every page ends as the source's content at the stop (stale
 * pre-copy copies never seen), except those the guest wrote on the
 * destination, which hold what it wrote; a faulting reader never sees a
 * torn page; each missing page is placed exactly once; requests are valid
 * PAGE_REQ ranges; a zero page of pre-copy is resolved without a request.
 * Exit 77 without userfaultfd. MFD_TEST_SEED=n replays the random reads.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <pthread.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "multifd/multifd.h"
#include "multifd/postcopy_dst.h"
#include "pagestamp.h"

#define NB    2
#define LANES 2
static const uint64_t npages[NB] = { 512, 256 };

/* Stale in pre-copy (DISCARD), as page ranges. */
static const struct mfd__page_range stale[] = {
	{ 0, 10 * PS, 10 * PS },
	{ 0, 100 * PS, 64 * PS },
	{ 1, 0, 4 * PS },
	{ 1, 200 * PS, 56 * PS },
};
#define NSTALE (10 + 64 + 4 + 56)
/* Pages the guest writes on the destination (both stale). */
static const struct {
	unsigned b;
	uint64_t p;
} written[] = { { 0, 15 }, { 1, 210 } };

static uint64_t gid(unsigned b, uint64_t p)
{
	return b * 100000 + p;
}

static bool is_stale(unsigned b, uint64_t p)
{
	for (unsigned i = 0; i < sizeof(stale) / sizeof(stale[0]); i++)
		if (stale[i].block == b && p * PS >= stale[i].offset &&
		    p * PS < stale[i].offset + stale[i].length)
			return true;
	return false;
}

static bool zero_in_precopy(unsigned b, uint64_t p)
{
	return p % 37 == 3 && !is_stale(b, p);
}

static bool is_written(unsigned b, uint64_t p)
{
	for (unsigned i = 0; i < 2; i++)
		if (written[i].b == b && written[i].p == p)
			return true;
	return false;
}

#define QCAP 4096
struct sim {
	struct mfd__ramblock rb[NB];
	struct mfd__block_desc desc[NB];
	struct mfd__wire_limits lim;
	struct mfd__pc_dst pc;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct mfd__page_range q[QCAP];
	unsigned qhead, qtail, bad_requests, lane_seen[LANES];
	bool stop;
	unsigned placed; /* atomic */
	unsigned bad_reads;
	uint64_t seed;
};

/* The request callback: checks the bytes a PAGE_REQ would carry. */
static int on_request(void *ctx, unsigned lane, const struct mfd__page_range *r)
{
	struct sim *s = ctx;
	uint8_t buf[MFD_RANGE_SIZE];
	struct mfd__page_range d;

	mfd__page_req_encode(r, buf);
	int ok = mfd__page_req_decode(buf, &s->lim, &d) == 0 &&
		 d.block == r->block && d.offset == r->offset &&
		 d.length == PS && lane < LANES &&
		 is_stale(r->block, r->offset / PS);
	pthread_mutex_lock(&s->lock);
	if (!ok)
		s->bad_requests++;
	if (lane < LANES)
		s->lane_seen[lane]++;
	if (s->qtail - s->qhead < QCAP)
		s->q[s->qtail++ % QCAP] = *r;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static void place(struct sim *s, unsigned b, uint64_t p)
{
	uint8_t page[PS];
	stamp(page, gid(b, p), 1); /* the source's content at the stop */
	int ret = mfd__pc_dst_place(&s->pc, b, p * PS, page);
	assert_true(ret == 0 || ret == 1);
	__atomic_fetch_add(&s->placed, (unsigned)ret, __ATOMIC_RELAXED);
}

/* The source's urgent lane: the page asked for and up to three stale
 * neighbours after it. */
static void *lane_main(void *arg)
{
	struct sim *s = arg;
	pthread_mutex_lock(&s->lock);
	for (;;) {
		while (s->qhead == s->qtail && !s->stop)
			pthread_cond_wait(&s->cond, &s->lock);
		if (s->qhead == s->qtail)
			break;
		struct mfd__page_range r = s->q[s->qhead++ % QCAP];
		pthread_mutex_unlock(&s->lock);
		uint64_t p0 = r.offset / PS;
		/* A page that should not have been asked for (counted in
		 * on_request) is answered all the same, with zeros and past
		 * the received bitmap, so that its reader does not wait
		 * forever and the test fails rather than hangs. */
		if (!is_stale(r.block, p0))
			assert_true(
				mfd__uffd_place(&s->pc.u,
						s->rb[r.block].host + p0 * PS,
						NULL, PS) >= 0);
		for (uint64_t p = p0; p < p0 + 4 && p < npages[r.block]; p++)
			if (is_stale(r.block, p))
				place(s, r.block, p);
		pthread_mutex_lock(&s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* The bulk channels: every stale page in address order, slowly. */
static void *bulk_main(void *arg)
{
	struct sim *s = arg;
	unsigned n = 0;
	for (unsigned b = 0; b < NB; b++)
		for (uint64_t p = 0; p < npages[b]; p++)
			if (is_stale(b, p)) {
				place(s, b, p);
				if (++n % 16 == 0)
					usleep(1000);
			}
	return NULL;
}

struct guest {
	struct sim *s;
	unsigned id;
	pthread_t t;
};

/* A reader: whole pages only, of the right generation. */
static void *reader_main(void *arg)
{
	struct guest *g = arg;
	struct sim *s = g->s;
	uint64_t x = s->seed + g->id * 0x9e3779b97f4a7c15ULL;
	uint8_t copy[PS];
	unsigned bad = 0;

	for (unsigned k = 0; k < 2000; k++) {
		x = ps_mix(x + k);
		unsigned b = (unsigned)(x >> 40) % NB;
		uint64_t p = x % npages[b];
		if (is_written(b, p))
			continue;
		memcpy(copy, s->rb[b].host + p * PS, PS);
		if (zero_in_precopy(b, p))
			bad += !is_zero(copy);
		else
			bad += stamp_gen(copy, gid(b, p)) !=
			       (is_stale(b, p) ? 1 : 0);
	}
	pthread_mutex_lock(&s->lock);
	s->bad_reads += bad;
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* The writer: the guest's own writes on the destination, logged. */
static void *writer_main(void *arg)
{
	struct guest *g = arg;
	struct sim *s = g->s;
	for (unsigned i = 0; i < 2; i++)
		stamp(s->rb[written[i].b].host + written[i].p * PS,
		      gid(written[i].b, written[i].p), 99);
	return NULL;
}

static struct sim *sim_new(void)
{
	struct sim *s = calloc(1, sizeof(*s));
	assert_non_null(s);
	for (unsigned b = 0; b < NB; b++) {
		void *m = mmap(NULL, npages[b] * PS, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		assert_true(m != MAP_FAILED);
		char name[16];
		snprintf(name, sizeof(name), "b%u", b);
		assert_int_equal(mfd__ramblock_init(&s->rb[b], name, m,
						    npages[b] * PS, PS),
				 0);
		snprintf(s->desc[b].name, sizeof(s->desc[b].name), "%s", name);
		s->desc[b].size = npages[b] * PS;
		s->desc[b].page_size = PS;
	}
	s->lim = (struct mfd__wire_limits){ .nblocks = NB,
					    .packet_pages = 128,
					    .blocks = s->desc,
					    .features = MFD_FEAT_POSTCOPY };
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	assert_int_equal(
		mfd__pc_dst_init(&s->pc, s->rb, NB, LANES, on_request, s), 0);
	/* Pre-copy: every page arrives, zero pages without being written. */
	for (unsigned b = 0; b < NB; b++)
		for (uint64_t p = 0; p < npages[b]; p++) {
			if (!zero_in_precopy(b, p))
				stamp(s->rb[b].host + p * PS, gid(b, p), 0);
			mfd__pc_dst_received(&s->pc, b, p * PS);
		}
	assert_true(mfd__pc_dst_complete(&s->pc));
	return s;
}

static void sim_free(struct sim *s)
{
	mfd__pc_dst_destroy(&s->pc);
	for (unsigned b = 0; b < NB; b++) {
		munmap(s->rb[b].host, s->rb[b].size);
		mfd__ramblock_destroy(&s->rb[b]);
	}
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s);
}

static uint8_t *discard_msg(const struct mfd__page_range *r, uint32_t n,
			    size_t *len)
{
	*len = mfd__discard_size(n);
	uint8_t *p = malloc(*len);
	assert_non_null(p);
	assert_int_equal(mfd__discard_encode(r, n, p, *len), (int)*len);
	return p;
}

static void test_postcopy_run(void **state)
{
	(void)state;
	struct sim *s = sim_new();
	size_t len;
	s->seed = ps_seed();

	/* A list with one bad range is refused whole: nothing dropped. */
	struct mfd__page_range bad[2] = { stale[0], { 1, 256 * PS, PS } };
	uint8_t *msg = discard_msg(bad, 2, &len);
	assert_int_equal(mfd__pc_dst_discard(&s->pc, msg, len, &s->lim),
			 MFD_EOFFSET);
	free(msg);
	assert_true(mfd__pc_dst_complete(&s->pc));
	assert_int_equal(stamp_gen(s->rb[0].host + 10 * PS, gid(0, 10)), 0);
	/* Placing before the switch is a caller's error. */
	assert_int_equal(mfd__pc_dst_place(&s->pc, 0, 0, NULL), MFD_ESTATE);

	msg = discard_msg(stale, 4, &len);
	assert_int_equal(mfd__pc_dst_discard(&s->pc, msg, len, &s->lim), 0);
	assert_int_equal(s->pc.present, s->pc.total - NSTALE);
	int ret = mfd__pc_dst_switch(&s->pc);
	if (ret == -ENOTSUP) {
		free(msg);
		sim_free(s);
		fprintf(stderr, "userfaultfd not available: skipped\n");
		exit(77);
	}
	assert_int_equal(ret, 0);
	assert_int_equal(mfd__pc_dst_discard(&s->pc, msg, len, &s->lim),
			 MFD_ESTATE);
	free(msg);

	/* The guest runs first; the bulk lane starts once it has faulted. */
	pthread_t lane, bulk;
	struct guest g[4];
	assert_int_equal(pthread_create(&lane, NULL, lane_main, s), 0);
	for (unsigned i = 0; i < 4; i++) {
		g[i] = (struct guest){ .s = s, .id = i };
		assert_int_equal(pthread_create(&g[i].t, NULL,
						i ? reader_main : writer_main,
						&g[i]),
				 0);
	}
	pthread_mutex_lock(&s->lock);
	while (s->qtail == 0)
		pthread_cond_wait(&s->cond, &s->lock);
	pthread_mutex_unlock(&s->lock);
	assert_int_equal(pthread_create(&bulk, NULL, bulk_main, s), 0);
	for (unsigned i = 0; i < 4; i++)
		pthread_join(g[i].t, NULL);
	pthread_join(bulk, NULL);
	assert_true(mfd__pc_dst_complete(&s->pc));

	/* Every page: the guest's writes, the source's content at the stop,
	 * pre-copy's kept pages, zero pages. */
	for (unsigned b = 0; b < NB; b++)
		for (uint64_t p = 0; p < npages[b]; p++) {
			const uint8_t *m = s->rb[b].host + p * PS;
			if (is_written(b, p))
				assert_int_equal(stamp_gen(m, gid(b, p)), 99);
			else if (zero_in_precopy(b, p))
				assert_true(is_zero(m));
			else
				assert_int_equal(stamp_gen(m, gid(b, p)),
						 is_stale(b, p) ? 1 : 0);
		}
	pthread_mutex_lock(&s->lock);
	s->stop = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	pthread_join(lane, NULL);

	/* The fault thread still runs: its counters are read atomically. */
	uint64_t faults = __atomic_load_n(&s->pc.faults, __ATOMIC_RELAXED);
	uint64_t requests = __atomic_load_n(&s->pc.requests, __ATOMIC_RELAXED);
	uint64_t zero = __atomic_load_n(&s->pc.local_zero, __ATOMIC_RELAXED);
	fprintf(stderr,
		"faults %llu, requests %llu (lanes %u/%u), local zero %llu, "
		"placed %u of %u\n",
		(unsigned long long)faults, (unsigned long long)requests,
		s->lane_seen[0], s->lane_seen[1], (unsigned long long)zero,
		s->placed, NSTALE);
	assert_int_equal(s->bad_reads, 0);
	assert_int_equal(s->bad_requests, 0);
	assert_int_equal(s->placed, NSTALE); /* each stale page once */
	assert_true(requests >= 1);
	assert_true(zero >= 1);
	/* Every request answered by a placement has a latency (a request
	 * for a page bulk placed meanwhile has none), and guest threads
	 * were blocked (a fault racing with its page's placement may go
	 * uncounted, so no tighter bound). */
	struct mfd__lathist *lat = &s->pc.latency;
	uint64_t p50 = mfd__lathist_quantile(lat, 0.5);
	uint64_t p99 = mfd__lathist_quantile(lat, 0.99);
	fprintf(stderr,
		"request latency: %llu answered, p50 <= %llu us, p99 <= %llu "
		"us, max %llu us; blocktime %llu us\n",
		(unsigned long long)lat->count, (unsigned long long)p50 / 1000,
		(unsigned long long)p99 / 1000,
		(unsigned long long)lat->max_ns / 1000,
		(unsigned long long)s->pc.blocktime_ns / 1000);
	assert_true(lat->count >= 1 && lat->count <= requests);
	assert_true(p50 <= p99 && p99 <= lat->max_ns);
	assert_true(s->pc.blocktime_ns > 0);
	assert_int_equal(__atomic_load_n(&s->pc.err, __ATOMIC_ACQUIRE), 0);
	sim_free(s);
}

/* A packet's pages: runs placed whole, pages in place skipped, each page
 * counted once. No guest runs, so nothing faults. */
static void test_place_pages(void **state)
{
	(void)state;
	struct sim *s = sim_new();
	size_t len;
	uint8_t *msg = discard_msg(stale, 4, &len);
	assert_int_equal(mfd__pc_dst_discard(&s->pc, msg, len, &s->lim), 0);
	free(msg);
	int ret = mfd__pc_dst_switch(&s->pc);
	if (ret == -ENOTSUP) {
		sim_free(s);
		skip();
	}
	assert_int_equal(ret, 0);
	uint64_t before = s->pc.present;

	uint8_t one[PS];
	stamp(one, gid(0, 11), 1);
	assert_int_equal(mfd__pc_dst_place(&s->pc, 0, 11 * PS, one), 1);
	assert_int_equal(mfd__pc_dst_place(&s->pc, 0, 11 * PS, one), 0);

	/* 10, 11 (in place), 12, then 14 and 15: runs 10 and 12, 14-15. */
	const uint64_t off[] = { 10 * PS, 11 * PS, 12 * PS, 14 * PS, 15 * PS };
	static uint8_t pkt[5 * PS];
	for (unsigned i = 0; i < 5; i++)
		stamp(pkt + i * PS, gid(0, off[i] / PS), i == 1 ? 5 : 1);
	assert_int_equal(mfd__pc_dst_place_pages(&s->pc, 0, off, 5, pkt), 4);
	for (unsigned i = 0; i < 5; i++)
		assert_int_equal(
			stamp_gen(s->rb[0].host + off[i], gid(0, off[i] / PS)),
			1); /* page 11 kept its first copy */
	assert_false(mfd__pc_received(&s->pc.rx[0], 13));
	/* Zero pages, and the same packets again: nothing new. */
	const uint64_t zoff[] = { 16 * PS, 17 * PS };
	assert_int_equal(mfd__pc_dst_place_pages(&s->pc, 0, zoff, 2, NULL), 2);
	assert_true(is_zero(s->rb[0].host + 16 * PS));
	assert_true(is_zero(s->rb[0].host + 17 * PS));
	assert_int_equal(mfd__pc_dst_place_pages(&s->pc, 0, zoff, 2, NULL), 0);
	assert_int_equal(mfd__pc_dst_place_pages(&s->pc, 0, off, 5, pkt), 0);
	assert_int_equal(s->pc.present, before + 7);
	sim_free(s);
}

/* One block of n pages for pc: 0..47 populated (0xab), the rest never
 * touched; every third page received. */
static uint8_t *one_block(uint64_t n, struct mfd__ramblock *rb,
			  struct mfd__pc_dst *pc)
{
	uint8_t *m = mmap(NULL, n * PS, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(m != MAP_FAILED);
	assert_int_equal(mfd__ramblock_init(rb, "r", m, n * PS, PS), 0);
	assert_int_equal(mfd__pc_dst_init(pc, rb, 1, 1, on_request, NULL), 0);
	memset(m, 0xab, 48 * PS);
	for (uint64_t p = 0; p < n; p += 3)
		mfd__pc_dst_received(pc, 0, p * PS);
	return m;
}

/* Before the switch, every page not received is dropped if it holds
 * anything (populated by a prefault helper or khugepaged), whether or not
 * it was dropped before; received pages keep their bytes. */
static void test_drop_missing(void **state)
{
	(void)state;
	const uint64_t n = 64;
	struct mfd__ramblock rb;
	struct mfd__pc_dst pc;
	uint8_t *m = one_block(n, &rb, &pc);
	/* 20..29 dropped already (a DISCARD), 25 populated again since. */
	assert_int_equal(madvise(m + 20 * PS, 10 * PS, MADV_DONTNEED), 0);
	m[25 * PS + 7] = 1;
	assert_int_equal(mfd__pc_dst_drop_missing(&pc), 0);
	for (uint64_t p = 0; p < n; p++) {
		bool kept = p % 3 == 0 && p < 48 && (p < 20 || p >= 30);
		for (unsigned i = 0; i < PS; i += 511)
			assert_int_equal(m[p * PS + i], kept ? 0xab : 0);
	}
	assert_int_equal(m[25 * PS + 7], 0);
	mfd__pc_dst_destroy(&pc);
	mfd__ramblock_destroy(&rb);
	munmap(m, n * PS);
}

static bool resident(const uint8_t *addr)
{
	unsigned char v = 0;
	assert_int_equal(mincore((void *)addr, PS, &v), 0);
	return v & 1;
}

/* mfd__pc_dst_prepare (the destination's first DISCARD): registers and
 * drops the pages not received once; a later call (more DISCARDs,
 * SWITCH) drops nothing, so that the switch costs neither. */
static void test_prepare_once(void **state)
{
	(void)state;
	const uint64_t n = 64;
	struct mfd__ramblock rb;
	struct mfd__pc_dst pc;
	uint8_t page[PS];
	uint8_t *m = one_block(n, &rb, &pc);
	int ret = mfd__pc_dst_prepare(&pc);
	if (ret == -ENOTSUP) {
		mfd__pc_dst_destroy(&pc);
		mfd__ramblock_destroy(&rb);
		munmap(m, n * PS);
		skip();
	}
	assert_int_equal(ret, 0);
	assert_true(pc.registered && pc.prepared);
	/* Registered: a missing page is not touched here (it would wait
	 * for a fault thread), only looked at with mincore. */
	for (uint64_t p = 0; p < n; p++)
		assert_int_equal(resident(m + p * PS), p % 3 == 0 && p < 48);
	/* Populated since, not received: a second call leaves it. */
	memset(page, 0xcd, PS);
	assert_int_equal(mfd__uffd_place(&pc.u, m + PS, page, PS), 1);
	assert_int_equal(mfd__pc_dst_prepare(&pc), 0);
	assert_true(resident(m + PS));
	assert_int_equal(memcmp(m + PS, page, PS), 0);
	assert_int_equal(m[0], 0xab);
	/* The switch after it, and a call after the switch: nothing. */
	assert_int_equal(mfd__pc_dst_switch(&pc), 0);
	assert_int_equal(mfd__pc_dst_prepare(&pc), 0);
	assert_int_equal(memcmp(m + PS, page, PS), 0);
	mfd__pc_dst_destroy(&pc);
	mfd__ramblock_destroy(&rb);
	munmap(m, n * PS);
}

static void test_init_args(void **state)
{
	(void)state;
	struct mfd__pc_dst pc;
	struct mfd__ramblock rb;
	assert_int_equal(mfd__pc_dst_init(&pc, &rb, 0, 1, on_request, NULL),
			 -EINVAL);
	assert_int_equal(mfd__pc_dst_init(&pc, &rb, 1, 0, on_request, NULL),
			 -EINVAL);
	assert_int_equal(mfd__pc_dst_init(&pc, &rb, 1, 1, NULL, NULL), -EINVAL);
	mfd__pc_dst_destroy(&pc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_args),
		cmocka_unit_test(test_postcopy_run),
		cmocka_unit_test(test_place_pages),
		cmocka_unit_test(test_drop_missing),
		cmocka_unit_test(test_prepare_once),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
