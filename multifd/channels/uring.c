/* SPDX-License-Identifier: MIT */
/* uring channels: not built yet. */
#include <errno.h>

#include "multifd/channels/channel.h"

static int uring_connect(const char *uri, uint64_t timeout_ms,
			 struct mfd__chan **out)
{
	return -EPROTONOSUPPORT;
}

static int uring_listen(const char *uri, int backlog, struct mfd__listener *l)
{
	return -EPROTONOSUPPORT;
}

static int uring_accept(struct mfd__listener *l, uint64_t timeout_ms,
			const int *cancel, struct mfd__chan **out)
{
	return -EPROTONOSUPPORT;
}

static void uring_listener_close(struct mfd__listener *l)
{
}

const struct mfd__transport mfd__uring_transport = {
	.name = "uring",
	.connect = uring_connect,
	.listen = uring_listen,
	.accept = uring_accept,
	.listener_close = uring_listener_close,
};
