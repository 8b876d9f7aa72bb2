/* SPDX-License-Identifier: MIT */
/* Version, error texts, phase names, random bytes; the engine's blocks
 * handed to the digests and the channels. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "multifd/channels/channel.h"
#include "multifd/common/digest.h"
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
		[MFD_PHASE_INDOUBT] = "in-doubt",
		[MFD_PHASE_POSTCOPY] = "postcopy",
		[MFD_PHASE_PAUSED] = "paused",
		[MFD_PHASE_POSTCOPY_PAUSED] = "postcopy-paused",
	};
	if (phase < 0 || (size_t)phase >= MFD_ARRAY_SIZE(names))
		return "unknown";
	return names[phase];
}

const char *mfd_down_part_name(int part)
{
	static const char *const names[] = {
		[MFD_DOWN_NONE] = "none",     [MFD_DOWN_STOP] = "stop",
		[MFD_DOWN_SYNC] = "sync",     [MFD_DOWN_RAM] = "ram",
		[MFD_DOWN_DEVICE] = "device", [MFD_DOWN_END] = "end",
	};
	if (part < 0 || (size_t)part >= MFD_ARRAY_SIZE(names))
		return "?";
	return names[part];
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

/* The blocks as the lower layers see them: memory ranges. */
static int blocks_mem(const struct mfd__ramblock *blocks, unsigned n,
		      struct mfd__mem *mem)
{
	if (n > MFD_MAX_BLOCKS)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++)
		mem[i] = (struct mfd__mem){ .host = blocks[i].host,
					    .size = blocks[i].size };
	return 0;
}

_Static_assert(MFD_DIGEST_SIZE == MFD__DIGEST_SIZE,
	       "the wire's block digest is common/digest.h's");

int mfd__digest_blocks(const struct mfd__ramblock *blocks, unsigned n,
		       uint8_t (*out)[MFD_DIGEST_SIZE])
{
	struct mfd__mem mem[MFD_MAX_BLOCKS];
	int ret = blocks_mem(blocks, n, mem);
	for (unsigned i = 0; !ret && i < n; i++)
		mfd__digest_mem(&mem[i], 1, blocks[i].page_size, &out[i]);
	return ret;
}

int mfd__chan_register_memory(struct mfd__chan *c,
			      const struct mfd__ramblock *blocks,
			      unsigned nblocks, uint64_t *reg_ns)
{
	if (!c->ops->register_memory)
		return 0;
	struct mfd__mem mem[MFD_MAX_BLOCKS];
	int ret = blocks_mem(blocks, nblocks, mem);
	return ret ? ret : c->ops->register_memory(c, mem, nblocks, reg_ns);
}
