/* SPDX-License-Identifier: MIT */
/*
 * A minimal KVM VMM for multifd-bench and the KVM tests: one memory slot,
 * 1..N vCPU threads entered directly in 64-bit long mode (no firmware),
 * CPUID from KVM_GET_SUPPORTED_CPUID, a COM1 8250 serial port (transmit
 * side), in-kernel irqchip and PIT when the host has them, KVM's dirty log
 * (with manual protect when reported), and vCPU / VM state save and
 * restore.
 *
 * It uses only the Linux KVM API and, in kvm_migrate.c, the public
 * libmultifd headers (include/multifd/).
 *
 * Threading: one thread (the creator, or the migration thread through the
 * hooks) drives a vmm; the vCPU threads are internal. vmm_pause() returns
 * once every vCPU thread is parked outside KVM_RUN; state save/restore and
 * dirty sync may then run from the driving thread.
 */
#ifndef MFD_BENCH_KVM_VMM_H
#define MFD_BENCH_KVM_VMM_H

#include <stddef.h>
#include <stdint.h>

#define VMM_MAX_VCPUS 8

/* Dirty-log modes. */
enum vmm_dirty_mode {
	VMM_DIRTY_BITMAP = 0, /* KVM_GET_DIRTY_LOG (+ CLEAR when manual) */
	VMM_DIRTY_NONE = 1,   /* no KVM dirty log (destination) */
	VMM_DIRTY_RING = 2,   /* KVM_CAP_DIRTY_LOG_RING, one ring per vCPU */
};

struct vmm_opts {
	uint64_t mem_bytes; /* guest RAM, multiple of 2 MiB, >= 8 MiB */
	unsigned vcpus;	    /* 1..VMM_MAX_VCPUS */
	int dirty_mode;	    /* enum vmm_dirty_mode */
	int serial_fd;	    /* guest COM1 output also goes here; -1: not */
	/* KVM_CLEAR_DIRTY_LOG chunk in pages (multiple of 64); 0: 16384 */
	uint64_t clear_chunk_pages;
	/* Dirty ring entries per vCPU (power of two); 0: 4096. */
	uint32_t ring_entries;
	/* 1: enter at the ELF entry in 64-bit mode even when the kernel has
	 * a PVH note; 0: PVH entry when there is one. */
	int entry64;
};

struct vmm;

/*
 * Opens /dev/kvm and creates the VM, its memory and its vCPUs (not
 * running). Returns 0, -ENODEV when /dev/kvm is missing or KVM_CREATE_VM
 * fails (the caller may skip), or another -errno. err (may be NULL) gets
 * one line saying why.
 */
int vmm_create(struct vmm **out, const struct vmm_opts *o, char *err,
	       size_t errlen);
void vmm_free(struct vmm *vm);

/*
 * Loads an ELF64 kernel and sets the boot state of every vCPU:
 *  - PVH (the kernel has a XEN_ELFNOTE_PHYS32_ENTRY note, and not
 *    opts.entry64): 32-bit protected mode, paging off, flat segments,
 *    %eip = the note's entry;
 *  - otherwise long mode with an identity map of the first 4 GiB (2 MiB
 *    pages), %rip = the ELF entry.
 * Both: %rbx = hvm_start_info (PVH layout: command line, memory map),
 * %rsi = vCPU index. The VMM appends " tsc_khz=N ncpus=N" to cmdline.
 */
int vmm_load_kernel(struct vmm *vm, const char *path, const char *cmdline,
		    char *err, size_t errlen);
/* Starts the vCPU threads (they run until paused or freed). */
int vmm_start(struct vmm *vm);
/* Parks every vCPU outside KVM_RUN (immediate_exit + SIGUSR1); waits at
 * most 5 s. Idempotent. */
int vmm_pause(struct vmm *vm);
int vmm_resume(struct vmm *vm);
/* vCPUs sleep percent% of each 10 ms slice (0: none). */
int vmm_throttle(struct vmm *vm, int percent);

void *vmm_mem(struct vmm *vm);
uint64_t vmm_mem_size(struct vmm *vm);
unsigned vmm_vcpus(struct vmm *vm);
/* Negative errno if a vCPU stopped on a guest failure (triple fault,
 * failed entry, internal error), else 0; the text in vmm_error(). */
int vmm_failed(struct vmm *vm);
const char *vmm_error(struct vmm *vm);
/* Whether the host gave this VM an in-kernel irqchip / PIT. */
int vmm_has_irqchip(struct vmm *vm);
/* 1 when KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 is in use. */
int vmm_manual_protect(struct vmm *vm);
/* 1 when the kernel was entered through its PVH note. */
int vmm_pvh(struct vmm *vm);
/* Entries per vCPU dirty ring (VMM_DIRTY_RING), else 0. */
uint32_t vmm_ring_entries(struct vmm *vm);
/* How often a vCPU found its ring full and harvested it itself. */
uint64_t vmm_ring_full_exits(struct vmm *vm);
/* How often a ring was found with a gap: KVM pushed past its end (kvm_pvm
 * does), the entries it overwrote were lost, and all of memory was
 * reported dirty instead, so no page is missed. */
uint64_t vmm_ring_overflows(struct vmm *vm);

/*
 * ORs the pages the guest wrote since the last call into bitmap (bit i of
 * word i/64 = page i, npages bits), then re-protects them. Bitmap mode:
 * KVM_GET_DIRTY_LOG, then (manual protect) KVM_CLEAR_DIRTY_LOG over the
 * dirty words, chunk by chunk. Ring mode: harvests every vCPU's ring
 * (and what vCPUs harvested themselves on a full ring), then
 * KVM_RESET_DIRTY_RINGS. Any thread; the vCPUs may run. Returns the number
 * of dirty pages found (counted once per harvest) or -errno.
 */
long vmm_sync_dirty(struct vmm *vm, uint64_t *bitmap, uint64_t npages);

/*
 * State as a byte stream of records (u32 tag, u32 length, bytes). The
 * vCPUs must be paused. Save returns a malloc'ed buffer; restore applies
 * in Firecracker's order: mp_state, regs, sregs, xsave (or fpu), xcrs,
 * debugregs, LAPIC, MSRs, vcpu events; for the VM: PIT, clock, irqchip.
 */
int vmm_save_vcpu(struct vmm *vm, unsigned i, void **buf, size_t *len);
int vmm_restore_vcpu(struct vmm *vm, unsigned i, const void *buf, size_t len);
int vmm_save_vm(struct vmm *vm, void **buf, size_t *len);
int vmm_restore_vm(struct vmm *vm, const void *buf, size_t len);
/*
 * Compares two vCPU state streams record by record. Fields that move by
 * themselves while a vCPU exists are ignored: the TSC MSRs (0x10, 0x3b),
 * kvmclock MSRs' contents are compared, the LAPIC timer current count
 * (offset 0x390). Returns 0 when equal, else writes the first difference
 * to why.
 */
int vmm_compare_vcpu(const void *a, size_t alen, const void *b, size_t blen,
		     char *why, size_t whylen);

/* Serial output: complete lines with the host CLOCK_MONOTONIC time (ns)
 * at which their '\n' arrived. */
size_t vmm_serial_lines(struct vmm *vm);
int vmm_serial_line(struct vmm *vm, size_t i, uint64_t *ns, char *buf,
		    size_t len);

#endif
