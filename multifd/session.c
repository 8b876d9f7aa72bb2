/* SPDX-License-Identifier: MIT */
/* State and steps the source and the destination share (session.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multifd/channels/tls.h"
#include "multifd/session.h"

void mfd__session_init(struct mfd__session *ss, const mfd_config *cfg)
{
	if (cfg)
		ss->cfg = *cfg;
	else
		mfd__config_defaults(&ss->cfg);
}

void mfd__session_destroy(struct mfd__session *ss)
{
	for (unsigned i = 0; i < ss->nblocks; i++)
		mfd__ramblock_destroy(&ss->blocks[i]);
	mfd__auth_key_clear(&ss->key);
	mfd__tls_free(ss->tls);
	ss->tls = NULL;
	mfd__session_digests_free(ss);
}

int mfd__session_add_block(struct mfd__session *ss, const char *name,
			   void *host, uint64_t size, uint32_t page_size)
{
	if (!name)
		return -EINVAL;
	if (ss->running)
		return MFD_ESTATE;
	if (ss->nblocks == MFD_MAX_BLOCKS)
		return -ENOSPC;
	for (unsigned i = 0; i < ss->nblocks; i++)
		if (strcmp(ss->blocks[i].name, name) == 0)
			return -EEXIST;
	int ret = mfd__ramblock_init(&ss->blocks[ss->nblocks], name, host, size,
				     page_size);
	if (ret)
		return ret;
	struct mfd__block_desc *bd = &ss->descs[ss->nblocks];
	snprintf(bd->name, sizeof(bd->name), "%s", name);
	bd->size = size;
	bd->page_size = page_size;
	ss->nblocks++;
	ss->ram_bytes += size;
	return 0;
}

int mfd__session_prepare(struct mfd__session *ss, bool server, const char *host)
{
	mfd__tls_free(ss->tls);
	ss->tls = NULL;
	const struct mfd__chan_opts co = mfd__config_chan_opts(&ss->cfg);
	int ret = mfd__tls_new(&co, server, host, &ss->tls);
	if (!ret)
		ret = mfd__auth_key_load(ss->cfg.auth_key_file, &ss->key);
	return ret;
}

void mfd__session_reset(struct mfd__session *ss)
{
	__atomic_store_n(&ss->error, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&ss->cancel, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&ss->reason_set, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&ss->peer_set, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&ss->peer_error, 0, __ATOMIC_RELAXED);
	ss->reason[0] = 0;
	mfd__stats_reset(&ss->st);
}

static int record(struct mfd__session *ss, int err, const char *why)
{
	int expected = 0;
	if (err == 0 ||
	    !__atomic_compare_exchange_n(&ss->error, &expected, err, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return __atomic_load_n(&ss->error, __ATOMIC_ACQUIRE);
	/* Only the recording call gets here: the text is written once. */
	snprintf(ss->reason, sizeof(ss->reason), "%s",
		 why ? why : mfd_strerror(err));
	__atomic_store_n(&ss->reason_set, 1, __ATOMIC_RELEASE);
	return err;
}

int mfd__session_fail(struct mfd__session *ss, int err)
{
	return record(ss, err, mfd__log_last_error());
}

int mfd__session_fail_why(struct mfd__session *ss, int err, const char *fmt,
			  ...)
{
	char why[MFD__REASON_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (!__atomic_load_n(&ss->error, __ATOMIC_ACQUIRE))
		mfd__err("%s", why);
	return record(ss, err, why);
}

int mfd__session_fail_peer(struct mfd__session *ss, int err)
{
	const char *why = mfd__log_last_error();
	int first = record(ss, err, why);
	if (first == err || !mfd__peer_may_explain(first) || err == 0)
		return first;
	/* One explanation: the first peer ERROR is the only one sent. */
	int expected = 0;
	if (!__atomic_compare_exchange_n(&ss->peer_error, &expected, err, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return first;
	snprintf(ss->peer_reason, sizeof(ss->peer_reason), "%s",
		 why ? why : mfd_strerror(err));
	__atomic_store_n(&ss->peer_set, 1, __ATOMIC_RELEASE);
	return err;
}

int mfd__session_check(struct mfd__session *ss)
{
	if (__atomic_load_n(&ss->cancel, __ATOMIC_ACQUIRE))
		record(ss, -ECANCELED, "cancelled by the hypervisor");
	if (__atomic_load_n(&ss->peer_set, __ATOMIC_ACQUIRE))
		return ss->peer_error;
	return __atomic_load_n(&ss->error, __ATOMIC_ACQUIRE);
}

bool mfd__session_cancel(struct mfd__session *ss)
{
	int phase = STAT_GET(ss->st.phase);
	/* Post-copy runs too (its phases come after the ended ones): the
	 * destination's embedder may give its guest up there; the source
	 * refuses its own cancel after the switch before it gets here. */
	bool runs = (phase > MFD_PHASE_NONE && phase < MFD_PHASE_COMPLETED) ||
		    phase == MFD_PHASE_POSTCOPY ||
		    phase == MFD_PHASE_POSTCOPY_PAUSED;
	if (!runs)
		return false;
	__atomic_store_n(&ss->cancel, 1, __ATOMIC_RELEASE);
	mfd__session_check(ss);
	return true;
}

const char *mfd__session_error_text(struct mfd__session *ss)
{
	if (__atomic_load_n(&ss->peer_set, __ATOMIC_ACQUIRE))
		return ss->peer_reason;
	if (__atomic_load_n(&ss->reason_set, __ATOMIC_ACQUIRE))
		return ss->reason;
	return "";
}

int mfd__session_spawn(struct mfd__session *ss, void *(*fn)(void *), void *arg)
{
	STAT_SET(ss->t_start, mfd__now_ns());
	int ret = pthread_create(&ss->thread, NULL, fn, arg);
	if (ret)
		return -ret;
	ss->running = true;
	return 0;
}

int mfd__session_join(struct mfd__session *ss)
{
	if (!ss->running)
		return STAT_GET(ss->st.phase) == MFD_PHASE_NONE ? MFD_ESTATE
								: ss->result;
	pthread_join(ss->thread, NULL);
	ss->running = false;
	return ss->result;
}

void mfd__session_finish(struct mfd__session *ss, int ret)
{
	ss->result = ret;
	STAT_ADD(ss->st.cpu_ns, mfd__thread_cpu_ns());
	STAT_SET(ss->st.total_ns, mfd__now_ns() - STAT_GET(ss->t_start));
	STAT_SET(ss->st.phase, ret == 0		     ? MFD_PHASE_COMPLETED
			       : ret == -ECANCELED   ? MFD_PHASE_CANCELLED
			       : ret == MFD_EINDOUBT ? MFD_PHASE_INDOUBT
						     : MFD_PHASE_FAILED);
}

static uint64_t nchunks(const struct mfd__ramblock *rb)
{
	return (rb->npages + MFD_DIGEST_CHUNK_PAGES - 1) /
	       MFD_DIGEST_CHUNK_PAGES;
}

int mfd__session_digests_alloc(struct mfd__session *ss)
{
	for (unsigned b = 0; b < ss->nblocks; b++) {
		const struct mfd__ramblock *rb = &ss->blocks[b];
		uint64_t nc = nchunks(rb), words = (nc + 63) / 64;
		if (!ss->pdig[b] &&
		    !(ss->pdig[b] = malloc(rb->npages * sizeof(uint64_t))))
			return -ENOMEM;
		if (!ss->cdig[b] &&
		    !(ss->cdig[b] = malloc(nc * sizeof(uint64_t))))
			return -ENOMEM;
		if (!ss->cdirty[b] &&
		    !(ss->cdirty[b] = malloc(words * sizeof(uint64_t))))
			return -ENOMEM;
		ss->pdig_zero[b] = mfd__zero_page_digest(rb->page_size);
		for (uint64_t i = 0; i < rb->npages; i++)
			ss->pdig[b][i] = ss->pdig_zero[b];
		/* Every chunk marked: the first update hashes them all. */
		memset(ss->cdirty[b], 0xff, words * sizeof(uint64_t));
	}
	return 0;
}

void mfd__session_digests_free(struct mfd__session *ss)
{
	for (unsigned b = 0; b < MFD_MAX_BLOCKS; b++) {
		free(ss->pdig[b]);
		free(ss->cdig[b]);
		free(ss->cdirty[b]);
		ss->pdig[b] = ss->cdig[b] = ss->cdirty[b] = NULL;
	}
}

/* One word of cdirty (up to 64 chunks from chunk c0): their page digests
 * are asked for from memory all at once, then hashed. Pages of the final
 * round lie anywhere: one chunk after the other, each waited for a miss
 * of its own (about 80 ns a chunk here). */
static void update_word(struct mfd__session *ss, unsigned b, uint64_t c0,
			uint64_t m)
{
	const struct mfd__ramblock *rb = &ss->blocks[b];
	for (uint64_t k = m; k; k &= k - 1) {
		const char *p =
			(const char *)(ss->pdig[b] +
				       (c0 + (uint64_t)__builtin_ctzll(k)) *
					       MFD_DIGEST_CHUNK_PAGES);
		for (unsigned l = 0; l < MFD_DIGEST_CHUNK_PAGES * 8; l += 64)
			__builtin_prefetch(p + l);
	}
	for (; m; m &= m - 1) {
		uint64_t c = c0 + (uint64_t)__builtin_ctzll(m);
		uint64_t first = c * MFD_DIGEST_CHUNK_PAGES;
		uint64_t n = rb->npages - first;
		if (n > MFD_DIGEST_CHUNK_PAGES)
			n = MFD_DIGEST_CHUNK_PAGES;
		ss->cdig[b][c] = mfd__digest_chunk(ss->pdig[b] + first, n);
	}
}

void mfd__session_chunks_update(struct mfd__session *ss)
{
	for (unsigned b = 0; b < ss->nblocks; b++) {
		uint64_t nc = nchunks(&ss->blocks[b]);
		for (uint64_t i = 0; ss->cdirty[b] && i < (nc + 63) / 64; i++) {
			uint64_t m = __atomic_exchange_n(&ss->cdirty[b][i], 0,
							 __ATOMIC_RELAXED);
			if (i == (nc - 1) / 64 &&
			    nc % 64) /* bits past the end */
				m &= (1ULL << (nc % 64)) - 1;
			if (m)
				update_word(ss, b, i * 64, m);
		}
	}
}

void mfd__session_wire_digests(struct mfd__session *ss,
			       uint8_t (*out)[MFD__DIGEST_SIZE])
{
	for (unsigned b = 0; b < ss->nblocks; b++)
		mfd__digest_pages(ss->cdig[b], nchunks(&ss->blocks[b]), out[b]);
}

void mfd__session_digests(struct mfd__session *ss,
			  uint8_t (*out)[MFD__DIGEST_SIZE])
{
	for (unsigned b = 0; b < ss->nblocks; b++)
		mfd__digest_pages(ss->pdig[b], ss->blocks[b].npages, out[b]);
}

int mfd__session_resolve(struct mfd__session *ss, int err)
{
	if (ss->running || STAT_GET(ss->st.phase) != MFD_PHASE_INDOUBT)
		return MFD_ESTATE;
	ss->result = err;
	if (!err)
		__atomic_store_n(&ss->error, 0, __ATOMIC_RELEASE);
	STAT_SET(ss->st.phase, err ? MFD_PHASE_FAILED : MFD_PHASE_COMPLETED);
	return 0;
}

void mfd__session_snapshot(struct mfd__session *ss, mfd_stats *v)
{
	mfd__stats_snapshot(&ss->st, v);
	v->error = __atomic_load_n(&ss->error, __ATOMIC_ACQUIRE);
	v->ram_bytes = ss->ram_bytes;
	if (v->total_ns == 0 && v->phase != MFD_PHASE_NONE)
		v->total_ns = mfd__now_ns() - STAT_GET(ss->t_start);
}

bool mfd__is_transport_error(int err)
{
	switch (err) {
	case -EPIPE:
	case -ECONNRESET:
	case -ECONNABORTED:
	case -ENOTCONN:
	case -ETIMEDOUT:
	case MFD_ETRUNCATED:
		return true;
	default:
		return false;
	}
}

bool mfd__peer_may_explain(int err)
{
	return mfd__is_transport_error(err) || err == -ECONNREFUSED;
}
