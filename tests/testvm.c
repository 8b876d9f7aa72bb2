/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include <cmocka.h>

#include "multifd/channels/channel.h"
#include "testvm.h"

#define DIE(...)                                                               \
	do {                                                                   \
		fprintf(stderr, __VA_ARGS__);                                  \
		fprintf(stderr, "\n");                                         \
		abort();                                                       \
	} while (0)

/* $MFD_TEST_FILTER (a cmocka pattern, e.g. "test_final_sync*") runs only
 * the matching cases of a binary: tests/mutations/run.sh uses it. Before
 * main(), so every binary linked with this file has it. */
__attribute__((constructor)) static void tvm_test_filter(void)
{
	const char *f = getenv("MFD_TEST_FILTER");
	if (f && *f)
		cmocka_set_test_filter(f);
}

void *tvm_map(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		DIE("mmap %zu: %s", size, strerror(errno));
	madvise(p, size, MADV_HUGEPAGE);
	return p;
}

void tvm_unmap(void *p, size_t size)
{
	munmap(p, size);
}

uint64_t tvm_rand(uint64_t *s)
{
	/* splitmix64 */
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void tvm_fill_random(void *p, size_t n, uint64_t seed)
{
	uint64_t s = seed, *q = p;
	for (size_t i = 0; i < n / 8; i++)
		q[i] = tvm_rand(&s);
}

uint64_t tvm_seed(const char *test)
{
	const char *env = getenv("MFD_TEST_SEED");
	uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
	printf("# %s: seed %llu (MFD_TEST_SEED=%llu to replay)\n", test,
	       (unsigned long long)seed, (unsigned long long)seed);
	fflush(stdout);
	return seed;
}

static const char *io_engine = "sockets";

const char *tvm_io_engine(const char *test)
{
	const char *env = getenv("MFD_TEST_IO_ENGINE");
	if (env && *env)
		io_engine = env;
	if (strcmp(io_engine, "sockets") && strcmp(io_engine, "uring"))
		DIE("MFD_TEST_IO_ENGINE=%s: expected sockets or uring",
		    io_engine);
	if (!strcmp(io_engine, "uring")) {
		int err = mfd__uring_available();
		if (err) {
			printf("# %s: SKIP: io_uring unavailable here (%s; "
			       "see /proc/sys/kernel/io_uring_disabled)\n",
			       test, mfd_strerror(err));
			exit(77);
		}
	}
	printf("# %s: io-engine %s\n", test, io_engine);
	fflush(stdout);
	return io_engine;
}

uint64_t tvm_hash(const void *p, size_t n)
{
	return XXH3_64bits(p, n);
}

__attribute__((noinline)) void tvm_guest_write(void *dst, const void *src,
					       size_t n)
{
	memcpy(dst, src, n);
}

__attribute__((noinline)) void tvm_guest_write_zero(void *dst, size_t n)
{
	memset(dst, 0, n);
}

uint64_t tvm_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void tvm_add_block(struct tvm *vm, const char *name, size_t size,
		   uint32_t page_size)
{
	struct tvm_block *b = &vm->blocks[vm->nblocks++];
	b->name = name;
	b->size = size;
	b->page_size = page_size;
	b->src = tvm_map(size);
	b->dst = tvm_map(size);
}

uint8_t *tvm_add_random_block(struct tvm *vm, const char *name, size_t size,
			      uint32_t page_size, uint64_t seed)
{
	tvm_add_block(vm, name, size, page_size);
	uint8_t *src = vm->blocks[vm->nblocks - 1].src, *copy = tvm_map(size);
	tvm_fill_random(src, size, seed);
	memcpy(copy, src, size);
	return copy;
}

void tvm_config(struct tvm *vm, const char *const *kv)
{
	if (mfd_config_new(&vm->cfg))
		DIE("mfd_config_new");
	/* The matrix's engine first: a test's own pairs have the last word. */
	if (mfd_config_set(vm->cfg, "io-engine", io_engine))
		DIE("config io-engine=%s", io_engine);
	for (; kv && *kv; kv++) {
		char key[64];
		const char *eq = strchr(*kv, '=');
		snprintf(key, sizeof(key), "%.*s", (int)(eq - *kv), *kv);
		int ret = mfd_config_set(vm->cfg, key, eq + 1);
		if (ret)
			DIE("config %s: %s", *kv, mfd_strerror(ret));
	}
}

static int h_stop(void *o)
{
	((struct tvm *)o)->stopped++;
	return 0;
}
static int h_resume(void *o)
{
	((struct tvm *)o)->resumed++;
	return 0;
}
static int h_loaded(void *o)
{
	((struct tvm *)o)->loaded++;
	return 0;
}
static void h_failed(void *o, int err)
{
	((struct tvm *)o)->failed++;
	((struct tvm *)o)->failed_err = err;
}

static void h_dst_paused(void *o, int cause)
{
	struct tvm *vm = o;
	__atomic_fetch_add(&vm->dst_paused, 1, __ATOMIC_RELAXED);
	vm->dst_paused_cause = cause;
}

static void h_dst_in_doubt(void *o, const mfd_handover *h)
{
	((struct tvm *)o)->dst_in_doubt++;
	((struct tvm *)o)->dst_ho = *h;
}
static void h_src_in_doubt(void *o, const mfd_handover *h)
{
	((struct tvm *)o)->src_in_doubt++;
	((struct tvm *)o)->src_ho = *h;
}

void tvm_start_dest(struct tvm *vm)
{
	if (!vm->cfg)
		tvm_config(vm, NULL);
	mfd_dest_hooks dh = { .opaque = vm,
			      .loaded = h_loaded,
			      .failed = h_failed,
			      .announce = vm->dest_announce,
			      .in_doubt = h_dst_in_doubt,
			      .paused = h_dst_paused };
	int ret = mfd_dest_new(&vm->dst, vm->cfg, &dh);
	for (unsigned i = 0; !ret && i < vm->nblocks; i++)
		ret = mfd_dest_add_block(vm->dst, vm->blocks[i].name,
					 vm->blocks[i].dst, vm->blocks[i].size,
					 vm->blocks[i].page_size);
	if (!ret && vm->dest_setup)
		vm->dest_setup(vm);
	if (!ret)
		ret = mfd_dest_start(vm->dst, vm->listen_uri
						      ? vm->listen_uri
						      : "tcp:127.0.0.1:0");
	if (!ret)
		ret = mfd_dest_get_uri(vm->dst, vm->uri, sizeof(vm->uri));
	if (ret)
		DIE("destination: %s", mfd_strerror(ret));
}

int tvm_migrate(struct tvm *vm, const char *connect_uri, int *dest_ret)
{
	if (!vm->dst)
		tvm_start_dest(vm);
	mfd_source_hooks sh = vm->shooks;
	if (!sh.opaque)
		sh.opaque = vm;
	if (!sh.stop)
		sh.stop = h_stop;
	if (!sh.resume)
		sh.resume = h_resume;
	if (!sh.in_doubt && sh.opaque == vm)
		sh.in_doubt = h_src_in_doubt;
	int ret = mfd_source_new(&vm->src, vm->cfg, &sh);
	for (unsigned i = 0; !ret && i < vm->nblocks; i++)
		ret = mfd_source_add_block(
			vm->src, vm->blocks[i].name, vm->blocks[i].src,
			vm->blocks[i].size, vm->blocks[i].page_size);
	if (ret)
		DIE("source: %s", mfd_strerror(ret));
	if (vm->src_setup)
		vm->src_setup(vm);
	ret = mfd_source_migrate(vm->src, connect_uri ? connect_uri : vm->uri);
	int dret = mfd_dest_wait(vm->dst);
	if (dest_ret)
		*dest_ret = dret;
	return ret;
}

bool tvm_equal(struct tvm *vm)
{
	for (unsigned i = 0; i < vm->nblocks; i++) {
		struct tvm_block *b = &vm->blocks[i];
		if (memcmp(b->src, b->dst, b->size)) {
			for (size_t off = 0; off < b->size; off += b->page_size)
				if (memcmp(b->src + off, b->dst + off,
					   b->page_size)) {
					fprintf(stderr,
						"block %s differs at %zu\n",
						b->name, off);
					break;
				}
			return false;
		}
	}
	return true;
}

void tvm_destroy(struct tvm *vm)
{
	mfd_source_free(vm->src);
	mfd_dest_free(vm->dst);
	mfd_config_free(vm->cfg);
	for (unsigned i = 0; i < vm->nblocks; i++) {
		tvm_unmap(vm->blocks[i].src, vm->blocks[i].size);
		tvm_unmap(vm->blocks[i].dst, vm->blocks[i].size);
	}
	memset(vm, 0, sizeof(*vm));
}

/* ---- proxy ---- */

struct pump {
	struct tvm_proxy *p;
	unsigned conn;
	int in, out;
	bool damage;
};

static void *pump_main(void *arg)
{
	struct pump *pm = arg;
	static __thread uint8_t buf[1 << 16];
	uint64_t pos = 0;
	for (;;) {
		ssize_t n = read(pm->in, buf, sizeof(buf));
		if (n <= 0)
			break;
		int f = pm->damage && pm->p->fault
				? pm->p->fault(pm->p, pm->conn, pos, (size_t)n)
				: TVM_PASS;
		if (f == TVM_STALL) {
			/* Hold the connection open, silent, until the test
			 * ends; the other direction keeps running. */
			while (!__atomic_load_n(&pm->p->stop, __ATOMIC_ACQUIRE))
				usleep(10000);
			break;
		}
		if (f == TVM_RESET) {
			struct linger lg = { .l_onoff = 1, .l_linger = 0 };
			setsockopt(pm->in, SOL_SOCKET, SO_LINGER, &lg,
				   sizeof(lg));
			setsockopt(pm->out, SOL_SOCKET, SO_LINGER, &lg,
				   sizeof(lg));
		}
		if (f != TVM_PASS)
			break;
		if (pm->damage && pm->p->damage)
			pm->p->damage(pm->p, pm->conn, pos, buf, (size_t)n);
		pos += (uint64_t)n;
		for (ssize_t off = 0; off < n;) {
			ssize_t w = send(pm->out, buf + off, (size_t)(n - off),
					 MSG_NOSIGNAL);
			if (w <= 0)
				goto out;
			off += w;
		}
	}
out:
	shutdown(pm->out, SHUT_RDWR);
	shutdown(pm->in, SHUT_RDWR);
	return NULL;
}

static int connect_uri(const char *uri)
{
	unsigned a, b, c, d, port;
	if (sscanf(uri, "tcp:%u.%u.%u.%u:%u", &a, &b, &c, &d, &port) != 5)
		DIE("proxy target %s", uri);
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(a << 24 | b << 16 |
							   c << 8 | d) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		DIE("proxy connect: %s", strerror(errno));
	return fd;
}

static void *proxy_main(void *arg)
{
	struct tvm_proxy *p = arg;
	pthread_t th[64];
	struct pump pumps[64];
	unsigned np = 0;
	int fds[64];
	unsigned nfd = 0;
	for (unsigned i = 0; i < p->nconn && i < 32; i++) {
		struct pollfd pfd = { .fd = p->lfd, .events = POLLIN };
		int waited = 0, r = 0;
		while (waited < 10000 &&
		       !__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE) &&
		       (r = poll(&pfd, 1, 50)) == 0)
			waited += 50;
		if (r <= 0)
			break;
		int cfd = accept(p->lfd, NULL, NULL);
		if (cfd < 0)
			break;
		int sfd = connect_uri(p->target);
		fds[nfd++] = cfd;
		fds[nfd++] = sfd;
		pumps[np] = (struct pump){ p, i, cfd, sfd, true };
		pthread_create(&th[np], NULL, pump_main, &pumps[np]);
		np++;
		pumps[np] = (struct pump){ p, i, sfd, cfd, false };
		pthread_create(&th[np], NULL, pump_main, &pumps[np]);
		np++;
	}
	for (unsigned i = 0; i < np; i++)
		pthread_join(th[i], NULL);
	for (unsigned i = 0; i < nfd; i++)
		close(fds[i]);
	return NULL;
}

void tvm_proxy_start(struct tvm_proxy *p, const char *target, unsigned nconn)
{
	snprintf(p->target, sizeof(p->target), "%s", target);
	p->nconn = nconn;
	p->lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	if (bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(p->lfd, 64) ||
	    getsockname(p->lfd, (struct sockaddr *)&sa, &sl))
		DIE("proxy listen: %s", strerror(errno));
	snprintf(p->listen_uri, sizeof(p->listen_uri), "tcp:127.0.0.1:%u",
		 ntohs(sa.sin_port));
	pthread_create(&p->thread, NULL, proxy_main, p);
}

void tvm_proxy_stop(struct tvm_proxy *p)
{
	__atomic_store_n(&p->stop, 1, __ATOMIC_RELEASE);
	pthread_join(p->thread, NULL);
	close(p->lfd);
}

int tvm_psk_dir(char *dir, size_t len, const char *name)
{
	char path[256];
	snprintf(dir, len, "/tmp/mfd-%s-XXXXXX", name);
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/psk", dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fputs("4f1d0c8a9b3e27d6a5c4b3a29180f7e6d5c4b3a291807f6e\n", f);
	fclose(f);
	return chmod(path, 0600);
}

void tvm_psk_dir_remove(const char *dir)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/psk", dir);
	unlink(path);
	rmdir(dir);
}
