/* SPDX-License-Identifier: MIT */
/*
 * The simulated VM of multifd-bench: guest RAM on both sides of one
 * migration, split into RAM blocks, and the images that fill it.
 *
 * Each side is one anonymous mapping aligned to 2 MiB and advised
 * MADV_HUGEPAGE, as a hypervisor backs guest RAM with huge pages. Blocks
 * are slices of it at the same offsets on both sides.
 */
#ifndef BENCH_VM_H
#define BENCH_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum vm_image_kind {
	VM_IMAGE_RANDOM, /* incompressible, no zero pages */
	VM_IMAGE_ZERO,	 /* every page zero */
	VM_IMAGE_MIX,	 /* ~25% zero, ~25% random, ~50% system files */
	VM_IMAGE_FILE,	 /* the bytes of one file, repeated */
};

struct vm_image {
	enum vm_image_kind kind;
	const char *path; /* VM_IMAGE_FILE only */
	uint64_t seed;
};

struct vm_block {
	char name[64];
	uint64_t offset; /* from the start of RAM, page aligned */
	uint64_t size;	 /* a multiple of the page size */
};

struct vm {
	uint64_t ram_bytes;
	uint32_t page_size;
	unsigned nblocks;
	struct vm_block *blocks;
	uint8_t *src; /* source RAM, ram_bytes long */
	uint8_t *dst; /* destination RAM, ram_bytes long */
	bool src_thp; /* MADV_HUGEPAGE accepted */
	bool dst_thp;
};

/*
 * Parses "random", "zero", "mix" or a file path into img (seed untouched).
 * Returns 0, or -EINVAL for an empty string.
 */
int vm_image_parse(const char *s, struct vm_image *img);
/* Short name of the image for reports: the kind, or the path. */
const char *vm_image_name(const struct vm_image *img);

/*
 * Maps source and destination RAM (zero-filled) and splits it into nblocks
 * blocks of different sizes, the first named "pc.ram". ram_bytes must be a
 * multiple of page_size and large enough for nblocks pages. Returns 0 or a
 * negative errno; prints the reason to stderr.
 */
int vm_create(struct vm **out, uint64_t ram_bytes, unsigned nblocks,
	      uint32_t page_size);
/*
 * Fills source RAM with img using up to threads threads. The result depends
 * only on the image and its seed, never on the thread count.
 */
int vm_fill(struct vm *vm, const struct vm_image *img, unsigned threads);
/* Pre-faults destination RAM writable (MADV_POPULATE_WRITE or touching). */
int vm_dest_populate(struct vm *vm);
/* Accepts NULL. */
void vm_destroy(struct vm *vm);

static inline uint8_t *vm_block_src(const struct vm *vm, unsigned i)
{
	return vm->src + vm->blocks[i].offset;
}

static inline uint8_t *vm_block_dst(const struct vm *vm, unsigned i)
{
	return vm->dst + vm->blocks[i].offset;
}

#endif /* BENCH_VM_H */
