/* SPDX-License-Identifier: MIT */
/* Helpers for integration tests: guest-like memory, a source and a
 * destination in one process, and a TCP proxy that can damage a stream. */
#ifndef MFD_TESTVM_H
#define MFD_TESTVM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multifd/multifd.h"

/* Anonymous mapping with transparent huge pages; aborts on failure. */
void *tvm_map(size_t size);
void tvm_unmap(void *p, size_t size);
/* Deterministic incompressible bytes. */
void tvm_fill_random(void *p, size_t n, uint64_t seed);
uint64_t tvm_rand(uint64_t *state);
/* Seed from $MFD_TEST_SEED or the clock; printed so a failure can be
 * replayed. */
uint64_t tvm_seed(const char *test);
/* The io-engine of this run, from $MFD_TEST_IO_ENGINE (sockets when
 * unset); tvm_config() applies it. Exits 77 with a message when it is
 * uring and io_uring is unavailable here. Call first in main(). */
const char *tvm_io_engine(const char *test);
uint64_t tvm_hash(const void *p, size_t n);
/* A guest's store into its own memory while the migration may read it (by
 * design: the page is dirty again and goes out later). tests/tsan.supp
 * exempts these two functions (race:tvm_guest_write) and nothing else of a
 * test's hooks, so any other race in a hook is still reported. */
void tvm_guest_write(void *dst, const void *src, size_t n);
void tvm_guest_write_zero(void *dst, size_t n);
/* Monotonic clock in ms. */
uint64_t tvm_now_ms(void);

struct tvm_block {
	const char *name;
	size_t size;
	uint32_t page_size;
	uint8_t *src, *dst;
};

struct tvm {
	struct tvm_block blocks[8];
	unsigned nblocks;
	mfd_config *cfg;
	mfd_source *src;
	mfd_dest *dst;
	char uri[128];
	/* Where the destination listens; NULL: "tcp:127.0.0.1:0". */
	const char *listen_uri;
	/* Hook records. */
	int stopped, resumed, loaded, failed, failed_err;
	/* in_doubt hooks: calls, and what each side reported. */
	int src_in_doubt, dst_in_doubt;
	mfd_handover src_ho, dst_ho;
	/* The destination's paused hook (resumable pre-copy): calls
	 * (atomic), and the last cause. */
	int dst_paused, dst_paused_cause;
	mfd_source_hooks shooks; /* the test may set sync_dirty etc. */
	/* Optional: called by tvm_start_dest() after the blocks are added,
	 * before the destination starts (e.g. to add devices). */
	void (*dest_setup)(struct tvm *vm);
	/* Optional: called by tvm_migrate() after the source's blocks are
	 * added, before it migrates (e.g. to add devices). */
	void (*src_setup)(struct tvm *vm);
	/* Optional: the destination's announce hook (opaque = the tvm). */
	int (*dest_announce)(void *opaque, unsigned round);
	void *opaque;
};

/* Adds a block with memory on both sides (source filled by the caller). */
void tvm_add_block(struct tvm *vm, const char *name, size_t size,
		   uint32_t page_size);
/* Adds a block whose source holds random bytes from seed, and returns a
 * copy of them (tvm_map'd, size bytes): the guest at the start, for the
 * tests that change the source meanwhile and compare at the end. */
uint8_t *tvm_add_random_block(struct tvm *vm, const char *name, size_t size,
			      uint32_t page_size, uint64_t seed);
/* Creates config with "key=value" pairs (NULL-terminated). */
void tvm_config(struct tvm *vm, const char *const *kv);
/* Creates both handles, starts the destination on loopback (or on
 * listen_uri) and returns 0; the source connects to vm->uri, or to
 * connect_uri when non-NULL (a proxy). */
void tvm_start_dest(struct tvm *vm);
int tvm_migrate(struct tvm *vm, const char *connect_uri, int *dest_ret);
/* Byte-for-byte comparison of every block; returns true when equal. */
bool tvm_equal(struct tvm *vm);
void tvm_destroy(struct tvm *vm);

/* A one-shot TCP proxy: accepts nconn connections on loopback and pumps
 * each to target. When damage() is set it may rewrite the client->server
 * bytes of connection idx at stream position pos (len bytes in buf). */
struct tvm_proxy {
	char listen_uri[128];
	char target[128];
	int lfd;
	unsigned nconn;
	pthread_t thread;
	void (*damage)(struct tvm_proxy *p, unsigned conn, uint64_t pos,
		       uint8_t *buf, size_t len);
	/* Optional fault: asked before each client->server chunk of
	 * connection conn (0 = main, 1.. = data channels in connect order)
	 * what to do with it (enum tvm_fault). */
	int (*fault)(struct tvm_proxy *p, unsigned conn, uint64_t pos,
		     size_t len);
	int stop; /* atomic: set by tvm_proxy_stop; stalled pumps end */
	void *opaque;
};
enum tvm_fault {
	TVM_PASS = 0,
	TVM_CLOSE, /* FIN both ways */
	TVM_RESET, /* RST both ways */
	TVM_STALL, /* forward nothing more, keep the connection open */
};
void tvm_proxy_start(struct tvm_proxy *p, const char *target, unsigned nconn);
void tvm_proxy_stop(struct tvm_proxy *p);

/*
 * A fresh /tmp/mfd-NAME-XXXXXX holding the TLS tests' pre-shared key as
 * "psk" (mode 0600), for "tls-psk-file=DIR/psk": 0, or -1 (errno set).
 * tvm_psk_dir_remove() deletes both.
 */
int tvm_psk_dir(char *dir, size_t len, const char *name);
void tvm_psk_dir_remove(const char *dir);

#endif
