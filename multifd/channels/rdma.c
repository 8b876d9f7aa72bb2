/* SPDX-License-Identifier: MIT */
/* rdma channels: not built yet. */
#include <errno.h>

#include "multifd/channels/channel.h"

static int rdma_connect(const char *uri, uint64_t timeout_ms,
			struct mfd__chan **out)
{
	return -EPROTONOSUPPORT;
}

static int rdma_listen(const char *uri, int backlog, struct mfd__listener *l)
{
	return -EPROTONOSUPPORT;
}

static int rdma_accept(struct mfd__listener *l, uint64_t timeout_ms,
		       const int *cancel, struct mfd__chan **out)
{
	return -EPROTONOSUPPORT;
}

static void rdma_listener_close(struct mfd__listener *l)
{
}

const struct mfd__transport mfd__rdma_transport = {
	.name = "rdma",
	.connect = rdma_connect,
	.listen = rdma_listen,
	.accept = rdma_accept,
	.listener_close = rdma_listener_close,
};
