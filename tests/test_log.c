/* SPDX-License-Identifier: MIT */
/*
 * The library as a hypervisor embeds it: with a log callback set it writes
 * nothing to stderr, the reason of a failure reaches the callback and the
 * error-text calls; without one it logs to stderr as it always did.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "multifd/multifd.h"

struct capture {
	pthread_mutex_t lock;
	char text[16384];
	size_t len;
	int errors; /* lines at MFD_LOG_ERROR */
	int above;  /* lines above the level asked for (must stay 0) */
	int level;
};

static void on_log(void *opaque, int level, const char *msg)
{
	struct capture *c = opaque;
	pthread_mutex_lock(&c->lock);
	c->errors += level == MFD_LOG_ERROR;
	c->above += level > c->level;
	int n = snprintf(c->text + c->len, sizeof(c->text) - c->len, "%d %s\n",
			 level, msg);
	if (n > 0 && (size_t)n < sizeof(c->text) - c->len)
		c->len += (size_t)n;
	pthread_mutex_unlock(&c->lock);
}

/* fd 2 goes to a memory file while a test runs; the bytes written. */
struct stderr_trap {
	int saved, fd;
};

static void trap_begin(struct stderr_trap *t)
{
	fflush(stderr);
	t->fd = memfd_create("stderr", 0);
	assert_true(t->fd >= 0);
	t->saved = dup(2);
	assert_true(t->saved >= 0);
	assert_int_equal(dup2(t->fd, 2), 2);
}

/* Restores fd 2; returns what was written (malloc'd, NUL-terminated). */
static char *trap_end(struct stderr_trap *t)
{
	fflush(stderr);
	assert_int_equal(dup2(t->saved, 2), 2);
	close(t->saved);
	off_t len = lseek(t->fd, 0, SEEK_END);
	char *buf = calloc(1, (size_t)len + 1);
	assert_non_null(buf);
	assert_int_equal(pread(t->fd, buf, (size_t)len, 0), len);
	close(t->fd);
	return buf;
}

#define MIB (1ULL << 20)

static int stop(void *o)
{
	(void)o;
	return 0;
}

/* A source with a 16 MiB block and a destination with an 8 MiB one of the
 * same name: the destination refuses SETUP. */
/* ... with fd 2 trapped: returns what reached it (the caller frees). */
static char *refused_setup(int *src_ret, int *dst_ret, char *src_why,
			   char *dst_why, size_t len)
{
	struct stderr_trap t;
	trap_begin(&t);
	uint8_t *a = mmap(NULL, 16 * MIB, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *b = mmap(NULL, 8 * MIB, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(a != MAP_FAILED && b != MAP_FAILED);
	mfd_dest *d;
	mfd_source *s;
	mfd_source_hooks sh = { .stop = stop, .resume = stop };
	assert_int_equal(mfd_dest_new(&d, NULL, NULL), 0);
	assert_int_equal(mfd_dest_add_block(d, "ram", b, 8 * MIB, 4096), 0);
	assert_int_equal(mfd_dest_start(d, "tcp:127.0.0.1:0"), 0);
	char uri[128];
	assert_int_equal(mfd_dest_get_uri(d, uri, sizeof(uri)), 0);
	assert_int_equal(mfd_source_new(&s, NULL, &sh), 0);
	assert_int_equal(mfd_source_add_block(s, "ram", a, 16 * MIB, 4096), 0);
	assert_string_equal(mfd_source_error_text(s), "");
	*src_ret = mfd_source_migrate(s, uri);
	*dst_ret = mfd_dest_wait(d);
	snprintf(src_why, len, "%s", mfd_source_error_text(s));
	snprintf(dst_why, len, "%s", mfd_dest_error_text(d));
	mfd_source_free(s);
	mfd_dest_free(d);
	munmap(a, 16 * MIB);
	munmap(b, 8 * MIB);
	return trap_end(&t);
}

static const char *const mismatch =
	"block 0: source 'ram' 16777216 bytes/4096, destination 'ram' "
	"8388608 bytes/4096";

static void test_callback_no_stderr(void **state)
{
	(void)state;
	static struct capture cap = { .lock = PTHREAD_MUTEX_INITIALIZER,
				      .level = MFD_LOG_WARN };
	mfd_set_log(on_log, &cap, MFD_LOG_WARN);
	int sret, dret;
	char swhy[1024], dwhy[1024];
	char *err = refused_setup(&sret, &dret, swhy, dwhy, sizeof(swhy));
	mfd_set_log(NULL, NULL, -1);
	printf("callback got:\n%s", cap.text);
	printf("source error text: %s\ndestination error text: %s\n", swhy,
	       dwhy);
	/* Nothing at all on stderr. */
	assert_string_equal(err, "");
	free(err);
	assert_int_equal(sret, MFD_ESETUP);
	assert_int_equal(dret, MFD_ESETUP);
	/* The reason, in full, at error level, through the callback... */
	assert_true(cap.errors >= 2);
	assert_int_equal(cap.above, 0);
	assert_non_null(strstr(cap.text, "0 setup refused: "));
	assert_non_null(strstr(cap.text, mismatch));
	/* ...and from the error-text calls of both sides: the destination's
	 * own, and the one it sent the source. */
	assert_non_null(strstr(dwhy, "setup refused: "));
	assert_non_null(strstr(dwhy, mismatch));
	assert_non_null(strstr(swhy, "destination reported: "));
	assert_non_null(strstr(swhy, mismatch));
}

/* Without a callback: today's stderr lines. */
static void test_default_stderr(void **state)
{
	(void)state;
	mfd_set_log(NULL, NULL, -1);
	int sret, dret;
	char swhy[1024], dwhy[1024];
	char *err = refused_setup(&sret, &dret, swhy, dwhy, sizeof(swhy));
	printf("stderr got:\n%s", err);
	assert_int_equal(sret, MFD_ESETUP);
	assert_non_null(strstr(err, "multifd: error: setup refused: "));
	assert_non_null(strstr(err, mismatch));
	assert_non_null(strstr(dwhy, mismatch));
	free(err);
}

/* A configuration error found by mfd_source_start(): the call fails and
 * the error text says which setting. */
static void test_config_error_text(void **state)
{
	(void)state;
	static struct capture cap = { .lock = PTHREAD_MUTEX_INITIALIZER,
				      .level = MFD_LOG_DEBUG };
	mfd_set_log(on_log, &cap, MFD_LOG_DEBUG);
	mfd_config *cfg;
	assert_int_equal(mfd_config_new(&cfg), 0);
	assert_int_equal(mfd_config_set(cfg, "tls", "psk"), 0);
	mfd_source_hooks sh = { .stop = stop, .resume = stop };
	mfd_source *s;
	assert_int_equal(mfd_source_new(&s, cfg, &sh), 0);
	static uint8_t page[4096];
	assert_int_equal(mfd_source_add_block(s, "ram", page, 4096, 4096), 0);
	struct stderr_trap t;
	trap_begin(&t);
	int ret = mfd_source_start(s, "tcp:127.0.0.1:1");
	char *err = trap_end(&t);
	mfd_set_log(NULL, NULL, -1);
	printf("error text: %s\n", mfd_source_error_text(s));
	assert_int_equal(ret, MFD_ECONFIG);
	assert_string_equal(err, "");
	free(err);
	assert_non_null(strstr(mfd_source_error_text(s), "tls-psk-file"));
	assert_non_null(strstr(cap.text, "tls-psk-file"));
	mfd_source_free(s);
	mfd_config_free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_callback_no_stderr),
		cmocka_unit_test(test_default_stderr),
		cmocka_unit_test(test_config_error_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
