/* SPDX-License-Identifier: MIT */
/*
 * The VMM core: VM, memory slot, vCPU threads, long-mode entry, COM1, and
 * the dirty log. State save/restore is in vmm_state.c.
 */
#include "vmm.h"
#include "pvh.h"
#include "vmm_int.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Guest physical layout of what the VMM writes (below the kernel at
 * 1 MiB). */
#define GPA_GDT	    0x0500ULL
#define GPA_PML4    0x1000ULL
#define GPA_PDPT    0x2000ULL
#define GPA_PD	    0x3000ULL /* 4 pages: 4 GiB of 2 MiB pages */
#define GPA_START   0x7000ULL /* hvm_start_info */
#define GPA_MEMMAP  0x7100ULL
#define GPA_CMDLINE 0x8000ULL
#define CMDLINE_MAX 0x1000
#define GPA_TSS	    0x9000ULL
#define KERNEL_MIN  0x100000ULL

uint64_t vmm__now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

void vmm__seterr(struct vmm *vm, const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&vm->lock);
	if (!vm->error[0]) {
		va_start(ap, fmt);
		vsnprintf(vm->error, sizeof(vm->error), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&vm->lock);
}

static void kick_handler(int sig)
{
	(void)sig;
}

static void fmt_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static int set_cpuid(struct vmm *vm, struct vmm_vcpu *v)
{
	struct kvm_cpuid2 *c = vm->cpuid;
	size_t sz = sizeof(*c) + c->nent * sizeof(c->entries[0]);
	struct kvm_cpuid2 *mine = malloc(sz);
	if (!mine)
		return -ENOMEM;
	memcpy(mine, c, sz);
	for (uint32_t i = 0; i < mine->nent; i++) {
		struct kvm_cpuid_entry2 *e = &mine->entries[i];
		if (e->function == 1) {
			e->ebx = (e->ebx & 0x00ffffffU) | (v->index << 24);
		} else if (e->function == 0xb || e->function == 0x1f) {
			e->edx = v->index;
		}
	}
	int ret = ioctl(v->fd, KVM_SET_CPUID2, mine) < 0 ? -errno : 0;
	free(mine);
	return ret;
}

static int get_supported_cpuid(struct vmm *vm)
{
	for (uint32_t n = 64; n <= 4096; n *= 2) {
		struct kvm_cpuid2 *c =
			calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
		if (!c)
			return -ENOMEM;
		c->nent = n;
		if (ioctl(vm->kvm, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			vm->cpuid = c;
			return 0;
		}
		int e = errno;
		free(c);
		if (e != E2BIG)
			return -e;
	}
	return -E2BIG;
}

int vmm_create(struct vmm **out, const struct vmm_opts *o, char *err,
	       size_t errlen)
{
	*out = NULL;
	if (!o || o->vcpus < 1 || o->vcpus > VMM_MAX_VCPUS ||
	    o->mem_bytes < (8ULL << 20) || o->mem_bytes % (2ULL << 20) ||
	    o->mem_bytes > (4ULL << 30)) {
		fmt_err(err, errlen,
			"kvm: need 1..%d vCPUs and 8 MiB..4 GiB of RAM in "
			"2 MiB steps",
			VMM_MAX_VCPUS);
		return -EINVAL;
	}
	struct vmm *vm = calloc(1, sizeof(*vm));
	if (!vm)
		return -ENOMEM;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	pthread_mutex_init(&vm->serial_lock, NULL);
	pthread_mutex_init(&vm->ring_lock, NULL);
	vm->kvm = vm->fd = -1;
	vm->nvcpus = o->vcpus;
	vm->mem_size = o->mem_bytes;
	vm->serial_fd = o->serial_fd;
	vm->dirty_mode = o->dirty_mode;
	vm->entry64 = o->entry64;
	vm->clear_chunk = o->clear_chunk_pages ? o->clear_chunk_pages : 16384;
	vm->clear_chunk = (vm->clear_chunk + 63) & ~63ULL;
	int ret;

	vm->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm < 0) {
		ret = -errno;
		fmt_err(err, errlen, "kvm: /dev/kvm: %s", strerror(-ret));
		vmm_free(vm);
		return ret == -ENOENT || ret == -EACCES || ret == -ENXIO
			       ? -ENODEV
			       : ret;
	}
	if (ioctl(vm->kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		fmt_err(err, errlen, "kvm: unexpected KVM API version");
		vmm_free(vm);
		return -ENODEV;
	}
	vm->fd = ioctl(vm->kvm, KVM_CREATE_VM, 0);
	if (vm->fd < 0) {
		ret = -errno;
		fmt_err(err, errlen, "kvm: KVM_CREATE_VM: %s", strerror(-ret));
		vmm_free(vm);
		return -ENODEV;
	}
	vm->run_size = ioctl(vm->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if ((ret = get_supported_cpuid(vm))) {
		fmt_err(err, errlen, "kvm: KVM_GET_SUPPORTED_CPUID: %s",
			strerror(-ret));
		goto fail;
	}
	/* Optional on Intel (real-mode emulation); harmless elsewhere. */
	(void)ioctl(vm->fd, KVM_SET_TSS_ADDR, 0xfffbd000UL);
	if (ioctl(vm->fd, KVM_CREATE_IRQCHIP, 0) == 0) {
		vm->irqchip = 1;
		struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
		vm->pit = ioctl(vm->fd, KVM_CREATE_PIT2, &pit) == 0;
	}
	vm->has_xsave = ioctl(vm->kvm, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE) > 0;
	vm->has_xcrs = ioctl(vm->kvm, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0;
	vm->has_debugregs =
		ioctl(vm->kvm, KVM_CHECK_EXTENSION, KVM_CAP_DEBUGREGS) > 0;
	vm->has_clock =
		ioctl(vm->kvm, KVM_CHECK_EXTENSION, KVM_CAP_ADJUST_CLOCK) > 0;

	if (vm->dirty_mode == VMM_DIRTY_BITMAP &&
	    ioctl(vm->kvm, KVM_CHECK_EXTENSION,
		  KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) > 0) {
		struct kvm_enable_cap cap = {
			.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
			.args = { KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE },
		};
		vm->manual = ioctl(vm->fd, KVM_ENABLE_CAP, &cap) == 0;
	}

	if (vm->dirty_mode == VMM_DIRTY_RING) {
		/* Before any vCPU exists; KVM returns the largest ring in
		 * bytes. */
		int max = ioctl(vm->kvm, KVM_CHECK_EXTENSION,
				KVM_CAP_DIRTY_LOG_RING);
		uint32_t n = o->ring_entries ? o->ring_entries : 4096;
		if (n & (n - 1) || n < 64) {
			fmt_err(err, errlen,
				"kvm: dirty ring entries must be "
				"a power of two >= 64");
			ret = -EINVAL;
			goto fail;
		}
		if (max <= 0) {
			fmt_err(err, errlen,
				"kvm: this host has no KVM dirty ring");
			ret = -EOPNOTSUPP;
			goto fail;
		}
		while (n * sizeof(struct kvm_dirty_gfn) > (uint32_t)max)
			n /= 2;
		struct kvm_enable_cap cap = {
			.cap = KVM_CAP_DIRTY_LOG_RING,
			.args = { n * sizeof(struct kvm_dirty_gfn) },
		};
		if (ioctl(vm->fd, KVM_ENABLE_CAP, &cap) < 0) {
			ret = -errno;
			fmt_err(err, errlen, "kvm: enable dirty ring: %s",
				strerror(-ret));
			goto fail;
		}
		vm->ring_entries = n;
	}

	vm->mem = mmap(NULL, vm->mem_size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (vm->mem == MAP_FAILED) {
		vm->mem = NULL;
		ret = -errno;
		fmt_err(err, errlen, "kvm: guest RAM: %s", strerror(-ret));
		goto fail;
	}
	struct kvm_userspace_memory_region slot = {
		.slot = 0,
		.flags = vm->dirty_mode != VMM_DIRTY_NONE
				 ? KVM_MEM_LOG_DIRTY_PAGES
				 : 0,
		.guest_phys_addr = 0,
		.memory_size = vm->mem_size,
		.userspace_addr = (uintptr_t)vm->mem,
	};
	if (ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0) {
		ret = -errno;
		fmt_err(err, errlen, "kvm: KVM_SET_USER_MEMORY_REGION: %s",
			strerror(-ret));
		goto fail;
	}
	size_t words = (vm->mem_size / 4096 + 63) / 64;
	vm->dirty_buf = calloc(words, sizeof(uint64_t));
	if (!vm->dirty_buf) {
		ret = -ENOMEM;
		goto fail;
	}

	struct sigaction sa = { .sa_handler = kick_handler };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL); /* no SA_RESTART: KVM_RUN -> EINTR */

	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct vmm_vcpu *v = &vm->vcpu[i];
		v->vm = vm;
		v->index = i;
		v->fd = ioctl(vm->fd, KVM_CREATE_VCPU, i);
		if (v->fd < 0) {
			ret = -errno;
			fmt_err(err, errlen, "kvm: KVM_CREATE_VCPU %u: %s", i,
				strerror(-ret));
			goto fail;
		}
		v->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE,
			      MAP_SHARED, v->fd, 0);
		if (v->run == MAP_FAILED) {
			v->run = NULL;
			ret = -errno;
			goto fail;
		}
		if (vm->ring_entries) {
			long pg = sysconf(_SC_PAGESIZE);
			void *r = mmap(NULL,
				       vm->ring_entries *
					       sizeof(struct kvm_dirty_gfn),
				       PROT_READ | PROT_WRITE, MAP_SHARED,
				       v->fd, KVM_DIRTY_LOG_PAGE_OFFSET * pg);
			if (r == MAP_FAILED) {
				ret = -errno;
				fmt_err(err, errlen, "kvm: map dirty ring: %s",
					strerror(-ret));
				goto fail;
			}
			v->ring = r;
		}
		if ((ret = set_cpuid(vm, v))) {
			fmt_err(err, errlen, "kvm: KVM_SET_CPUID2: %s",
				strerror(-ret));
			goto fail;
		}
	}
	if ((ret = vmm__msr_list(vm))) {
		fmt_err(err, errlen, "kvm: MSR list: %s", strerror(-ret));
		goto fail;
	}
	*out = vm;
	return 0;
fail:
	vmm_free(vm);
	return ret;
}

static void stop_threads(struct vmm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->quit = 1;
	for (unsigned i = 0; i < vm->nvcpus; i++)
		if (vm->vcpu[i].run)
			vm->vcpu[i].run->immediate_exit = 1;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct vmm_vcpu *v = &vm->vcpu[i];
		if (v->started) {
			pthread_kill(v->thread, SIGUSR1);
			pthread_join(v->thread, NULL);
			v->started = 0;
		}
	}
	if (vm->ticker_started) {
		pthread_join(vm->ticker, NULL);
		vm->ticker_started = 0;
	}
}

void vmm_free(struct vmm *vm)
{
	if (!vm)
		return;
	stop_threads(vm);
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct vmm_vcpu *v = &vm->vcpu[i];
		if (v->run)
			munmap(v->run, vm->run_size);
		if (v->ring)
			munmap(v->ring,
			       vm->ring_entries * sizeof(struct kvm_dirty_gfn));
		if (v->fd >= 0 && v->vm)
			close(v->fd);
	}
	if (vm->mem)
		munmap(vm->mem, vm->mem_size);
	if (vm->fd >= 0)
		close(vm->fd);
	if (vm->kvm >= 0)
		close(vm->kvm);
	free(vm->cpuid);
	free(vm->msr_index);
	free(vm->dirty_buf);
	free(vm->lines);
	pthread_mutex_destroy(&vm->lock);
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->serial_lock);
	pthread_mutex_destroy(&vm->ring_lock);
	free(vm);
}

/* ---- kernel loading and the long-mode entry ---- */

static int load_elf(struct vmm *vm, const char *path, uint64_t *entry,
		    char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		fmt_err(err, errlen, "kvm: %s: %s", path, strerror(e));
		return -e;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_size < (off_t)sizeof(Elf64_Ehdr) ||
	    st.st_size > (off_t)vm->mem_size) {
		close(fd);
		fmt_err(err, errlen, "kvm: %s: not an ELF kernel that fits",
			path);
		return -ENOEXEC;
	}
	uint8_t *img = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (img == MAP_FAILED)
		return -errno;
	int ret = -ENOEXEC;
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)img;
	size_t size = st.st_size;
	if (memcmp(eh->e_ident, ELFMAG, SELFMAG) ||
	    eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_machine != EM_X86_64 ||
	    eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phoff > size ||
	    (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > size - eh->e_phoff) {
		fmt_err(err, errlen, "kvm: %s: not an x86-64 ELF", path);
		goto out;
	}
	const Elf64_Phdr *ph = (const Elf64_Phdr *)(img + eh->e_phoff);
	int loaded = 0;
	vm->pvh_entry = 0;
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		const Elf64_Phdr *p = &ph[i];
		if (p->p_type == PT_NOTE && p->p_offset <= size &&
		    p->p_filesz <= size - p->p_offset) {
			/* Look for the PVH entry note (name "Xen"). */
			uint64_t off = 0;
			while (off + 12 <= p->p_filesz) {
				const uint32_t *n =
					(const uint32_t *)(img + p->p_offset +
							   off);
				uint64_t nsz = (n[0] + 3ULL) & ~3ULL;
				uint64_t dsz = (n[1] + 3ULL) & ~3ULL;
				if (off + 12 + nsz + dsz > p->p_filesz)
					break;
				const uint8_t *name = (const uint8_t *)(n + 3);
				if (n[2] == XEN_ELFNOTE_PHYS32_ENTRY &&
				    n[0] == 4 && !memcmp(name, "Xen", 4) &&
				    n[1] >= 4)
					memcpy(&vm->pvh_entry, name + nsz, 4);
				off += 12 + nsz + dsz;
			}
		}
		if (p->p_type != PT_LOAD)
			continue;
		if (p->p_filesz > p->p_memsz || p->p_offset > size ||
		    p->p_filesz > size - p->p_offset ||
		    p->p_paddr < KERNEL_MIN || p->p_paddr > vm->mem_size ||
		    p->p_memsz > vm->mem_size - p->p_paddr) {
			fmt_err(err, errlen,
				"kvm: %s: segment %u outside guest RAM "
				"(1 MiB..%llu MiB)",
				path, i,
				(unsigned long long)(vm->mem_size >> 20));
			goto out;
		}
		memcpy(vm->mem + p->p_paddr, img + p->p_offset, p->p_filesz);
		memset(vm->mem + p->p_paddr + p->p_filesz, 0,
		       p->p_memsz - p->p_filesz);
		if (p->p_paddr + p->p_memsz > vm->kernel_end)
			vm->kernel_end = p->p_paddr + p->p_memsz;
		loaded = 1;
	}
	if (vm->pvh_entry &&
	    (vm->pvh_entry < KERNEL_MIN || vm->pvh_entry >= vm->mem_size)) {
		fmt_err(err, errlen, "kvm: %s: PVH entry outside guest RAM",
			path);
		goto out;
	}
	if (!loaded || eh->e_entry < KERNEL_MIN ||
	    eh->e_entry >= vm->mem_size) {
		fmt_err(err, errlen, "kvm: %s: no loadable code at the entry",
			path);
		goto out;
	}
	*entry = eh->e_entry;
	ret = 0;
out:
	munmap(img, size);
	return ret;
}

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type, int code)
{
	memset(s, 0, sizeof(*s));
	s->base = 0;
	s->limit = 0xffffffff;
	s->selector = sel;
	s->type = type;
	s->present = 1;
	s->s = 1;
	s->g = 1;
	s->l = code;
	s->db = !code;
}

static int boot_vcpu(struct vmm *vm, struct vmm_vcpu *v, uint64_t entry)
{
	struct kvm_sregs sr;
	if (ioctl(v->fd, KVM_GET_SREGS, &sr) < 0)
		return -errno;
	seg(&sr.cs, 0x08, 0xb, !vm->pvh);
	seg(&sr.ds, 0x10, 0x3, 0);
	sr.es = sr.fs = sr.gs = sr.ss = sr.ds;
	memset(&sr.tr, 0, sizeof(sr.tr));
	sr.tr.base = GPA_TSS;
	sr.tr.limit = 0x67;
	sr.tr.selector = 0x18;
	sr.tr.type = 0xb; /* busy 64-bit TSS */
	sr.tr.present = 1;
	memset(&sr.ldt, 0, sizeof(sr.ldt));
	sr.ldt.unusable = 1;
	sr.ldt.type = 0x2;
	sr.gdt.base = GPA_GDT;
	sr.gdt.limit = 5 * 8 - 1;
	sr.idt.base = 0;
	sr.idt.limit = 0;
	sr.cr3 = GPA_PML4;
	sr.cr4 = (1U << 5) | (1U << 9) | (1U << 10); /* PAE OSFXSR OSXMMEXCPT */
	sr.cr0 = 0x80000000U | 0x20U | 0x10U | 0x2U | 0x1U; /* PG NE ET MP PE */
	sr.efer = (1U << 8) | (1U << 10);		    /* LME LMA */
	if (ioctl(v->fd, KVM_SET_SREGS, &sr) < 0)
		return -errno;
	struct kvm_regs r = { 0 };
	r.rip = entry;
	r.rflags = 0x2;
	r.rbx = GPA_START;
	r.rsi = v->index;
	r.rsp = 0; /* the guest sets its own stack */
	if (ioctl(v->fd, KVM_SET_REGS, &r) < 0)
		return -errno;
	if (vm->irqchip) {
		/* Every vCPU starts at the entry: no INIT/SIPI dance. */
		struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };
		if (ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0)
			return -errno;
	}
	return 0;
}

int vmm_load_kernel(struct vmm *vm, const char *path, const char *cmdline,
		    char *err, size_t errlen)
{
	uint64_t entry = 0;
	int ret = load_elf(vm, path, &entry, err, errlen);
	if (ret)
		return ret;
	vm->pvh = vm->pvh_entry && !vm->entry64;
	if (vm->pvh)
		entry = vm->pvh_entry;
	uint8_t *m = vm->mem;
	/* GDT: null, code64, data, TSS (two slots). */
	uint64_t *gdt = (uint64_t *)(m + GPA_GDT);
	gdt[0] = 0;
	gdt[1] = 0x00af9b000000ffffULL;
	gdt[2] = 0x00cf93000000ffffULL;
	gdt[3] = 0x00008b0000000067ULL | ((GPA_TSS & 0xffffff) << 16);
	gdt[4] = 0;
	/* Identity map of 4 GiB with 2 MiB pages. */
	uint64_t *pml4 = (uint64_t *)(m + GPA_PML4);
	uint64_t *pdpt = (uint64_t *)(m + GPA_PDPT);
	uint64_t *pd = (uint64_t *)(m + GPA_PD);
	memset(pml4, 0, 4096);
	memset(pdpt, 0, 4096);
	pml4[0] = GPA_PDPT | 0x3;
	for (unsigned i = 0; i < 4; i++)
		pdpt[i] = (GPA_PD + i * 4096ULL) | 0x3;
	for (uint64_t i = 0; i < 4 * 512; i++)
		pd[i] = (i << 21) | 0x83; /* present, writable, 2 MiB */
	/* PVH start info, memory map and command line. */
	char tail[64];
	uint32_t khz = 0;
	int k = ioctl(vm->vcpu[0].fd, KVM_GET_TSC_KHZ, 0);
	if (k > 0)
		khz = (uint32_t)k;
	snprintf(tail, sizeof(tail), " tsc_khz=%u ncpus=%u", khz, vm->nvcpus);
	size_t cl = cmdline ? strlen(cmdline) : 0;
	if (cl + strlen(tail) + 1 > CMDLINE_MAX) {
		fmt_err(err, errlen, "kvm: command line longer than %d bytes",
			CMDLINE_MAX - 64);
		return -E2BIG;
	}
	char *cmd = (char *)(m + GPA_CMDLINE);
	memcpy(cmd, cmdline ? cmdline : "", cl);
	memcpy(cmd + cl, tail, strlen(tail) + 1);
	struct hvm_memmap_entry *mm =
		(struct hvm_memmap_entry *)(m + GPA_MEMMAP);
	mm[0] = (struct hvm_memmap_entry){ .addr = 0,
					   .size = 0xa0000,
					   .type = 1 };
	mm[1] = (struct hvm_memmap_entry){ .addr = KERNEL_MIN,
					   .size = vm->mem_size - KERNEL_MIN,
					   .type = 1 };
	struct hvm_start_info *si = (struct hvm_start_info *)(m + GPA_START);
	*si = (struct hvm_start_info){
		.magic = HVM_START_MAGIC,
		.version = 1,
		.cmdline_paddr = GPA_CMDLINE,
		.memmap_paddr = GPA_MEMMAP,
		.memmap_entries = 2,
	};
	for (unsigned i = 0; i < vm->nvcpus; i++)
		if ((ret = boot_vcpu(vm, &vm->vcpu[i], entry))) {
			fmt_err(err, errlen, "kvm: vCPU %u boot state: %s", i,
				strerror(-ret));
			return ret;
		}
	return 0;
}

/* ---- COM1 ---- */

static void serial_line_done(struct vmm *vm)
{
	uint64_t now = vmm__now_ns();
	pthread_mutex_lock(&vm->lock);
	if (vm->nlines == vm->cap_lines) {
		size_t cap = vm->cap_lines ? vm->cap_lines * 2 : 256;
		struct vmm_line *l = realloc(vm->lines, cap * sizeof(*l));
		if (!l) {
			pthread_mutex_unlock(&vm->lock);
			return;
		}
		vm->lines = l;
		vm->cap_lines = cap;
	}
	struct vmm_line *l = &vm->lines[vm->nlines++];
	l->ns = now;
	memcpy(l->text, vm->cur, vm->ncur);
	l->text[vm->ncur] = 0;
	pthread_mutex_unlock(&vm->lock);
	if (vm->serial_fd >= 0) {
		vm->cur[vm->ncur] = '\n';
		ssize_t w = write(vm->serial_fd, vm->cur, vm->ncur + 1);
		(void)w;
	}
	vm->ncur = 0;
}

/* Only the 8250 registers a polling guest needs: THR, LSR (always ready),
 * the rest reads back what was written. Called from vCPU threads; the
 * port state is shared, so under serial_lock. */
static void serial_io(struct vmm *vm, struct kvm_run *run)
{
	uint16_t port = run->io.port;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	unsigned reg = port - 0x3f8;
	pthread_mutex_lock(&vm->serial_lock);
	for (uint32_t n = 0; n < run->io.count; n++) {
		uint8_t *d = data + n * run->io.size;
		if (run->io.direction == KVM_EXIT_IO_OUT) {
			if (reg == 0 && !(vm->uart[3] & 0x80)) {
				if (*d == '\n' || vm->ncur == VMM_LINE - 1)
					serial_line_done(vm);
				if (*d != '\n' && *d != '\r')
					vm->cur[vm->ncur++] = (char)*d;
			} else {
				vm->uart[reg] = *d;
			}
		} else {
			if (reg == 5)
				*d = 0x60; /* THR empty, transmitter idle */
			else if (reg == 0 || reg == 2)
				*d = reg == 2 ? 0x01 : 0;
			else
				*d = vm->uart[reg];
		}
	}
	pthread_mutex_unlock(&vm->serial_lock);
}

size_t vmm_serial_lines(struct vmm *vm)
{
	pthread_mutex_lock(&vm->lock);
	size_t n = vm->nlines;
	pthread_mutex_unlock(&vm->lock);
	return n;
}

int vmm_serial_line(struct vmm *vm, size_t i, uint64_t *ns, char *buf,
		    size_t len)
{
	int ret = -ENOENT;
	pthread_mutex_lock(&vm->lock);
	if (i < vm->nlines) {
		if (ns)
			*ns = vm->lines[i].ns;
		snprintf(buf, len, "%s", vm->lines[i].text);
		ret = 0;
	}
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

/* ---- vCPU threads ---- */

static void guest_failed(struct vmm_vcpu *v, const char *what)
{
	struct vmm *vm = v->vm;
	struct kvm_regs r = { 0 };
	(void)ioctl(v->fd, KVM_GET_REGS, &r);
	vmm__seterr(vm, "vCPU %u: %s (rip=0x%llx rsp=0x%llx)", v->index, what,
		    (unsigned long long)r.rip, (unsigned long long)r.rsp);
}

static void *vcpu_thread(void *arg)
{
	struct vmm_vcpu *v = arg;
	struct vmm *vm = v->vm;
	for (;;) {
		pthread_mutex_lock(&vm->lock);
		while (!vm->quit && (vm->pause || v->dead)) {
			if (!v->parked) {
				v->parked = 1;
				pthread_cond_broadcast(&vm->cond);
			}
			pthread_cond_wait(&vm->cond, &vm->lock);
		}
		if (vm->quit) {
			v->parked = 1;
			pthread_cond_broadcast(&vm->cond);
			pthread_mutex_unlock(&vm->lock);
			return NULL;
		}
		v->parked = 0;
		v->run->immediate_exit = 0;
		int pct = vm->throttle;
		pthread_mutex_unlock(&vm->lock);
		if (pct > 0 && v->throttle_due) {
			v->throttle_due = 0;
			struct timespec ts = { 0,
					       pct * 100000L }; /* of 10 ms */
			nanosleep(&ts, NULL);
		}
		int r = ioctl(v->fd, KVM_RUN, 0);
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				v->throttle_due = 1;
				continue;
			}
			char what[64];
			snprintf(what, sizeof(what), "KVM_RUN: %s",
				 strerror(errno));
			guest_failed(v, what);
			v->dead = 1;
			continue;
		}
		struct kvm_run *run = v->run;
		switch (run->exit_reason) {
		case KVM_EXIT_IO:
			if (run->io.port >= 0x3f8 && run->io.port <= 0x3ff)
				serial_io(vm, run);
			else if (run->io.direction == KVM_EXIT_IO_IN)
				memset((uint8_t *)run + run->io.data_offset,
				       0xff, run->io.size * run->io.count);
			break;
		case KVM_EXIT_HLT:
			v->dead = 1; /* halted with no irqchip: done */
			break;
		case KVM_EXIT_INTR:
			v->throttle_due = 1;
			break;
		case KVM_EXIT_DIRTY_RING_FULL:
			/* Harvest into the pending bitmap so the vCPU can go
			 * on; the next sync reports it. */
			pthread_mutex_lock(&vm->ring_lock);
			vm->ring_full_exits++;
			uint8_t self[VMM_MAX_VCPUS] = { 0 };
			self[v->index] = 1; /* out of KVM_RUN: gaps are real */
			vmm__harvest(vm, self);
			pthread_mutex_unlock(&vm->ring_lock);
			break;
		case KVM_EXIT_SHUTDOWN:
			guest_failed(v, "triple fault (shutdown)");
			v->dead = 1;
			break;
		case KVM_EXIT_FAIL_ENTRY:
			guest_failed(v, "VM entry failed");
			v->dead = 1;
			break;
		case KVM_EXIT_INTERNAL_ERROR: {
			char what[64];
			snprintf(what, sizeof(what), "KVM internal error %u",
				 run->internal.suberror);
			guest_failed(v, what);
			v->dead = 1;
			break;
		}
		default: {
			char what[64];
			snprintf(what, sizeof(what), "unhandled exit %u",
				 run->exit_reason);
			guest_failed(v, what);
			v->dead = 1;
			break;
		}
		}
	}
}

static void *ticker_thread(void *arg)
{
	struct vmm *vm = arg;
	pthread_mutex_lock(&vm->lock);
	while (!vm->quit) {
		int pct = vm->throttle;
		if (pct > 0 && !vm->pause)
			for (unsigned i = 0; i < vm->nvcpus; i++) {
				vm->vcpu[i].run->immediate_exit = 1;
				pthread_kill(vm->vcpu[i].thread, SIGUSR1);
			}
		pthread_mutex_unlock(&vm->lock);
		struct timespec ts = { 0, 10000000L };
		nanosleep(&ts, NULL);
		pthread_mutex_lock(&vm->lock);
	}
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

int vmm_start(struct vmm *vm)
{
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct vmm_vcpu *v = &vm->vcpu[i];
		if (v->started)
			continue;
		int ret = pthread_create(&v->thread, NULL, vcpu_thread, v);
		if (ret)
			return -ret;
		v->started = 1;
	}
	if (!vm->ticker_started) {
		int ret = pthread_create(&vm->ticker, NULL, ticker_thread, vm);
		if (ret)
			return -ret;
		vm->ticker_started = 1;
	}
	return 0;
}

int vmm_pause(struct vmm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->pause = 1;
	for (unsigned i = 0; i < vm->nvcpus; i++)
		vm->vcpu[i].run->immediate_exit = 1;
	pthread_mutex_unlock(&vm->lock);
	for (unsigned i = 0; i < vm->nvcpus; i++)
		if (vm->vcpu[i].started)
			pthread_kill(vm->vcpu[i].thread, SIGUSR1);
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 5;
	int ret = 0;
	pthread_mutex_lock(&vm->lock);
	for (;;) {
		unsigned parked = 0;
		for (unsigned i = 0; i < vm->nvcpus; i++)
			parked += !vm->vcpu[i].started || vm->vcpu[i].parked;
		if (parked == vm->nvcpus)
			break;
		if (pthread_cond_timedwait(&vm->cond, &vm->lock, &dl) ==
		    ETIMEDOUT) {
			ret = -ETIMEDOUT;
			break;
		}
	}
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

int vmm_resume(struct vmm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->pause = 0;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

int vmm_throttle(struct vmm *vm, int percent)
{
	if (percent < 0 || percent > 99)
		return -EINVAL;
	pthread_mutex_lock(&vm->lock);
	vm->throttle = percent;
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

void *vmm_mem(struct vmm *vm)
{
	return vm->mem;
}

uint64_t vmm_mem_size(struct vmm *vm)
{
	return vm->mem_size;
}

unsigned vmm_vcpus(struct vmm *vm)
{
	return vm->nvcpus;
}

int vmm_failed(struct vmm *vm)
{
	pthread_mutex_lock(&vm->lock);
	int f = vm->error[0] != 0;
	pthread_mutex_unlock(&vm->lock);
	return f ? -EIO : 0;
}

const char *vmm_error(struct vmm *vm)
{
	return vm->error;
}

int vmm_has_irqchip(struct vmm *vm)
{
	return vm->irqchip;
}

int vmm_manual_protect(struct vmm *vm)
{
	return vm->manual;
}

int vmm_pvh(struct vmm *vm)
{
	return vm->pvh;
}

uint32_t vmm_ring_entries(struct vmm *vm)
{
	return vm->ring_entries;
}

uint64_t vmm_ring_overflows(struct vmm *vm)
{
	pthread_mutex_lock(&vm->ring_lock);
	uint64_t n = vm->ring_overflows;
	pthread_mutex_unlock(&vm->ring_lock);
	return n;
}

uint64_t vmm_ring_full_exits(struct vmm *vm)
{
	pthread_mutex_lock(&vm->ring_lock);
	uint64_t n = vm->ring_full_exits;
	pthread_mutex_unlock(&vm->ring_lock);
	return n;
}

/* ---- dirty log ---- */

/*
 * After a dirty entry: whether v's ring has a gap, checked only while v is
 * outside KVM_RUN (nothing is pushed meanwhile). KVM pushes entries in
 * order and we harvest them in order, so an invalid entry at the cursor
 * with a dirty one after it means KVM pushed past the ring's end: the
 * entries it overwrote are lost (seen on the kvm_pvm host here, where a
 * vCPU goes on after the soft limit). Returns the gap's length, or 0.
 */
static uint32_t ring_gap(struct vmm *vm, struct vmm_vcpu *v)
{
	uint32_t sz = vm->ring_entries;
	for (uint32_t j = 1; j < sz; j++) {
		const struct kvm_dirty_gfn *e =
			&v->ring[(v->ring_next + j) & (sz - 1)];
		if (__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) &
		    KVM_DIRTY_GFN_F_DIRTY)
			return j;
	}
	return 0;
}

/* Moves every dirty entry of every ring into dirty_buf, marks them for
 * reset, and resets the rings. Rings of the vCPUs marked in outside
 * (outside KVM_RUN) are also checked for a gap: the gap's entries are
 * handed back to KVM (it counts them as pushed, so the ring stays full
 * until they are reset) and, since pages were lost, all of memory is
 * reported dirty. Under ring_lock. */
long vmm__harvest(struct vmm *vm, const uint8_t *outside)
{
	uint64_t pages = vm->mem_size / 4096;
	long n = 0;
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct vmm_vcpu *v = &vm->vcpu[i];
		for (;;) {
			struct kvm_dirty_gfn *e =
				&v->ring[v->ring_next & (vm->ring_entries - 1)];
			uint32_t flags =
				__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);
			if (!(flags & KVM_DIRTY_GFN_F_DIRTY)) {
				uint32_t gap = outside && outside[i]
						       ? ring_gap(vm, v)
						       : 0;
				if (!gap)
					break;
				for (uint32_t g = 0; g < gap; g++)
					__atomic_store_n(
						&v->ring[(v->ring_next + g) &
							 (vm->ring_entries - 1)]
							 .flags,
						KVM_DIRTY_GFN_F_RESET,
						__ATOMIC_RELEASE);
				v->ring_next += gap;
				memset(vm->dirty_buf, 0xff,
				       (pages + 63) / 64 * 8);
				if (pages % 64)
					vm->dirty_buf[pages / 64] =
						(1ULL << (pages % 64)) - 1;
				vm->ring_overflows++;
				continue;
			}
			if (e->slot == 0 && e->offset < pages) {
				vm->dirty_buf[e->offset / 64] |=
					1ULL << (e->offset % 64);
				n++;
			}
			__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET,
					 __ATOMIC_RELEASE);
			v->ring_next++;
		}
	}
	if (ioctl(vm->fd, KVM_RESET_DIRTY_RINGS, 0) < 0)
		return -errno;
	return n;
}

static long sync_ring(struct vmm *vm, uint64_t *bitmap, size_t words)
{
	uint8_t outside[VMM_MAX_VCPUS] = { 0 };
	pthread_mutex_lock(&vm->ring_lock);
	/* vm->lock held across the harvest: a parked vCPU stays parked. */
	pthread_mutex_lock(&vm->lock);
	for (unsigned i = 0; i < vm->nvcpus; i++)
		outside[i] = !vm->vcpu[i].started || vm->vcpu[i].parked;
	long n = vmm__harvest(vm, outside);
	pthread_mutex_unlock(&vm->lock);
	if (n >= 0) {
		n = 0;
		for (size_t w = 0; w < words; w++) {
			bitmap[w] |= vm->dirty_buf[w];
			n += __builtin_popcountll(vm->dirty_buf[w]);
			vm->dirty_buf[w] = 0;
		}
	}
	pthread_mutex_unlock(&vm->ring_lock);
	return n;
}

long vmm_sync_dirty(struct vmm *vm, uint64_t *bitmap, uint64_t npages)
{
	if (vm->dirty_mode == VMM_DIRTY_NONE)
		return -EOPNOTSUPP;
	uint64_t pages = vm->mem_size / 4096;
	if (npages != pages)
		return -EINVAL;
	size_t words = (pages + 63) / 64;
	if (vm->dirty_mode == VMM_DIRTY_RING)
		return sync_ring(vm, bitmap, words);
	memset(vm->dirty_buf, 0, words * 8);
	struct kvm_dirty_log log = { .slot = 0, .dirty_bitmap = vm->dirty_buf };
	if (ioctl(vm->fd, KVM_GET_DIRTY_LOG, &log) < 0)
		return -errno;
	long n = 0;
	for (size_t w = 0; w < words; w++) {
		bitmap[w] |= vm->dirty_buf[w];
		n += __builtin_popcountll(vm->dirty_buf[w]);
	}
	if (!vm->manual || !n)
		return n;
	/* Re-protect what was dirty, one chunk at a time, skipping clean
	 * chunks: the guest's next writes fault only on pages it touched. */
	for (uint64_t first = 0; first < pages; first += vm->clear_chunk) {
		uint64_t num = pages - first < vm->clear_chunk
				       ? pages - first
				       : vm->clear_chunk;
		int any = 0;
		for (uint64_t w = first / 64; w < (first + num + 63) / 64; w++)
			any |= vm->dirty_buf[w] != 0;
		if (!any)
			continue;
		struct kvm_clear_dirty_log c = {
			.slot = 0,
			.num_pages = (uint32_t)num,
			.first_page = first,
			.dirty_bitmap = vm->dirty_buf + first / 64,
		};
		if (ioctl(vm->fd, KVM_CLEAR_DIRTY_LOG, &c) < 0)
			return -errno;
	}
	return n;
}
