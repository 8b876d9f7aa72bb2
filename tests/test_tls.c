/* SPDX-License-Identifier: MIT */
/*
 * TLS 1.3 on every channel: migrations with certificates (server-only and
 * mutual) and with an external PSK pass the same checks as plain TCP, and
 * every untrusted peer is refused with MFD_ETLS and a logged reason,
 * without a hang and with the source running on. The certificates are made
 * here, with libcrypto, in a temporary directory.
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "testvm.h"

#define MiB (1024UL * 1024)

static uint64_t seed;
static char dir[64];

struct cred {
	EVP_PKEY *key;
	X509 *cert;
};

static struct cred ca, rogue_ca;

static void add_ext(X509 *issuer, X509 *x, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	assert_non_null(e);
	assert_int_equal(X509_add_ext(x, e, -1), 1);
	X509_EXTENSION_free(e);
}

/* A P-256 key and a certificate for cn (and san), signed by issuer, or
 * self-signed as a CA when issuer is NULL. */
static struct cred make_cert(const struct cred *issuer, const char *cn,
			     const char *san)
{
	static long serial = 1;
	struct cred c = { .key = EVP_EC_gen("P-256"), .cert = X509_new() };
	assert_non_null(c.key);
	assert_non_null(c.cert);
	X509_set_version(c.cert, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(c.cert), serial++);
	X509_gmtime_adj(X509_getm_notBefore(c.cert), -3600);
	X509_gmtime_adj(X509_getm_notAfter(c.cert), 86400);
	X509_NAME *name = X509_get_subject_name(c.cert);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
				   (const unsigned char *)cn, -1, -1, 0);
	X509 *iss = issuer ? issuer->cert : c.cert;
	X509_set_issuer_name(c.cert, X509_get_subject_name(iss));
	X509_set_pubkey(c.cert, c.key);
	if (!issuer) {
		add_ext(iss, c.cert, NID_basic_constraints, "critical,CA:TRUE");
		add_ext(iss, c.cert, NID_key_usage, "critical,keyCertSign");
		add_ext(iss, c.cert, NID_subject_key_identifier, "hash");
	} else {
		add_ext(iss, c.cert, NID_basic_constraints, "CA:FALSE");
		add_ext(iss, c.cert, NID_authority_key_identifier, "keyid");
		add_ext(iss, c.cert, NID_ext_key_usage,
			"serverAuth,clientAuth");
		if (san)
			add_ext(iss, c.cert, NID_subject_alt_name, san);
	}
	assert_true(X509_sign(c.cert, issuer ? issuer->key : c.key,
			      EVP_sha256()) > 0);
	return c;
}

static void write_cred(const struct cred *c, const char *base)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/%s.pem", dir, base);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_X509(f, c->cert), 1);
	fclose(f);
	snprintf(path, sizeof(path), "%s/%s.key", dir, base);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(
		PEM_write_PrivateKey(f, c->key, NULL, NULL, 0, NULL, NULL), 1);
	fclose(f);
}

static void free_cred(struct cred *c)
{
	X509_free(c->cert);
	EVP_PKEY_free(c->key);
}

static void write_file(const char *base, const char *text)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", dir, base);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int setup_certs(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/mfd-tls-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	ca = make_cert(NULL, "multifd test CA", NULL);
	rogue_ca = make_cert(NULL, "another CA", NULL);
	struct cred server =
		make_cert(&ca, "destination", "IP:127.0.0.1,DNS:localhost");
	struct cred other = make_cert(&ca, "other", "DNS:other.example");
	struct cred rogue = make_cert(&rogue_ca, "destination",
				      "IP:127.0.0.1,DNS:localhost");
	struct cred client = make_cert(&ca, "source", "DNS:source.example");
	write_cred(&ca, "ca");
	write_cred(&server, "server");
	write_cred(&other, "other");
	write_cred(&rogue, "rogue");
	write_cred(&client, "client");
	free_cred(&server);
	free_cred(&other);
	free_cred(&rogue);
	free_cred(&client);
	write_file("psk", "4f1d0c8a9b3e27d6a5c4b3a29180f7e6d5c4b3a291807f6e\n");
	write_file("psk2", "00112233445566778899aabbccddeeff00112233445566\n");
	return 0;
}

static int teardown_certs(void **state)
{
	static const char *const files[] = {
		"ca.pem",     "ca.key",	    "server.pem", "server.key",
		"other.pem",  "other.key",  "rogue.pem",  "rogue.key",
		"client.pem", "client.key", "psk",	  "psk2"
	};
	char path[128];
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	rmdir(dir);
	free_cred(&ca);
	free_cred(&rogue_ca);
	return 0;
}

/* "key=FILE" with FILE in the temporary directory. */
struct kv {
	char s[16][160];
	const char *p[17];
	unsigned n;
};

static void kv_add(struct kv *kv, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void kv_add(struct kv *kv, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(kv->s[kv->n], sizeof(kv->s[0]), fmt, ap);
	va_end(ap);
	kv->p[kv->n] = kv->s[kv->n];
	kv->n++;
	kv->p[kv->n] = NULL;
}

static void server_cert(struct kv *kv, const char *base)
{
	kv_add(kv, "tls=cert");
	kv_add(kv, "tls-cert=%s/%s.pem", dir, base);
	kv_add(kv, "tls-key=%s/%s.key", dir, base);
	kv_add(kv, "tls-ca=%s/ca.pem", dir);
}

static void client_ca(struct kv *kv, bool with_cert)
{
	kv_add(kv, "tls=cert");
	kv_add(kv, "tls-ca=%s/ca.pem", dir);
	if (with_cert) {
		kv_add(kv, "tls-cert=%s/client.pem", dir);
		kv_add(kv, "tls-key=%s/client.key", dir);
	}
}

/* ---- migrations over TLS ---- */

static void migrate_tls(const struct kv *kv, unsigned channels)
{
	struct tvm vm = { 0 };
	tvm_config(&vm, kv->p);
	char ch[8];
	snprintf(ch, sizeof(ch), "%u", channels);
	assert_int_equal(mfd_config_set(vm.cfg, "channels", ch), 0);
	assert_int_equal(mfd_config_set(vm.cfg, "verify", "on"), 0);
	tvm_add_block(&vm, "pc.ram", 256 * MiB, 4096);
	tvm_add_block(&vm, "vga.vram", 4 * MiB + 4096, 4096);
	tvm_fill_random(vm.blocks[0].src, 256 * MiB, seed + channels);
	tvm_fill_random(vm.blocks[1].src, 4 * MiB + 4096, seed * 3);
	uint64_t before = tvm_hash(vm.blocks[0].src, 256 * MiB);

	int dret = -1;
	assert_int_equal(tvm_migrate(&vm, NULL, &dret), 0);
	assert_int_equal(dret, 0);
	assert_true(tvm_equal(&vm));
	assert_true(tvm_hash(vm.blocks[0].src, 256 * MiB) == before);
	assert_int_equal(vm.stopped, 1);
	assert_int_equal(vm.resumed, 0);
	assert_int_equal(vm.loaded, 1);
	mfd_stats s, d;
	mfd_source_get_stats(vm.src, &s, sizeof(s));
	mfd_dest_get_stats(vm.dst, &d, sizeof(d));
	assert_int_equal(s.channels, channels);
	assert_int_equal(d.channels, channels);
	assert_int_equal(s.pages, d.pages);
	assert_int_equal(s.wire_bytes, d.wire_bytes);
	tvm_destroy(&vm);
}

static void test_cert_1_channel(void **state)
{
	/* Server certificate only; the source checks it against 127.0.0.1. */
	struct kv kv = { 0 };
	server_cert(&kv, "server");
	migrate_tls(&kv, 1);
}

static void test_cert_mutual_2_channels(void **state)
{
	/* One config for both sides: the destination requires the
	 * source's certificate, and gets one. */
	struct kv kv = { 0 };
	kv_add(&kv, "tls=cert");
	kv_add(&kv, "tls-ca=%s/ca.pem", dir);
	kv_add(&kv, "tls-verify-peer=on");
	/* tvm uses one config: the source presents server.pem as its
	 * client certificate, which is fine for a test (clientAuth). */
	kv_add(&kv, "tls-cert=%s/server.pem", dir);
	kv_add(&kv, "tls-key=%s/server.key", dir);
	migrate_tls(&kv, 2);
}

static void test_psk_4_channels(void **state)
{
	struct kv kv = { 0 };
	kv_add(&kv, "tls=psk");
	kv_add(&kv, "tls-psk-file=%s/psk", dir);
	migrate_tls(&kv, 4);
}

/* ---- rounds over TLS: pages rewritten between rounds ---- */

#define RR_RAM	 (64 * MiB)
#define RR_PAGES (RR_RAM / 4096)
#define HOT	 4096

struct rounds {
	struct tvm vm;
	uint64_t rng;
	uint32_t syncs;
	uint64_t hot[HOT];
};

static int rounds_sync(void *opaque, unsigned block, uint64_t *bitmap,
		       uint64_t npages)
{
	struct rounds *r = opaque;
	r->syncs++;
	for (unsigned i = 0; i < HOT; i++) {
		uint64_t pg = r->hot[i];
		uint64_t *p = (uint64_t *)(r->vm.blocks[0].src + pg * 4096);
		uint64_t v = r->syncs;
		tvm_guest_write(&p[0], &v, sizeof(v));
		v = tvm_rand(&r->rng);
		tvm_guest_write(&p[1 + v % 511], &v, sizeof(v));
		if (i & 1)
			bitmap[pg / 64] |= 1ULL << (pg % 64);
		else
			mfd_source_mark_dirty(r->vm.src, 0, pg * 4096, 4096);
	}
	return 0;
}

static int rounds_stop(void *opaque)
{
	((struct rounds *)opaque)->vm.stopped++;
	return 0;
}

static int rounds_resume(void *opaque)
{
	((struct rounds *)opaque)->vm.resumed++;
	return 0;
}

static void test_rounds_psk(void **state)
{
	for (unsigned iter = 0; iter < 3; iter++) {
		struct rounds *r = calloc(1, sizeof(*r));
		struct kv kv = { 0 };
		if (iter == 1) {
			server_cert(&kv, "server");
		} else {
			kv_add(&kv, "tls=psk");
			kv_add(&kv, "tls-psk-file=%s/psk", dir);
		}
		kv_add(&kv, "channels=4");
		kv_add(&kv, "verify=on");
		kv_add(&kv, "max-rounds=6");
		kv_add(&kv, "downtime-limit=1");
		tvm_config(&r->vm, kv.p);
		tvm_add_block(&r->vm, "pc.ram", RR_RAM, 4096);
		r->rng = seed + iter;
		tvm_fill_random(r->vm.blocks[0].src, RR_RAM, seed ^ iter);
		for (unsigned i = 0; i < HOT; i++)
			r->hot[i] = tvm_rand(&r->rng) % RR_PAGES;
		r->vm.shooks = (mfd_source_hooks){ .opaque = r,
						   .stop = rounds_stop,
						   .resume = rounds_resume,
						   .sync_dirty = rounds_sync };
		tvm_start_dest(&r->vm);
		mfd_source_hooks sh = r->vm.shooks;
		assert_int_equal(mfd_source_new(&r->vm.src, r->vm.cfg, &sh), 0);
		assert_int_equal(mfd_source_add_block(r->vm.src, "pc.ram",
						      r->vm.blocks[0].src,
						      RR_RAM, 4096),
				 0);
		assert_int_equal(mfd_source_migrate(r->vm.src, r->vm.uri), 0);
		assert_int_equal(mfd_dest_wait(r->vm.dst), 0);
		assert_true(tvm_equal(&r->vm));
		mfd_stats st;
		mfd_source_get_stats(r->vm.src, &st, sizeof(st));
		assert_int_equal(st.round, 6);
		assert_int_equal(r->syncs, 7);
		tvm_destroy(&r->vm);
		free(r);
	}
}

/* ---- refusals ---- */

/* Captures what the library logs (stderr) while a test runs. */
struct capture {
	char path[128];
	int saved;
};

static void capture_start(struct capture *c)
{
	snprintf(c->path, sizeof(c->path), "%s/log", dir);
	fflush(stderr);
	c->saved = dup(2);
	int fd = open(c->path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	dup2(fd, 2);
	close(fd);
}

static char *capture_end(struct capture *c)
{
	static char text[16384];
	fflush(stderr);
	dup2(c->saved, 2);
	close(c->saved);
	FILE *f = fopen(c->path, "r");
	assert_non_null(f);
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = 0;
	fclose(f);
	unlink(c->path);
	fputs(text, stderr); /* still visible in the test output */
	return text;
}

/*
 * The destination runs with dest_kv, the source with src_kv. The source
 * must fail with want; the destination must refuse the connection (and
 * log dest_why) and keep waiting for a proper source, which it never
 * reports as a success.
 */
static void refused(const struct kv *dest_kv, const struct kv *src_kv, int want,
		    const char *src_why, const char *dest_why)
{
	struct tvm vm = { 0 };
	struct capture cap;
	tvm_config(&vm, dest_kv->p);
	assert_int_equal(mfd_config_set(vm.cfg, "connect-timeout", "3s"), 0);
	tvm_add_block(&vm, "pc.ram", 4 * MiB, 4096);
	tvm_fill_random(vm.blocks[0].src, 4 * MiB, seed);
	tvm_start_dest(&vm);
	mfd_config_free(vm.cfg);
	vm.cfg = NULL;
	tvm_config(&vm, src_kv->p);
	assert_int_equal(mfd_config_set(vm.cfg, "connect-timeout", "3s"), 0);
	/* vm is the first member of struct rounds: the hooks count in it. */
	mfd_source_hooks sh = { .opaque = &vm,
				.stop = rounds_stop,
				.resume = rounds_resume };
	assert_int_equal(mfd_source_new(&vm.src, vm.cfg, &sh), 0);
	assert_int_equal(mfd_source_add_block(vm.src, "pc.ram",
					      vm.blocks[0].src, 4 * MiB, 4096),
			 0);
	capture_start(&cap);
	uint64_t t0 = (uint64_t)time(NULL);
	int ret = mfd_source_migrate(vm.src, vm.uri);
	/* The destination logs its side before the source sees the end. */
	usleep(100000);
	char *log = capture_end(&cap);
	assert_int_equal(ret, want);
	assert_true((uint64_t)time(NULL) - t0 <= 3);
	assert_int_equal(vm.stopped, 0); /* the guest never paused */
	if (src_why && !strstr(log, src_why))
		fail_msg("source log lacks \"%s\"", src_why);
	if (dest_why && !strstr(log, dest_why))
		fail_msg("destination log lacks \"%s\"", dest_why);
	mfd_stats st;
	mfd_source_get_stats(vm.src, &st, sizeof(st));
	assert_int_equal(st.phase, MFD_PHASE_FAILED);
	assert_int_equal(st.error, want);
	/* The destination is still waiting; it never loaded anything. */
	mfd_dest_get_stats(vm.dst, &st, sizeof(st));
	assert_int_equal(st.phase, MFD_PHASE_SETUP);
	assert_int_equal(mfd_dest_cancel(vm.dst), 0);
	assert_int_equal(mfd_dest_wait(vm.dst), -ECANCELED);
	assert_int_equal(vm.loaded, 0);
	uint8_t zero[4096] = { 0 };
	assert_memory_equal(vm.blocks[0].dst, zero, sizeof(zero));
	tvm_destroy(&vm);
}

static void test_cert_for_other_host(void **state)
{
	struct kv d = { 0 }, s = { 0 };
	server_cert(&d, "other");
	client_ca(&s, false);
	refused(&d, &s, MFD_ETLS, "IP address mismatch (expected '127.0.0.1')",
		"refused connection from");
}

static void test_hostname_override(void **state)
{
	/* The same certificate is accepted when the source is told the
	 * destination's name. */
	struct kv kv = { 0 };
	server_cert(&kv, "other");
	kv_add(&kv, "tls-hostname=other.example");
	struct tvm vm = { 0 };
	tvm_config(&vm, kv.p);
	tvm_add_block(&vm, "pc.ram", 8 * MiB, 4096);
	tvm_fill_random(vm.blocks[0].src, 8 * MiB, seed);
	int dret = -1;
	assert_int_equal(tvm_migrate(&vm, NULL, &dret), 0);
	assert_int_equal(dret, 0);
	assert_true(tvm_equal(&vm));
	tvm_destroy(&vm);
}

static void test_wrong_ca(void **state)
{
	struct kv d = { 0 }, s = { 0 };
	server_cert(&d, "rogue");
	client_ca(&s, false);
	refused(&d, &s, MFD_ETLS, "unable to get local issuer certificate",
		"TLS handshake failed");
}

static void test_client_cert_required(void **state)
{
	struct kv d = { 0 }, s = { 0 };
	server_cert(&d, "server");
	kv_add(&d, "tls-verify-peer=on");
	client_ca(&s, false);
	refused(&d, &s, MFD_ETLS, "alert certificate required",
		"peer did not return a certificate");
}

static void test_client_cert_of_other_ca(void **state)
{
	/* A client certificate the destination's CA did not sign. */
	struct kv d = { 0 }, s = { 0 };
	server_cert(&d, "server");
	kv_add(&d, "tls-verify-peer=on");
	client_ca(&s, false);
	kv_add(&s, "tls-cert=%s/rogue.pem", dir);
	kv_add(&s, "tls-key=%s/rogue.key", dir);
	refused(&d, &s, MFD_ETLS, "alert unknown ca (the peer refused us)",
		"certificate verify failed");
}

static void test_wrong_psk(void **state)
{
	struct kv d = { 0 }, s = { 0 };
	kv_add(&d, "tls=psk");
	kv_add(&d, "tls-psk-file=%s/psk", dir);
	kv_add(&s, "tls=psk");
	kv_add(&s, "tls-psk-file=%s/psk2", dir);
	refused(&d, &s, MFD_ETLS, "TLS handshake with", "TLS handshake failed");
}

static void test_plain_source_tls_dest(void **state)
{
	struct kv d = { 0 }, s = { 0 };
	server_cert(&d, "server");
	kv_add(&s, "tls=off");
	refused(&d, &s, MFD_ETLS, "destination refused the connection",
		"speaks multifd without TLS");
}

static void test_tls_source_plain_dest(void **state)
{
	struct kv d = { 0 }, s = { 0 };
	kv_add(&d, "tls=off");
	client_ca(&s, false);
	refused(&d, &s, MFD_ETLS, "TLS handshake with",
		"refused connection from");
}

static void test_cert_source_psk_dest(void **state)
{
	struct kv d = { 0 }, s = { 0 };
	kv_add(&d, "tls=psk");
	kv_add(&d, "tls-psk-file=%s/psk", dir);
	client_ca(&s, false);
	refused(&d, &s, MFD_ETLS, "TLS handshake with", "TLS handshake failed");
}

/* ---- configuration errors are reported by start ---- */

static void test_config_errors(void **state)
{
	static const char *const bad_dest[][3] = {
		{ "tls=cert", NULL, NULL }, /* no certificate */
		{ "tls=cert", "tls-cert=/nonexistent/cert.pem", NULL },
		{ "tls=psk", NULL, NULL }, /* no key file */
		{ "tls=psk", "tls-psk-file=/nonexistent/psk", NULL },
	};
	for (size_t i = 0; i < sizeof(bad_dest) / sizeof(bad_dest[0]); i++) {
		struct tvm vm = { 0 };
		tvm_config(&vm, bad_dest[i]);
		tvm_add_block(&vm, "pc.ram", 1 * MiB, 4096);
		mfd_dest_hooks dh = { 0 };
		assert_int_equal(mfd_dest_new(&vm.dst, vm.cfg, &dh), 0);
		assert_int_equal(mfd_dest_add_block(vm.dst, "pc.ram",
						    vm.blocks[0].dst, 1 * MiB,
						    4096),
				 0);
		assert_int_equal(mfd_dest_start(vm.dst, "tcp:127.0.0.1:0"),
				 MFD_ECONFIG);
		tvm_destroy(&vm);
	}
	/* A key that does not belong to the certificate, a short PSK. */
	struct kv kv = { 0 };
	kv_add(&kv, "tls=cert");
	kv_add(&kv, "tls-cert=%s/server.pem", dir);
	kv_add(&kv, "tls-key=%s/client.key", dir);
	struct tvm vm = { 0 };
	tvm_config(&vm, kv.p);
	tvm_add_block(&vm, "pc.ram", 1 * MiB, 4096);
	mfd_source_hooks sh = { .opaque = &vm,
				.stop = rounds_stop,
				.resume = rounds_resume };
	assert_int_equal(mfd_source_new(&vm.src, vm.cfg, &sh), 0);
	assert_int_equal(mfd_source_add_block(vm.src, "pc.ram",
					      vm.blocks[0].src, 1 * MiB, 4096),
			 0);
	assert_int_equal(mfd_source_start(vm.src, "tcp:127.0.0.1:1"),
			 MFD_ECONFIG);
	tvm_destroy(&vm);

	write_file("short", "0123456789\n");
	kv = (struct kv){ 0 };
	kv_add(&kv, "tls=psk");
	kv_add(&kv, "tls-psk-file=%s/short", dir);
	tvm_config(&vm, kv.p);
	tvm_add_block(&vm, "pc.ram", 1 * MiB, 4096);
	assert_int_equal(mfd_source_new(&vm.src, vm.cfg, &sh), 0);
	assert_int_equal(mfd_source_add_block(vm.src, "pc.ram",
					      vm.blocks[0].src, 1 * MiB, 4096),
			 0);
	assert_int_equal(mfd_source_start(vm.src, "tcp:127.0.0.1:1"),
			 MFD_ECONFIG);
	tvm_destroy(&vm);
	char path[128];
	snprintf(path, sizeof(path), "%s/short", dir);
	unlink(path);
}

int main(void)
{
	seed = tvm_seed("test_tls");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cert_1_channel),
		cmocka_unit_test(test_cert_mutual_2_channels),
		cmocka_unit_test(test_psk_4_channels),
		cmocka_unit_test(test_rounds_psk),
		cmocka_unit_test(test_cert_for_other_host),
		cmocka_unit_test(test_hostname_override),
		cmocka_unit_test(test_wrong_ca),
		cmocka_unit_test(test_client_cert_required),
		cmocka_unit_test(test_client_cert_of_other_ca),
		cmocka_unit_test(test_wrong_psk),
		cmocka_unit_test(test_plain_source_tls_dest),
		cmocka_unit_test(test_tls_source_plain_dest),
		cmocka_unit_test(test_cert_source_psk_dest),
		cmocka_unit_test(test_config_errors),
	};
	return cmocka_run_group_tests(tests, setup_certs, teardown_certs);
}
