/* SPDX-License-Identifier: MIT */
/* Which transport makes the channels: URI scheme, then io-engine. */
#include <errno.h>
#include <string.h>

#include "multifd/channels/channel.h"

static struct {
	char scheme[16];
	const struct mfd__transport *tp;
} extra[4];

int mfd__transport_register(const char *scheme, const struct mfd__transport *tp)
{
	for (unsigned i = 0; i < 4; i++) {
		if (extra[i].tp && strcmp(extra[i].scheme, scheme))
			continue;
		if (strlen(scheme) >= sizeof(extra[i].scheme))
			return -EINVAL;
		strcpy(extra[i].scheme, scheme);
		extra[i].tp = tp;
		return 0;
	}
	return -ENOSPC;
}

int mfd__transport_select(const char *uri, const struct mfd__chan_opts *o,
			  const struct mfd__transport **out)
{
	for (unsigned i = 0; uri && i < 4 && extra[i].tp; i++) {
		size_t l = strlen(extra[i].scheme);
		if (strncmp(uri, extra[i].scheme, l) == 0 && uri[l] == ':') {
			if (out)
				*out = extra[i].tp;
			return 0;
		}
	}
	char host[256], port[16];
	int ret = mfd__uri_split(uri, host, sizeof(host), port, sizeof(port));
	if (ret)
		return ret;
	const struct mfd__transport *tp;
	if (strncmp(uri, "rdma:", 5) == 0)
		tp = &mfd__rdma_transport;
	else if (o && o->io_engine == MFD__IO_URING)
		tp = &mfd__uring_transport;
	else
		tp = &mfd__tcp_transport;
	if (out)
		*out = tp;
	return 0;
}

int mfd__connect(const struct mfd__chan_opts *o, const char *uri,
		 uint64_t timeout_ms, struct mfd__chan **out)
{
	const struct mfd__transport *tp;
	int ret = mfd__transport_select(uri, o, &tp);
	return ret ? ret : tp->connect(uri, timeout_ms, out);
}

int mfd__listen(const struct mfd__chan_opts *o, const char *uri, int backlog,
		struct mfd__listener *l)
{
	const struct mfd__transport *tp;
	int ret = mfd__transport_select(uri, o, &tp);
	if (ret)
		return ret;
	l->fd = -1;
	l->priv = NULL;
	if ((ret = tp->listen(uri, backlog, l)))
		return ret;
	l->tp = tp;
	return 0;
}

int mfd__accept(struct mfd__listener *l, uint64_t timeout_ms, const int *cancel,
		struct mfd__chan **out)
{
	if (!l->tp)
		return -EBADF;
	return l->tp->accept(l, timeout_ms, cancel, out);
}

void mfd__listener_close(struct mfd__listener *l)
{
	if (l->tp)
		l->tp->listener_close(l);
	l->tp = NULL;
	l->fd = -1;
}
