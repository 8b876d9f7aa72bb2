/* SPDX-License-Identifier: MIT */
/* Internals shared by vmm.c and vmm_state.c. */
#ifndef MFD_BENCH_KVM_VMM_INT_H
#define MFD_BENCH_KVM_VMM_INT_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdint.h>

#include "vmm.h"

#define VMM_LINE 160

struct vmm_line {
	uint64_t ns;
	char text[VMM_LINE];
};

struct vmm_vcpu {
	struct vmm *vm;
	unsigned index;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	int started;
	int parked; /* under vm->lock */
	int dead;   /* stopped on a guest failure or halt */
	int throttle_due;
	struct kvm_dirty_gfn *ring; /* VMM_DIRTY_RING */
	uint32_t ring_next;	    /* under vm->ring_lock */
};

struct vmm {
	int kvm, fd;
	int run_size;
	unsigned nvcpus;
	uint8_t *mem;
	uint64_t mem_size;
	uint64_t kernel_end;
	uint32_t pvh_entry;
	int entry64, pvh;
	int irqchip, pit, has_xsave, has_xcrs, has_debugregs, has_clock;
	int dirty_mode, manual;
	uint64_t clear_chunk;
	uint64_t *dirty_buf;
	uint32_t ring_entries;
	pthread_mutex_t ring_lock; /* ring_next, dirty_buf in ring mode */
	uint64_t ring_full_exits;
	uint64_t ring_overflows; /* gaps found: KVM pushed past the end */
	struct kvm_cpuid2 *cpuid;
	uint32_t *msr_index; /* MSRs KVM_GET_MSRS accepts */
	uint32_t nmsrs;

	pthread_mutex_t lock; /* pause, quit, throttle, parked, lines, error */
	pthread_cond_t cond;
	int pause, quit, throttle;
	struct vmm_vcpu vcpu[VMM_MAX_VCPUS];
	pthread_t ticker;
	int ticker_started;
	char error[256];

	pthread_mutex_t serial_lock;
	uint8_t uart[8];
	char cur[VMM_LINE];
	unsigned ncur;
	int serial_fd;
	struct vmm_line *lines;
	size_t nlines, cap_lines;
};

uint64_t vmm__now_ns(void);
void vmm__seterr(struct vmm *vm, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int vmm__msr_list(struct vmm *vm);
long vmm__harvest(struct vmm *vm, const uint8_t *outside);

#endif
