/* SPDX-License-Identifier: MIT */
/*
 * Pre-shared-key authentication: a migration with the same key on both
 * sides works; a wrong key, a missing key on either side, a key file others
 * can read, a replayed handshake, a response made for another channel and a
 * data channel of another session are each refused with their code.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "multifd/auth.h"
#include "multifd/channels/channel.h"
#include "multifd/admit.h"
#include "multifd/ctl.h"
#include "multifd/config.h"
#include "testvm.h"

#define RAM (2UL << 20)

static char dir[64];

/* Writes a key file with mode; returns its path (static storage). */
static const char *keyfile(const char *name, const void *key, size_t len,
			   mode_t mode)
{
	static char paths[8][128];
	static unsigned n;
	char *p = paths[n++ % 8];
	snprintf(p, 128, "%s/%s", dir, name);
	unlink(p);
	int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, key, len), (ssize_t)len);
	fchmod(fd, mode);
	close(fd);
	return p;
}

static const char hexkey[] =
	"8f3a1c5e7b9d2f4a6c8e0b1d3f5a7c9e2b4d6f8a0c1e3a5c7e9b1d3f5a7c9e0b\n";
static const char hexkey2[] =
	"0f3a1c5e7b9d2f4a6c8e0b1d3f5a7c9e2b4d6f8a0c1e3a5c7e9b1d3f5a7c9e0b\n";

static void vm_with_keys(struct tvm *vm, const char *srckey, const char *dstkey)
{
	const char *kv[] = { "channels=2", "verify=on", "connect-timeout=2s",
			     "io-timeout=2s", NULL };
	memset(vm, 0, sizeof(*vm));
	tvm_config(vm, kv);
	tvm_add_block(vm, "pc.ram", RAM, 4096);
	tvm_fill_random(vm->blocks[0].src, RAM, 7);
	if (dstkey)
		assert_int_equal(
			mfd_config_set(vm->cfg, "auth-key-file", dstkey), 0);
	tvm_start_dest(vm);
	assert_int_equal(
		mfd_config_set(vm->cfg, "auth-key-file", srckey ? srckey : ""),
		0);
}

static void test_same_key(void **state)
{
	(void)state;
	const char *k = keyfile("k", hexkey, sizeof(hexkey) - 1, 0600);
	uint8_t raw[40];
	for (unsigned i = 0; i < sizeof(raw); i++)
		raw[i] = (uint8_t)(i * 37 + 200); /* not hex text */
	const char *r = keyfile("raw", raw, sizeof(raw), 0640);
	const char *files[] = { k, r };
	for (int i = 0; i < 2; i++) {
		struct tvm vm;
		vm_with_keys(&vm, files[i], files[i]);
		int dret = -1;
		assert_int_equal(tvm_migrate(&vm, NULL, &dret), 0);
		assert_int_equal(dret, 0);
		assert_true(tvm_equal(&vm));
		assert_int_equal(vm.loaded, 1);
		tvm_destroy(&vm);
	}
}

int auth_stop(void *o);
int auth_resume(void *o);

static mfd_source *new_source(struct tvm *vm)
{
	mfd_source *s;
	mfd_source_hooks sh = { .opaque = vm };
	sh.stop = auth_stop;
	sh.resume = auth_resume;
	assert_int_equal(mfd_source_new(&s, vm->cfg, &sh), 0);
	assert_int_equal(
		mfd_source_add_block(s, "pc.ram", vm->blocks[0].src, RAM, 4096),
		0);
	return s;
}

int auth_stop(void *o)
{
	((struct tvm *)o)->stopped++;
	return 0;
}
int auth_resume(void *o)
{
	((struct tvm *)o)->resumed++;
	return 0;
}

static void expect_refused(const char *srckey, const char *dstkey, int code)
{
	struct tvm vm;
	vm_with_keys(&vm, srckey, dstkey);
	uint64_t h = tvm_hash(vm.blocks[0].src, RAM);
	mfd_source *s = new_source(&vm);
	assert_int_equal(mfd_source_migrate(s, vm.uri), code);
	assert_int_equal(vm.stopped, 0);
	assert_int_equal(tvm_hash(vm.blocks[0].src, RAM), h);
	mfd_source_free(s);
	/* The destination refused the stranger and waits on. */
	mfd_stats st;
	mfd_dest_get_stats(vm.dst, &st, sizeof(st));
	assert_int_equal(st.phase, MFD_PHASE_SETUP);
	mfd_dest_cancel(vm.dst);
	assert_int_equal(mfd_dest_wait(vm.dst), -ECANCELED);
	assert_int_equal(vm.loaded, 0);
	tvm_destroy(&vm);
}

static void test_wrong_key(void **state)
{
	(void)state;
	expect_refused(keyfile("a", hexkey, sizeof(hexkey) - 1, 0600),
		       keyfile("b", hexkey2, sizeof(hexkey2) - 1, 0600),
		       MFD_EAUTH);
}

static void test_missing_key(void **state)
{
	(void)state;
	const char *k = keyfile("k", hexkey, sizeof(hexkey) - 1, 0600);
	expect_refused(NULL, k, MFD_EAUTH); /* source has none */
	expect_refused(k, NULL, MFD_EAUTH); /* destination has none */
}

static void test_key_file_checks(void **state)
{
	(void)state;
	struct mfd__key key;
	const char *open_k = keyfile("o", hexkey, sizeof(hexkey) - 1, 0604);
	assert_int_equal(mfd__auth_key_load(open_k, &key), MFD_ECONFIG);
	const char *w = keyfile("w", hexkey, sizeof(hexkey) - 1, 0602);
	assert_int_equal(mfd__auth_key_load(w, &key), MFD_ECONFIG);
	const char *shortk = keyfile("s", "00112233", 8, 0600);
	assert_int_equal(mfd__auth_key_load(shortk, &key), MFD_ECONFIG);
	char missing[128];
	snprintf(missing, sizeof(missing), "%s/none", dir);
	assert_int_equal(mfd__auth_key_load(missing, &key), -ENOENT);
	assert_int_equal(mfd__auth_key_load(dir, &key), MFD_ECONFIG);
	const char *ok = keyfile("ok", hexkey, sizeof(hexkey) - 1, 0600);
	assert_int_equal(mfd__auth_key_load(ok, &key), 0);
	assert_int_equal(key.len, 32);
	assert_int_equal(key.bytes[0], 0x8f);
	assert_int_equal(key.bytes[31], 0x0b);
	assert_int_equal(mfd__auth_key_load("", &key), 0);
	assert_int_equal(key.len, 0);

	/* The public calls refuse to start with an unsafe key. */
	struct tvm vm = { 0 };
	tvm_config(&vm, NULL);
	tvm_add_block(&vm, "pc.ram", RAM, 4096);
	assert_int_equal(mfd_config_set(vm.cfg, "auth-key-file", open_k), 0);
	mfd_source *s = new_source(&vm);
	assert_int_equal(mfd_source_start(s, "tcp:127.0.0.1:1"), MFD_ECONFIG);
	mfd_source_free(s);
	mfd_dest *d;
	assert_int_equal(mfd_dest_new(&d, vm.cfg, NULL), 0);
	assert_int_equal(
		mfd_dest_add_block(d, "pc.ram", vm.blocks[0].dst, RAM, 4096),
		0);
	assert_int_equal(mfd_dest_start(d, "tcp:127.0.0.1:0"), MFD_ECONFIG);
	mfd_dest_free(d);
	tvm_destroy(&vm);
}

/* ---- hand-made peers ---- */

static struct mfd__chan *dial(const char *uri)
{
	struct mfd__chan *c;
	/* plain sockets */
	assert_int_equal(mfd__connect(NULL, uri, 2000, &c), 0);
	c->ops->set_timeout(c, 2000);
	return c;
}

static struct mfd__hello hello(uint16_t role, uint16_t ch,
			       const uint8_t session[16])
{
	struct mfd__hello h = { .magic = MFD_MAGIC_HELLO,
				.version = MFD_PROTO_VERSION,
				.role = role,
				.channel = ch,
				.nchannels = 2,
				.features = MFD_FEAT_VERIFY |
					    MFD_FEAT_VERIFY_CHUNKS |
					    MFD_FEAT_AUTH | MFD_FEAT_COMMIT };
	memcpy(h.session, session, 16);
	return h;
}

/* Sends hello h, reads the reply and the challenge; returns the nonce. */
static void start(struct mfd__chan *c, const struct mfd__hello *h,
		  uint8_t nonce[MFD_AUTH_NONCE_SIZE])
{
	uint8_t buf[MFD_AUTH_MSG_SIZE];
	uint64_t f;
	struct mfd__auth_msg m;
	assert_int_equal(mfd__hello_send(c, h), 0);
	assert_int_equal(mfd__hello_reply_recv(c, &f), 0);
	assert_int_equal(c->ops->recv(c, buf, sizeof(buf)), 0);
	assert_int_equal(mfd__auth_msg_decode(buf, MFD_AUTH_CHALLENGE, &m), 0);
	memcpy(nonce, m.nonce, MFD_AUTH_NONCE_SIZE);
}

/* Sends a RESPONSE whose MAC covers hello mac_for and nonce; returns the
 * CONFIRM's error. */
static int respond(struct mfd__chan *c, const struct mfd__key *key,
		   const struct mfd__hello *mac_for,
		   const uint8_t nonce[MFD_AUTH_NONCE_SIZE])
{
	uint8_t hb[MFD_HELLO_SIZE], rb[MFD_HELLO_REPLY_SIZE];
	uint8_t buf[MFD_AUTH_MSG_SIZE];
	struct mfd__hello_reply r = { .magic = MFD_MAGIC_HELLO,
				      .version = MFD_PROTO_VERSION,
				      .features = mac_for->features };
	struct mfd__auth_msg m = { .magic = MFD_MAGIC_AUTH,
				   .type = MFD_AUTH_RESPONSE };
	mfd__hello_encode(mac_for, hb);
	mfd__hello_reply_encode(&r, rb);
	memset(m.nonce, 0x77, sizeof(m.nonce));
	assert_int_equal(mfd__auth_mac(key, MFD_AUTH_SOURCE, hb, rb, nonce,
				       m.nonce, NULL, 0, m.mac),
			 0);
	mfd__auth_msg_encode(&m, buf);
	assert_int_equal(mfd__chan_send(c, buf, sizeof(buf)), 0);
	assert_int_equal(c->ops->recv(c, buf, sizeof(buf)), 0);
	assert_int_equal(mfd__auth_msg_decode(buf, MFD_AUTH_CONFIRM, &m), 0);
	return m.error;
}

/*
 * A recorded handshake replayed: the same hello and the RESPONSE that
 * answered an earlier challenge. The destination's new nonce makes it fail.
 * Then a response made for another channel index, and a data channel of
 * another session, on a destination whose main channel is a real (hand
 * made, keyed) source.
 */
static void test_replay_and_binding(void **state)
{
	(void)state;
	const char *k = keyfile("k", hexkey, sizeof(hexkey) - 1, 0600);
	struct mfd__key key;
	assert_int_equal(mfd__auth_key_load(k, &key), 0);
	struct tvm vm;
	vm_with_keys(&vm, k, k);
	uint8_t session[16], other[16], nonce[MFD_AUTH_NONCE_SIZE],
		nonce2[MFD_AUTH_NONCE_SIZE];
	memset(session, 0x5e, 16);
	memset(other, 0x0e, 16);

	/* Recorded: a correct response to the first challenge ... */
	struct mfd__hello hm = hello(MFD_ROLE_MAIN, 0, session);
	struct mfd__chan *c = dial(vm.uri);
	start(c, &hm, nonce);
	c->ops->close(c); /* (the recording's connection ends) */
	/* ... replayed on a new connection: refused. */
	c = dial(vm.uri);
	start(c, &hm, nonce2);
	assert_memory_not_equal(nonce, nonce2, sizeof(nonce));
	assert_int_equal(respond(c, &key, &hm, nonce), MFD_EAUTH);
	c->ops->close(c);

	/* A real main channel, then SETUP. */
	struct mfd__chan *m = dial(vm.uri);
	uint64_t f;
	assert_int_equal(mfd__handshake_source(m, &hm, &key, &f), 0);
	struct mfd__block_desc bd = { .name = "pc.ram",
				      .size = RAM,
				      .page_size = 4096 };
	struct mfd__setup su = { .nblocks = 1,
				 .packet_pages = 128,
				 .nchannels = 2,
				 .features = hm.features,
				 .blocks = &bd };
	uint8_t sbuf[512];
	int n = mfd__setup_encode(&su, sbuf, sizeof(sbuf));
	assert_true(n > 0);
	assert_int_equal(mfd__ctl_send(m, MFD_CTL_SETUP, sbuf, (uint32_t)n), 0);
	struct mfd__ctl_hdr ch;
	uint8_t *payload;
	assert_int_equal(mfd__ctl_recv(m, &ch, &payload), 0);
	assert_int_equal(ch.type, MFD_CTL_SETUP_OK);

	/* Data channel 0 whose MAC was made for channel 1: refused. */
	struct mfd__hello d0 = hello(MFD_ROLE_DATA, 0, session);
	struct mfd__hello d1 = hello(MFD_ROLE_DATA, 1, session);
	c = dial(vm.uri);
	start(c, &d0, nonce);
	assert_int_equal(respond(c, &key, &d1, nonce), MFD_EAUTH);
	c->ops->close(c);
	/* A data channel of another migration: refused in the reply. */
	struct mfd__hello dx = hello(MFD_ROLE_DATA, 0, other);
	c = dial(vm.uri);
	assert_int_equal(mfd__handshake_source(c, &dx, &key, &f), MFD_ESESSION);
	c->ops->close(c);
	/* The right one is still admitted after all that. */
	c = dial(vm.uri);
	assert_int_equal(mfd__handshake_source(c, &d0, &key, &f), 0);
	c->ops->close(c);
	m->ops->close(m);
	assert_true(mfd_dest_wait(vm.dst) < 0);
	assert_int_equal(vm.loaded, 0);
	mfd__auth_key_clear(&key);
	tvm_destroy(&vm);
}

int main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/mfd-auth-XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_key),
		cmocka_unit_test(test_wrong_key),
		cmocka_unit_test(test_missing_key),
		cmocka_unit_test(test_key_file_checks),
		cmocka_unit_test(test_replay_and_binding),
	};
	int ret = cmocka_run_group_tests(tests, NULL, NULL);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd))
		fprintf(stderr, "could not remove %s\n", dir);
	return ret;
}
