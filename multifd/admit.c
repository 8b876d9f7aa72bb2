/* SPDX-License-Identifier: MIT */
/*
 * Admission of a connection: both halves of the handshake and the
 * destination's pending-connection queue (admit.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "multifd/admit.h"
#include "multifd/channels/tls.h"
#include "multifd/session.h"

/* ---- the handshake, both sides ---- */

int mfd__hello_send(struct mfd__chan *c, const struct mfd__hello *h)
{
	uint8_t buf[MFD_HELLO_SIZE];
	mfd__hello_encode(h, buf);
	return mfd__chan_send(c, buf, sizeof(buf));
}

int mfd__hello_recv(struct mfd__chan *c, struct mfd__hello *h)
{
	uint8_t buf[MFD_HELLO_SIZE];
	int ret = c->ops->recv(c, buf, sizeof(buf));
	if (ret)
		return ret;
	return mfd__hello_decode(buf, h);
}

static void reply_bytes(int error, uint64_t features,
			uint8_t buf[MFD_HELLO_REPLY_SIZE])
{
	struct mfd__hello_reply r = { .magic = MFD_MAGIC_HELLO,
				      .version = MFD_PROTO_VERSION,
				      .status = error ? 1 : 0,
				      .error = error,
				      .features = features };
	mfd__hello_reply_encode(&r, buf);
}

int mfd__hello_reply_send(struct mfd__chan *c, int error, uint64_t features)
{
	uint8_t buf[MFD_HELLO_REPLY_SIZE];
	reply_bytes(error, features, buf);
	return mfd__chan_send(c, buf, sizeof(buf));
}

int mfd__hello_reply_recv(struct mfd__chan *c, uint64_t *features)
{
	uint8_t buf[MFD_HELLO_REPLY_SIZE];
	struct mfd__hello_reply r;
	int ret = c->ops->recv(c, buf, sizeof(buf));
	if (!ret)
		ret = mfd__hello_reply_decode(buf, &r);
	if (ret)
		return ret;
	if (r.status) {
		mfd__err("destination refused the connection: %s",
			 mfd_strerror(r.error));
		return r.error < 0 ? r.error : MFD_EREMOTE;
	}
	*features = r.features;
	return 0;
}

static int auth_send(struct mfd__chan *c, const struct mfd__auth_msg *m)
{
	uint8_t buf[MFD_AUTH_MSG_SIZE];
	mfd__auth_msg_encode(m, buf);
	return mfd__chan_send(c, buf, sizeof(buf));
}

static int auth_recv(struct mfd__chan *c, uint16_t type,
		     struct mfd__auth_msg *m)
{
	uint8_t buf[MFD_AUTH_MSG_SIZE];
	int ret = c->ops->recv(c, buf, sizeof(buf));
	if (ret == -ECONNRESET)
		ret = MFD_ETRUNCATED; /* the handshake had started */
	return ret ? ret : mfd__auth_msg_decode(buf, type, m);
}

/*
 * The transcript both MACs cover is rebuilt from the decoded hello and the
 * accepting reply: both encodings are canonical (a decoder accepts only
 * bytes its encoder produces), so both sides hash the same bytes.
 */
int mfd__handshake_source(struct mfd__chan *c, const struct mfd__hello *h,
			  const struct mfd__key *key, uint64_t *features)
{
	uint8_t hello[MFD_HELLO_SIZE], reply[MFD_HELLO_REPLY_SIZE];
	mfd__hello_encode(h, hello);
	int ret = mfd__chan_send(c, hello, sizeof(hello));
	if (!ret)
		ret = mfd__hello_reply_recv(c, features);
	if (ret || !(h->features & MFD_FEAT_AUTH))
		return ret;
	if (*features != h->features)
		return MFD_EFEATURE;

	struct mfd__auth_msg ch,
		resp = { .magic = MFD_MAGIC_AUTH, .type = MFD_AUTH_RESPONSE },
		conf;
	uint8_t mac[MFD_AUTH_MAC_SIZE];
	reply_bytes(0, *features, reply);
	if ((ret = auth_recv(c, MFD_AUTH_CHALLENGE, &ch)) ||
	    (ret = mfd__random_bytes(resp.nonce, sizeof(resp.nonce))) ||
	    (ret = mfd__auth_mac(key, MFD_AUTH_SOURCE, hello, reply, ch.nonce,
				 resp.nonce, NULL, 0, resp.mac)) ||
	    (ret = auth_send(c, &resp)) ||
	    (ret = auth_recv(c, MFD_AUTH_CONFIRM, &conf)))
		goto out;
	if (conf.error) {
		mfd__err("destination %s refused authentication: %s", c->peer,
			 mfd_strerror(conf.error));
		ret = conf.error;
		goto out;
	}
	if ((ret = mfd__auth_mac(key, MFD_AUTH_DEST, hello, reply, ch.nonce,
				 resp.nonce, NULL, 0, mac)))
		goto out;
	/* A peer that accepted us without knowing the key is an impostor. */
	if ((ret = mfd__auth_mac_check(mac, conf.mac)))
		mfd__err("destination %s did not prove the key: refused",
			 c->peer);
out:
	OPENSSL_cleanse(mac, sizeof(mac));
	return ret;
}

int mfd__auth_dest(struct mfd__chan *c, const struct mfd__key *key,
		   const struct mfd__hello *h)
{
	uint8_t hello[MFD_HELLO_SIZE], reply[MFD_HELLO_REPLY_SIZE];
	uint8_t mac[MFD_AUTH_MAC_SIZE];
	struct mfd__auth_msg ch = { .magic = MFD_MAGIC_AUTH,
				    .type = MFD_AUTH_CHALLENGE },
			     resp,
			     conf = { .magic = MFD_MAGIC_AUTH,
				      .type = MFD_AUTH_CONFIRM };
	mfd__hello_encode(h, hello);
	reply_bytes(0, h->features, reply);
	/* A fresh nonce per connection: a recorded RESPONSE answers another
	 * challenge and fails. */
	int ret = mfd__random_bytes(ch.nonce, sizeof(ch.nonce));
	if (!ret)
		ret = auth_send(c, &ch);
	if (!ret)
		ret = auth_recv(c, MFD_AUTH_RESPONSE, &resp);
	if (!ret)
		ret = mfd__auth_mac(key, MFD_AUTH_SOURCE, hello, reply,
				    ch.nonce, resp.nonce, NULL, 0, mac);
	if (ret)
		goto out;
	if (mfd__auth_mac_check(mac, resp.mac)) {
		/* Wrong key, a replayed response, or a hello of another
		 * session or channel than the one the MAC was made for. */
		conf.error = MFD_EAUTH;
		auth_send(c, &conf);
		ret = MFD_EAUTH;
		goto out;
	}
	ret = mfd__auth_mac(key, MFD_AUTH_DEST, hello, reply, ch.nonce,
			    resp.nonce, NULL, 0, conf.mac);
	if (!ret)
		ret = auth_send(c, &conf);
out:
	OPENSSL_cleanse(mac, sizeof(mac));
	OPENSSL_cleanse(conf.mac, sizeof(conf.mac));
	return ret;
}

int mfd__handshake_dest(struct mfd__chan *c, const struct mfd__admit_want *want,
			struct mfd__hello *h)
{
	int ret = mfd__hello_recv(c, h);
	if (!ret && h->role != want->role)
		ret = MFD_EROLE;
	/* Known to the codec but not implemented by this engine. */
	if (!ret && (h->features & ~MFD_FEATURES_OFFERED))
		ret = MFD_EFEATURE;
	if (!ret && (h->features & want->refuse)) {
		mfd__warn("%s: peer wants a feature this side has turned off "
			  "(%#llx)",
			  c->peer,
			  (unsigned long long)(h->features & want->refuse));
		ret = MFD_EFEATURE;
	}
	/* Both sides must hold a key, or neither: a keyed destination never
	 * talks to an unauthenticated peer, and a keyed source never trusts a
	 * destination that cannot prove the key. */
	if (!ret && !(h->features & MFD_FEAT_AUTH) != !want->key->len) {
		mfd__warn("%s: %s", c->peer,
			  want->key->len ? "peer offers no authentication but "
					   "auth-key-file is set"
					 : "peer wants authentication but no "
					   "auth-key-file is set");
		ret = MFD_EAUTH;
	}
	if (!ret && want->role != MFD_ROLE_MAIN) {
		/* Data, urgent, and a paused session's RESUME. */
		if (memcmp(h->session, want->session, 16) ||
		    h->nchannels != want->nchannels ||
		    h->features != want->features)
			ret = MFD_ESESSION;
		else if (want->taken && want->taken(want->ctx, h->channel))
			ret = MFD_EROLE; /* duplicate index */
	}
	if (ret) {
		if (!mfd__is_transport_error(ret))
			mfd__hello_reply_send(c, ret, 0);
		return ret;
	}
	ret = mfd__hello_reply_send(c, 0, h->features);
	if (!ret && (h->features & MFD_FEAT_AUTH))
		ret = mfd__auth_dest(c, want->key, h);
	return ret;
}

/* ---- the destination's pending connections ---- */

struct mfd__admit_pending {
	struct mfd__chan *c;
	uint64_t deadline_ns; /* accepted + connect-timeout */
};

int mfd__admitq_init(struct mfd__admitq *q, struct mfd__listener *lst,
		     struct mfd__tls *tls, unsigned max, uint64_t timeout_ms,
		     const int *cancel)
{
	*q = (struct mfd__admitq){ .lst = lst,
				   .tls = tls,
				   .cancel = cancel,
				   .timeout_ms = timeout_ms,
				   .max = max };
	q->pend = calloc(max, sizeof(*q->pend));
	q->pfd = calloc(max + 1u, sizeof(*q->pfd));
	return q->pend && q->pfd ? 0 : -ENOMEM;
}

static void pending_remove(struct mfd__admitq *q, unsigned i)
{
	memmove(&q->pend[i], &q->pend[i + 1],
		(q->npend - i - 1) * sizeof(q->pend[0]));
	q->npend--;
}

static void pending_drop(struct mfd__admitq *q, unsigned i, const char *why)
{
	struct mfd__chan *c = q->pend[i].c;
	mfd__warn("dropped connection from %s: %s", c->peer, why);
	c->ops->close(c);
	pending_remove(q, i);
}

void mfd__admitq_destroy(struct mfd__admitq *q)
{
	while (q->pend && q->npend)
		pending_drop(q, q->npend - 1, "the migration needs no more");
	free(q->pend);
	free(q->pfd);
	q->pend = NULL;
	q->pfd = NULL;
}

static void pending_add(struct mfd__admitq *q, struct mfd__chan *c)
{
	if (mfd__tls_expect(q->tls, &c))
		return; /* closed */
	if (q->npend == q->max)
		pending_drop(q, 0, "too many pending connections (oldest)");
	q->pend[q->npend++] = (struct mfd__admit_pending){
		.c = c,
		.deadline_ns = mfd__now_ns() + q->timeout_ms * 1000000,
	};
	/* Arms the channel's wake-up (a low-water mark) for its hello. */
	mfd__chan_first_ready(c, MFD_HELLO_SIZE, 0);
}

/* Drops what expired; how long poll may sleep (ms) before one does, the
 * caller's end comes or cancel should be checked. */
static int expire(struct mfd__admitq *q, uint64_t now, uint64_t end)
{
	for (unsigned i = 0; i < q->npend;) {
		if (now >= q->pend[i].deadline_ns)
			pending_drop(
				q, i,
				"no complete hello within connect-timeout");
		else
			i++;
	}
	uint64_t wake = end - now < 100000000 ? end - now : 100000000;
	for (unsigned i = 0; i < q->npend; i++)
		if (q->pend[i].deadline_ns - now < wake)
			wake = q->pend[i].deadline_ns - now;
	int wait_ms = (int)(wake / 1000000) + 1;
	if (q->lst->fd < 0 && wait_ms > 10)
		wait_ms = 10; /* the transport's accept waits too */
	return wait_ms;
}

/* After poll: a pending connection whose first message is complete
 * (taken out of the queue), or NULL. pfd[first..] follow pend[]. */
static struct mfd__chan *pending_ready(struct mfd__admitq *q, unsigned first,
				       unsigned n)
{
	for (unsigned i = 0, k = first; k < n; k++) {
		if (!q->pfd[k].revents) {
			i++;
			continue;
		}
		struct mfd__chan *c = q->pend[i].c;
		int ready = mfd__chan_first_ready(c, MFD_HELLO_SIZE,
						  q->pfd[k].revents);
		if (ready == 0) {
			i++;
		} else if (ready < 0) {
			pending_drop(q, i, "closed before its hello");
		} else {
			pending_remove(q, i);
			return c;
		}
	}
	return NULL;
}

/* The next connection whose first message is complete, by end (ns):
 * -ETIMEDOUT, -ECANCELED. */
static int next_ready(struct mfd__admitq *q, uint64_t end,
		      struct mfd__chan **out)
{
	for (;;) {
		if (__atomic_load_n(q->cancel, __ATOMIC_ACQUIRE))
			return -ECANCELED;
		uint64_t now = mfd__now_ns();
		int wait_ms = expire(q, now, end);
		if (now >= end)
			return -ETIMEDOUT;
		unsigned n = 0;
		if (q->lst->fd >= 0)
			q->pfd[n++] = (struct pollfd){ .fd = q->lst->fd,
						       .events = POLLIN };
		unsigned first = n;
		for (unsigned i = 0; i < q->npend; i++)
			q->pfd[n++] =
				(struct pollfd){ .fd = q->pend[i].c->fd,
						 .events = POLLIN | POLLRDHUP };
		int r = poll(q->pfd, n, wait_ms);
		if (r < 0 && errno != EINTR)
			return -errno;
		/* Pending connections first: pfd[] follows pend[] until one
		 * is removed. */
		if (r > 0 && (*out = pending_ready(q, first, n)))
			return 0;
		if (q->lst->fd < 0 || (r > 0 && q->pfd[0].revents)) {
			struct mfd__chan *c;
			int ret = mfd__accept(q->lst, q->lst->fd < 0 ? 10 : 1,
					      q->cancel, &c);
			if (ret == 0)
				pending_add(q, c);
			else if (ret != -ETIMEDOUT && ret != -EAGAIN &&
				 ret != -ECONNABORTED && ret != -EINTR)
				return ret;
		}
	}
}

int mfd__admitq_take(struct mfd__admitq *q, uint64_t timeout_ms,
		     const struct mfd__admit_want *want, struct mfd__chan **out,
		     struct mfd__hello *h)
{
	uint64_t now = mfd__now_ns();
	uint64_t end = timeout_ms > (UINT64_MAX - now) / 1000000
			       ? UINT64_MAX
			       : now + timeout_ms * 1000000;
	for (;;) {
		struct mfd__chan *c;
		int ret = next_ready(q, end, &c);
		if (ret)
			return ret;
		/* A refused TLS handshake was logged and closed. */
		if (mfd__tls_wrap_server(q->tls, &c, q->timeout_ms)) {
			mfd__log_forget(); /* not the reason of a failure */
			continue;
		}
		/* Its hello is here; a peer that stops in the middle of the
		 * handshake holds the loader for at most connect-timeout. */
		c->ops->set_timeout(c, q->timeout_ms);
		ret = mfd__handshake_dest(c, want, h);
		if (!ret) {
			*out = c;
			return 0;
		}
		mfd__warn("refused %sconnection from %s: %s",
			  want->role == MFD_ROLE_DATA	  ? "data "
			  : want->role == MFD_ROLE_URGENT ? "urgent "
			  : want->role == MFD_ROLE_RESUME ? "resume "
							  : "",
			  c->peer, mfd_strerror(ret));
		mfd__log_forget();
		c->ops->close(c);
	}
}
