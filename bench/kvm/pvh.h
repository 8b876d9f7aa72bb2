/* SPDX-License-Identifier: MIT */
/*
 * The PVH direct-boot structures (Xen's arch/x86/hvm/start_info.h layout,
 * which QEMU, Firecracker and Cloud Hypervisor also use): what the VMM
 * writes and the guest reads. Freestanding: the test guests include it.
 */
#ifndef MFD_BENCH_KVM_PVH_H
#define MFD_BENCH_KVM_PVH_H

#include <stdint.h>

#define HVM_START_MAGIC		 0x336ec578U
#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define HVM_MEMMAP_TYPE_RAM	 1

struct hvm_start_info {
	uint32_t magic, version, flags, nr_modules;
	uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
	uint32_t memmap_entries, reserved;
};

struct hvm_memmap_entry {
	uint64_t addr, size;
	uint32_t type, reserved;
};

#endif
