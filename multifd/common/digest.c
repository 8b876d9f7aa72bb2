/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "multifd/common/clock.h"
#include "multifd/common/digest.h"

/*
 * Digest of a range (docs/protocol.md, "block digest"): XXH3-128 of the
 * concatenated canonical XXH3-128 digests of the range's
 * MFD_DIGEST_CHUNK-byte chunks (the last one shorter). Chunks let every
 * core hash at once: the digests sit inside the downtime.
 */
struct digest_work {
	const struct mfd__mem *blocks;
	unsigned nblocks;
	uint8_t **chunk_digests; /* per block */
	uint64_t *first_chunk;	 /* global index of each block's chunk 0 */
	uint64_t total_chunks;
	uint64_t next;	 /* atomic */
	uint64_t cpu_ns; /* of the helper threads, atomic */
};

static uint64_t nchunks(uint64_t size)
{
	return (size + MFD_DIGEST_CHUNK - 1) / MFD_DIGEST_CHUNK;
}

static void digest_chunks(struct digest_work *dw)
{
	for (;;) {
		uint64_t k = __atomic_fetch_add(&dw->next, 1, __ATOMIC_RELAXED);
		if (k >= dw->total_chunks)
			return;
		unsigned b = 0;
		while (b + 1 < dw->nblocks && dw->first_chunk[b + 1] <= k)
			b++;
		uint64_t c = k - dw->first_chunk[b];
		uint64_t off = c * MFD_DIGEST_CHUNK;
		uint64_t len = dw->blocks[b].size - off;
		if (len > MFD_DIGEST_CHUNK)
			len = MFD_DIGEST_CHUNK;
		XXH128_canonical_t cd;
		XXH128_canonicalFromHash(
			&cd,
			XXH3_128bits(dw->blocks[b].host + off, (size_t)len));
		memcpy(dw->chunk_digests[b] + c * MFD__DIGEST_SIZE, cd.digest,
		       MFD__DIGEST_SIZE);
	}
}

/* A helper thread: its CPU time is counted, as every library thread's. */
static void *digest_thread(void *arg)
{
	struct digest_work *dw = arg;
	digest_chunks(dw);
	__atomic_fetch_add(&dw->cpu_ns, mfd__thread_cpu_ns(), __ATOMIC_RELAXED);
	return NULL;
}

int mfd__digest_mem(const struct mfd__mem *blocks, unsigned n,
		    uint8_t (*out)[MFD__DIGEST_SIZE], uint64_t *cpu_ns)
{
	struct digest_work dw = { .blocks = blocks, .nblocks = n };
	int ret = -ENOMEM;
	dw.chunk_digests = calloc(n, sizeof(*dw.chunk_digests));
	dw.first_chunk = calloc(n, sizeof(*dw.first_chunk));
	if (!dw.chunk_digests || !dw.first_chunk)
		goto out;
	for (unsigned i = 0; i < n; i++) {
		dw.first_chunk[i] = dw.total_chunks;
		dw.total_chunks += nchunks(blocks[i].size);
		dw.chunk_digests[i] =
			malloc(nchunks(blocks[i].size) * MFD__DIGEST_SIZE);
		if (!dw.chunk_digests[i])
			goto out;
	}
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned nth = cpus < 1 ? 1 : cpus > 8 ? 8 : (unsigned)cpus;
	if (nth > dw.total_chunks)
		nth = (unsigned)dw.total_chunks;
	pthread_t th[8];
	unsigned started = 0;
	for (unsigned i = 1; i < nth; i++)
		if (pthread_create(&th[started], NULL, digest_thread, &dw) == 0)
			started++;
	digest_chunks(&dw);
	for (unsigned i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	if (cpu_ns)
		__atomic_fetch_add(cpu_ns, dw.cpu_ns, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < n; i++) {
		XXH128_canonical_t cd;
		XXH128_canonicalFromHash(
			&cd, XXH3_128bits(dw.chunk_digests[i],
					  nchunks(blocks[i].size) *
						  MFD__DIGEST_SIZE));
		memcpy(out[i], cd.digest, MFD__DIGEST_SIZE);
	}
	ret = 0;
out:
	for (unsigned i = 0; dw.chunk_digests && i < n; i++)
		free(dw.chunk_digests[i]);
	free(dw.chunk_digests);
	free(dw.first_chunk);
	return ret;
}
