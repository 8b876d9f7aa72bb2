/* SPDX-License-Identifier: MIT */
/* Version, error texts, phase names, random bytes, digests. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "multifd/channels/channel.h"
#include "multifd/internal.h"

int mfd_version(void)
{
	return MFD_VERSION_NUMBER;
}

const char *mfd_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
#define XX(name, code, text)                                                   \
	case -(code):                                                          \
		return text;
		MFD_ERRNO_MAP(XX)
#undef XX
	default:
		break;
	}
	if (err < 0 && err > -4096)
		return strerror(-err); /* glibc: static text for known errnos */
	return "unknown error";
}

const char *mfd_phase_name(int phase)
{
	static const char *const names[] = {
		[MFD_PHASE_NONE] = "none",
		[MFD_PHASE_SETUP] = "setup",
		[MFD_PHASE_PRECOPY] = "precopy",
		[MFD_PHASE_SWITCHOVER] = "switchover",
		[MFD_PHASE_COMPLETED] = "completed",
		[MFD_PHASE_FAILED] = "failed",
		[MFD_PHASE_CANCELLED] = "cancelled",
	};
	if (phase < 0 || (size_t)phase >= MFD_ARRAY_SIZE(names))
		return "unknown";
	return names[phase];
}

int mfd__random_bytes(void *buf, size_t len)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t n = getrandom(p, len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Block digest (docs/protocol.md): XXH3-128 of the concatenated canonical
 * XXH3-128 digests of the block's MFD_DIGEST_CHUNK-byte chunks (the last
 * one shorter). Chunks let every core hash at once: the digests sit inside
 * the downtime.
 */
struct digest_work {
	const struct mfd__ramblock *blocks;
	unsigned nblocks;
	uint8_t **chunk_digests; /* per block */
	uint64_t *first_chunk;	 /* global index of each block's chunk 0 */
	uint64_t total_chunks;
	uint64_t next; /* atomic */
};

static uint64_t nchunks(uint64_t size)
{
	return (size + MFD_DIGEST_CHUNK - 1) / MFD_DIGEST_CHUNK;
}

static void *digest_thread(void *arg)
{
	struct digest_work *dw = arg;
	for (;;) {
		uint64_t k = __atomic_fetch_add(&dw->next, 1, __ATOMIC_RELAXED);
		if (k >= dw->total_chunks)
			return NULL;
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
		memcpy(dw->chunk_digests[b] + c * MFD_DIGEST_SIZE, cd.digest,
		       MFD_DIGEST_SIZE);
	}
}

int mfd__digest_blocks(const struct mfd__ramblock *blocks, unsigned n,
		       uint8_t (*out)[MFD_DIGEST_SIZE])
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
			malloc(nchunks(blocks[i].size) * MFD_DIGEST_SIZE);
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
	digest_thread(&dw);
	for (unsigned i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	for (unsigned i = 0; i < n; i++) {
		XXH128_canonical_t cd;
		XXH128_canonicalFromHash(&cd,
					 XXH3_128bits(dw.chunk_digests[i],
						      nchunks(blocks[i].size) *
							      MFD_DIGEST_SIZE));
		memcpy(out[i], cd.digest, MFD_DIGEST_SIZE);
	}
	ret = 0;
out:
	for (unsigned i = 0; dw.chunk_digests && i < n; i++)
		free(dw.chunk_digests[i]);
	free(dw.chunk_digests);
	free(dw.first_chunk);
	return ret;
}

int mfd__chan_register_memory(struct mfd__chan *c,
			      const struct mfd__ramblock *blocks,
			      unsigned nblocks, uint64_t *reg_ns)
{
	if (!c->ops->register_memory)
		return 0;
	struct mfd__chan_mem mem[MFD_MAX_BLOCKS];
	if (nblocks > MFD_MAX_BLOCKS)
		return -EINVAL;
	for (unsigned i = 0; i < nblocks; i++)
		mem[i] = (struct mfd__chan_mem){ .host = blocks[i].host,
						 .size = blocks[i].size };
	return c->ops->register_memory(c, mem, nblocks, reg_ns);
}
