/* SPDX-License-Identifier: MIT */
/*
 * The identity codec. The engine never calls it on the data path (it sends
 * uncompressed pages straight from guest memory and receives them straight
 * into it); it exists so that every codec can be driven through the same
 * table, e.g. by tests.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "multifd/multifd.h"
#include "multifd/compress/codec.h"

static int none_setup(struct mfd__codec *c, size_t max_in, int level,
		      int window_log)
{
	(void)window_log;
	c->out = malloc(max_in ? max_in : 1);
	if (!c->out)
		return -ENOMEM;
	c->out_cap = max_in;
	c->max_in = max_in;
	c->level = level;
	return 0;
}

static int none_compress(struct mfd__codec *c, uint8_t *const *pages,
			 uint32_t n, size_t psize, size_t *out_len)
{
	if ((uint64_t)n * psize > c->max_in)
		return MFD_ECOMPRESS;
	for (uint32_t i = 0; i < n; i++)
		memcpy(c->out + i * psize, pages[i], psize);
	*out_len = n * psize;
	return 0;
}

static int none_decompress(struct mfd__codec *c, const uint8_t *in, size_t len,
			   const struct iovec *iov, int iovcnt)
{
	size_t total = 0;
	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	if (total != len)
		return MFD_ECOMPRESS;
	for (int i = 0; i < iovcnt; i++) {
		memcpy(iov[i].iov_base, in, iov[i].iov_len);
		in += iov[i].iov_len;
	}
	return 0;
}

static void none_teardown(struct mfd__codec *c)
{
	free(c->out);
	c->out = NULL;
	c->out_cap = 0;
}

const struct mfd__codec_ops mfd__codec_none = {
	.name = "none",
	.setup = none_setup,
	.compress = none_compress,
	.decompress = none_decompress,
	.teardown = none_teardown,
};

const struct mfd__codec_ops *mfd__codec_ops_of(unsigned id)
{
	switch (id) {
	case MFD__CODEC_NONE:
		return &mfd__codec_none;
	case MFD__CODEC_ZSTD:
		return &mfd__codec_zstd;
	default:
		return NULL;
	}
}
