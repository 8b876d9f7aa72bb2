/* SPDX-License-Identifier: MIT */
/*
 * vCPU and VM state: save to, and restore from, a stream of records
 * (u32 tag, u32 length, payload). The payloads are the KVM structs as the
 * kernel gives them; the two sides of a migration run the same VMM.
 */
#include "vmm.h"
#include "vmm_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

enum {
	T_MP_STATE = 1,
	T_REGS,
	T_SREGS,
	T_XSAVE,
	T_FPU,
	T_XCRS,
	T_DEBUGREGS,
	T_LAPIC,
	T_MSRS,
	T_EVENTS,
	T_PIT = 20,
	T_CLOCK,
	T_IRQCHIP,
	T_SERIAL,
};

#define MSR_IA32_TSC	    0x10
#define MSR_IA32_TSC_ADJUST 0x3b

struct sbuf {
	uint8_t *p;
	size_t len, cap;
	int err;
};

static void put(struct sbuf *b, uint32_t tag, const void *data, size_t len)
{
	if (b->err)
		return;
	size_t need = b->len + 8 + len;
	if (need > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < need)
			cap *= 2;
		uint8_t *p = realloc(b->p, cap);
		if (!p) {
			b->err = -ENOMEM;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	uint32_t hdr[2] = { tag, (uint32_t)len };
	memcpy(b->p + b->len, hdr, 8);
	memcpy(b->p + b->len + 8, data, len);
	b->len = need;
}

/* Finds the n-th record with tag; returns its payload or NULL. */
static const void *find(const void *buf, size_t len, uint32_t tag, unsigned nth,
			size_t *plen)
{
	const uint8_t *p = buf;
	size_t off = 0;
	while (off + 8 <= len) {
		uint32_t hdr[2];
		memcpy(hdr, p + off, 8);
		if (hdr[1] > len - off - 8)
			return NULL;
		if (hdr[0] == tag && nth-- == 0) {
			*plen = hdr[1];
			return p + off + 8;
		}
		off += 8 + hdr[1];
	}
	return NULL;
}

static int check_stream(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	size_t off = 0;
	while (off + 8 <= len) {
		uint32_t hdr[2];
		memcpy(hdr, p + off, 8);
		if (hdr[1] > len - off - 8)
			return -EINVAL;
		off += 8 + hdr[1];
	}
	return off == len ? 0 : -EINVAL;
}

/* Hands the finished stream out, or frees it on an earlier error. */
static int finish(struct sbuf *b, int ret, void **out, size_t *outlen)
{
	if (!ret)
		ret = b->err;
	if (ret) {
		free(b->p);
		return ret;
	}
	*out = b->p;
	*outlen = b->len;
	return 0;
}

static struct kvm_msrs *msrs_alloc(uint32_t n)
{
	struct kvm_msrs *m =
		calloc(1, sizeof(*m) + n * sizeof(struct kvm_msr_entry));
	if (m)
		m->nmsrs = n;
	return m;
}

int vmm__msr_list(struct vmm *vm)
{
	struct kvm_msr_list probe = { .nmsrs = 0 };
	if (ioctl(vm->kvm, KVM_GET_MSR_INDEX_LIST, &probe) < 0 &&
	    errno != E2BIG)
		return -errno;
	uint32_t n = probe.nmsrs;
	struct kvm_msr_list *list =
		calloc(1, sizeof(*list) + n * sizeof(uint32_t));
	vm->msr_index = calloc(n ? n : 1, sizeof(uint32_t));
	struct kvm_msrs *one = msrs_alloc(1);
	int ret = 0;
	if (!list || !vm->msr_index || !one) {
		ret = -ENOMEM;
		goto out;
	}
	list->nmsrs = n;
	if (ioctl(vm->kvm, KVM_GET_MSR_INDEX_LIST, list) < 0) {
		ret = -errno;
		goto out;
	}
	/* Keep the MSRs that vCPU 0 both reads and takes back unchanged. */
	int fd = vm->vcpu[0].fd;
	for (uint32_t i = 0; i < list->nmsrs; i++) {
		one->nmsrs = 1;
		one->entries[0].index = list->indices[i];
		one->entries[0].data = 0;
		if (ioctl(fd, KVM_GET_MSRS, one) != 1)
			continue;
		if (ioctl(fd, KVM_SET_MSRS, one) != 1)
			continue;
		vm->msr_index[vm->nmsrs++] = list->indices[i];
	}
out:
	free(list);
	free(one);
	return ret;
}

/* One KVM_GET_* ioctl into s (len bytes, zeroed and prepared by the caller)
 * and its record; 0 or -errno. */
static int get_put(struct sbuf *b, int fd, unsigned long req, uint32_t tag,
		   void *s, size_t len)
{
	if (ioctl(fd, req, s) < 0)
		return -errno;
	put(b, tag, s, len);
	return 0;
}

int vmm_save_vcpu(struct vmm *vm, unsigned i, void **out, size_t *outlen)
{
	if (i >= vm->nvcpus)
		return -EINVAL;
	int fd = vm->vcpu[i].fd;
	struct sbuf b = { 0 };
	int ret = 0;
#define GET(ioc, tag, type)                                                    \
	do {                                                                   \
		type s_;                                                       \
		memset(&s_, 0, sizeof(s_));                                    \
		if ((ret = get_put(&b, fd, ioc, tag, &s_, sizeof(s_))))        \
			goto fail;                                             \
	} while (0)
	GET(KVM_GET_MP_STATE, T_MP_STATE, struct kvm_mp_state);
	GET(KVM_GET_REGS, T_REGS, struct kvm_regs);
	GET(KVM_GET_SREGS, T_SREGS, struct kvm_sregs);
	if (vm->has_xsave)
		GET(KVM_GET_XSAVE, T_XSAVE, struct kvm_xsave);
	else
		GET(KVM_GET_FPU, T_FPU, struct kvm_fpu);
	if (vm->has_xcrs)
		GET(KVM_GET_XCRS, T_XCRS, struct kvm_xcrs);
	if (vm->has_debugregs)
		GET(KVM_GET_DEBUGREGS, T_DEBUGREGS, struct kvm_debugregs);
	if (vm->irqchip)
		GET(KVM_GET_LAPIC, T_LAPIC, struct kvm_lapic_state);
	GET(KVM_GET_VCPU_EVENTS, T_EVENTS, struct kvm_vcpu_events);
#undef GET
	struct kvm_msrs *m = msrs_alloc(vm->nmsrs);
	if (!m) {
		ret = -ENOMEM;
		goto fail;
	}
	for (uint32_t k = 0; k < vm->nmsrs; k++)
		m->entries[k].index = vm->msr_index[k];
	int got = ioctl(fd, KVM_GET_MSRS, m);
	if (got != (int)vm->nmsrs) {
		ret = got < 0 ? -errno : -EIO;
		free(m);
		goto fail;
	}
	put(&b, T_MSRS, m->entries, vm->nmsrs * sizeof(m->entries[0]));
	free(m);
fail:
	return finish(&b, ret, out, outlen);
}

int vmm_restore_vcpu(struct vmm *vm, unsigned i, const void *buf, size_t len)
{
	if (i >= vm->nvcpus || check_stream(buf, len))
		return -EINVAL;
	int fd = vm->vcpu[i].fd;
	size_t l;
	const void *p;
	/* Firecracker's order; CPUID was set when the vCPU was created. */
#define SET(ioc, tag, type, required)                                          \
	do {                                                                   \
		p = find(buf, len, tag, 0, &l);                                \
		if (!p) {                                                      \
			if (required)                                          \
				return -EINVAL;                                \
			break;                                                 \
		}                                                              \
		if (l != sizeof(type))                                         \
			return -EINVAL;                                        \
		type s_;                                                       \
		memcpy(&s_, p, sizeof(s_));                                    \
		if (ioctl(fd, ioc, &s_) < 0)                                   \
			return -errno;                                         \
	} while (0)
	SET(KVM_SET_MP_STATE, T_MP_STATE, struct kvm_mp_state, 1);
	SET(KVM_SET_REGS, T_REGS, struct kvm_regs, 1);
	SET(KVM_SET_SREGS, T_SREGS, struct kvm_sregs, 1);
	if (vm->has_xsave)
		SET(KVM_SET_XSAVE, T_XSAVE, struct kvm_xsave, 1);
	else
		SET(KVM_SET_FPU, T_FPU, struct kvm_fpu, 1);
	if (vm->has_xcrs)
		SET(KVM_SET_XCRS, T_XCRS, struct kvm_xcrs, 0);
	if (vm->has_debugregs)
		SET(KVM_SET_DEBUGREGS, T_DEBUGREGS, struct kvm_debugregs, 0);
	if (vm->irqchip)
		SET(KVM_SET_LAPIC, T_LAPIC, struct kvm_lapic_state, 0);
	p = find(buf, len, T_MSRS, 0, &l);
	if (!p || l % sizeof(struct kvm_msr_entry))
		return -EINVAL;
	uint32_t n = l / sizeof(struct kvm_msr_entry);
	struct kvm_msrs *m = msrs_alloc(n);
	if (!m)
		return -ENOMEM;
	memcpy(m->entries, p, l);
	int set = ioctl(fd, KVM_SET_MSRS, m);
	int ret = set < 0 ? -errno : 0;
	if (set >= 0 && (uint32_t)set != n) {
		vmm__seterr(vm, "KVM_SET_MSRS refused MSR 0x%x",
			    m->entries[set].index);
		ret = -EIO;
	}
	free(m);
	if (ret)
		return ret;
	SET(KVM_SET_VCPU_EVENTS, T_EVENTS, struct kvm_vcpu_events, 1);
#undef SET
	return 0;
}

int vmm_save_vm(struct vmm *vm, void **out, size_t *outlen)
{
	struct sbuf b = { 0 };
	int ret = 0;
	if (vm->pit) {
		struct kvm_pit_state2 pit;
		memset(&pit, 0, sizeof(pit));
		if ((ret = get_put(&b, vm->fd, KVM_GET_PIT2, T_PIT, &pit,
				   sizeof(pit))))
			goto fail;
	}
	if (vm->has_clock) {
		struct kvm_clock_data c;
		memset(&c, 0, sizeof(c));
		if ((ret = get_put(&b, vm->fd, KVM_GET_CLOCK, T_CLOCK, &c,
				   sizeof(c))))
			goto fail;
	}
	if (vm->irqchip)
		for (uint32_t chip = 0; chip < 3; chip++) {
			struct kvm_irqchip ic;
			memset(&ic, 0, sizeof(ic));
			ic.chip_id = chip; /* PIC master, PIC slave, IOAPIC */
			if ((ret = get_put(&b, vm->fd, KVM_GET_IRQCHIP,
					   T_IRQCHIP, &ic, sizeof(ic))))
				goto fail;
		}
	/* COM1: registers and the line not yet ended, so the guest's
	 * output goes on mid-line on the other side. */
	pthread_mutex_lock(&vm->serial_lock);
	uint8_t ser[8 + VMM_LINE];
	memcpy(ser, vm->uart, 8);
	memcpy(ser + 8, vm->cur, vm->ncur);
	put(&b, T_SERIAL, ser, 8 + vm->ncur);
	pthread_mutex_unlock(&vm->serial_lock);
fail:
	return finish(&b, ret, out, outlen);
}

int vmm_restore_vm(struct vmm *vm, const void *buf, size_t len)
{
	if (check_stream(buf, len))
		return -EINVAL;
	size_t l;
	const void *p;
	if (vm->pit && (p = find(buf, len, T_PIT, 0, &l))) {
		struct kvm_pit_state2 pit;
		if (l != sizeof(pit))
			return -EINVAL;
		memcpy(&pit, p, l);
		if (ioctl(vm->fd, KVM_SET_PIT2, &pit) < 0)
			return -errno;
	}
	if (vm->has_clock && (p = find(buf, len, T_CLOCK, 0, &l))) {
		struct kvm_clock_data c;
		if (l != sizeof(c))
			return -EINVAL;
		memcpy(&c, p, l);
		c.flags = 0; /* the clock value only; same host */
		if (ioctl(vm->fd, KVM_SET_CLOCK, &c) < 0)
			return -errno;
	}
	if ((p = find(buf, len, T_SERIAL, 0, &l))) {
		if (l < 8 || l - 8 >= VMM_LINE)
			return -EINVAL;
		pthread_mutex_lock(&vm->serial_lock);
		memcpy(vm->uart, p, 8);
		memcpy(vm->cur, (const uint8_t *)p + 8, l - 8);
		vm->ncur = (unsigned)(l - 8);
		pthread_mutex_unlock(&vm->serial_lock);
	}
	for (unsigned n = 0; vm->irqchip && n < 3; n++) {
		p = find(buf, len, T_IRQCHIP, n, &l);
		if (!p)
			break;
		struct kvm_irqchip ic;
		if (l != sizeof(ic) || (memcpy(&ic, p, l), ic.chip_id > 2))
			return -EINVAL;
		if (ioctl(vm->fd, KVM_SET_IRQCHIP, &ic) < 0)
			return -errno;
	}
	return 0;
}

static const char *tag_name(uint32_t t)
{
	static const char *names[] = { "?",	"mp_state",  "regs",
				       "sregs", "xsave",     "fpu",
				       "xcrs",	"debugregs", "lapic",
				       "msrs",	"events" };
	return t < sizeof(names) / sizeof(names[0]) ? names[t] : "?";
}

int vmm_compare_vcpu(const void *a, size_t alen, const void *b, size_t blen,
		     char *why, size_t whylen)
{
	if (check_stream(a, alen) || check_stream(b, blen)) {
		snprintf(why, whylen, "malformed state stream");
		return -EINVAL;
	}
	for (uint32_t t = T_MP_STATE; t <= T_EVENTS; t++) {
		size_t la = 0, lb = 0;
		const uint8_t *pa = find(a, alen, t, 0, &la);
		const uint8_t *pb = find(b, blen, t, 0, &lb);
		if (!pa && !pb)
			continue;
		if (!pa || !pb || la != lb) {
			snprintf(why, whylen,
				 "%s: present or sized differently",
				 tag_name(t));
			return 1;
		}
		if (t == T_MSRS) {
			/* Records are not aligned: copy each entry out. */
			struct kvm_msr_entry ea, eb;
			for (size_t k = 0; k < la / sizeof(ea); k++) {
				memcpy(&ea, pa + k * sizeof(ea), sizeof(ea));
				memcpy(&eb, pb + k * sizeof(eb), sizeof(eb));
				if (ea.index != eb.index) {
					snprintf(why, whylen, "msrs: order");
					return 1;
				}
				if (ea.index == MSR_IA32_TSC)
					continue; /* runs on by itself */
				if (ea.data != eb.data) {
					snprintf(why, whylen,
						 "msr 0x%x: 0x%llx != 0x%llx",
						 ea.index,
						 (unsigned long long)ea.data,
						 (unsigned long long)eb.data);
					return 1;
				}
			}
			continue;
		}
		for (size_t k = 0; k < la; k++) {
			if (t == T_LAPIC && k >= 0x390 && k < 0x394)
				continue; /* timer current count */
			if (pa[k] != pb[k]) {
				snprintf(why, whylen, "%s: byte %zu differs",
					 tag_name(t), k);
				return 1;
			}
		}
	}
	return 0;
}
