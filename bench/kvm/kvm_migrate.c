/* SPDX-License-Identifier: MIT */
#include "kvm_migrate.h"
#include "vmm.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "multifd/device.h"

struct kdev {
	struct vmm *vm;
	int vcpu; /* -1: the VM's own state */
	int state;
	uint8_t *buf;
	size_t len, cap, off;
	int err;
};

struct side {
	struct vmm *vm;
	struct kdev dev[VMM_MAX_VCPUS + 1];
	unsigned ndev;
	int running;
	uint64_t stop_ns;	    /* source: the stop hook ran */
	uint64_t run_ns;	    /* destination: vCPUs started */
	mfd_dest *kill_at_postcopy; /* tests: cancelled at the switch */
	struct kvm_mig_result *res;
	char err[128];
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

int kvm_stamp_parse(const char *line, uint64_t *seq, uint64_t *work,
		    uint64_t *bad)
{
	unsigned long long s, w, r, b;
	if (sscanf(line, "stamp seq=%llu work=%llu writes=%llu bad=%llu", &s,
		   &w, &r, &b) != 4)
		return -EINVAL;
	*seq = s;
	*work = w;
	*bad = b;
	return 0;
}

/* ---- devices: vCPU and VM state through the device API ---- */

static int dev_set_state(void *opaque, int new_state)
{
	struct kdev *d = opaque;
	if (new_state == MFD_DEV_STOP_COPY) {
		/* The stop hook has parked the vCPUs: read the state now. */
		free(d->buf);
		d->buf = NULL;
		d->len = d->off = 0;
		void *b;
		size_t l;
		int ret = d->vcpu < 0 ? vmm_save_vm(d->vm, &b, &l)
				      : vmm_save_vcpu(d->vm, d->vcpu, &b, &l);
		if (ret)
			return ret;
		d->buf = b;
		d->len = d->cap = l;
	} else if (new_state == MFD_DEV_RESUMING) {
		d->len = d->off = 0;
	} else if (new_state == MFD_DEV_RUNNING && d->state != MFD_DEV_STOP) {
		free(d->buf);
		d->buf = NULL;
		d->len = d->cap = d->off = 0;
	}
	d->state = new_state;
	return 0;
}

static int dev_get_state(void *opaque, int *state)
{
	*state = ((struct kdev *)opaque)->state;
	return 0;
}

static ssize_t dev_save(void *opaque, void *buf, size_t len)
{
	struct kdev *d = opaque;
	size_t n = d->len - d->off < len ? d->len - d->off : len;
	memcpy(buf, d->buf + d->off, n);
	d->off += n;
	return (ssize_t)n;
}

static int dev_load(void *opaque, const void *buf, size_t len)
{
	struct kdev *d = opaque;
	if (len > (16U << 20) - d->len)
		return -EFBIG;
	if (d->len + len > d->cap) {
		size_t cap = d->cap ? d->cap : 16384;
		while (cap < d->len + len)
			cap *= 2;
		uint8_t *p = realloc(d->buf, cap);
		if (!p)
			return -ENOMEM;
		d->buf = p;
		d->cap = cap;
	}
	memcpy(d->buf + d->len, buf, len);
	d->len += len;
	return 0;
}

static const mfd_device_ops kdev_ops = {
	.caps = MFD_DEV_CAP_STOP_COPY,
	.set_state = dev_set_state,
	.get_state = dev_get_state,
	.save = dev_save,
	.load = dev_load,
};

static void side_devices(struct side *s)
{
	s->ndev = vmm_vcpus(s->vm) + 1;
	for (unsigned i = 0; i < s->ndev; i++) {
		s->dev[i] = (struct kdev){ .vm = s->vm,
					   .vcpu = (int)i - 1,
					   .state = MFD_DEV_RUNNING };
	}
}

static void side_free(struct side *s)
{
	for (unsigned i = 0; i < s->ndev; i++)
		free(s->dev[i].buf);
	vmm_free(s->vm);
}

static const char *dev_name(unsigned i, char *buf, size_t len)
{
	if (i == 0)
		snprintf(buf, len, "kvm-vm");
	else
		snprintf(buf, len, "kvm-vcpu%u", i - 1);
	return buf;
}

/* ---- source hooks ---- */

static int h_stop(void *opaque)
{
	struct side *s = opaque;
	s->stop_ns = now_ns();
	return vmm_pause(s->vm);
}

/* Post-copy switch made: the guest now lives on the destination; the
 * vCPUs stay parked here (resume is never called after this). */
static void h_postcopy(void *opaque)
{
	struct side *s = opaque;
	s->res->postcopy = 1;
	if (!s->kill_at_postcopy)
		return;
	/* The destination dies with its guest running: once it has run
	 * it (phase postcopy, at most 5 s; the source streams nothing
	 * meanwhile), not while it still loads, which would be a failure
	 * before its switch. */
	uint64_t t0 = now_ns();
	mfd_stats st;
	do {
		mfd_dest_get_stats(s->kill_at_postcopy, &st, sizeof(st));
		if (st.phase == MFD_PHASE_POSTCOPY && st.downtime_ns)
			break;
		sleep_ms(1);
	} while (now_ns() - t0 < 5000000000ULL);
	mfd_dest_cancel(s->kill_at_postcopy);
}

static int h_resume(void *opaque)
{
	return vmm_resume(((struct side *)opaque)->vm);
}

static int h_throttle(void *opaque, int percent)
{
	return vmm_throttle(((struct side *)opaque)->vm,
			    percent > 99 ? 99 : percent);
}

static int h_sync_dirty(void *opaque, unsigned block, uint64_t *bitmap,
			uint64_t npages)
{
	struct side *s = opaque;
	uint64_t t = now_ns();
	long n = vmm_sync_dirty(s->vm, bitmap, npages);
	s->res->sync_ns += now_ns() - t;
	s->res->syncs++;
	if (n < 0)
		return (int)n;
	s->res->dirty_pages += (uint64_t)n;
	s->res->ring_full_exits = vmm_ring_full_exits(s->vm);
	s->res->ring_overflows = vmm_ring_overflows(s->vm);
	return 0;
}

/* ---- destination hooks ---- */

static int h_loaded(void *opaque)
{
	struct side *s = opaque;
	int ret;
	for (unsigned i = 0; i < s->ndev; i++)
		if (!s->dev[i].len) {
			snprintf(s->err, sizeof(s->err),
				 "device %u: no state arrived", i);
			return -EPROTO;
		}
	/* VM state first, then every vCPU (Firecracker's order within). */
	if ((ret = vmm_restore_vm(s->vm, s->dev[0].buf, s->dev[0].len))) {
		snprintf(s->err, sizeof(s->err), "VM state: %s",
			 strerror(-ret));
		return ret;
	}
	for (unsigned i = 1; i < s->ndev; i++)
		if ((ret = vmm_restore_vcpu(s->vm, i - 1, s->dev[i].buf,
					    s->dev[i].len))) {
			snprintf(s->err, sizeof(s->err), "vCPU %u state: %s",
				 i - 1, strerror(-ret));
			return ret;
		}
	s->run_ns = now_ns();
	if ((ret = vmm_start(s->vm)))
		return ret;
	s->running = 1;
	return 0;
}

/* ---- the guest's view: its COM1 lines ---- */

struct span {
	uint64_t t0, t1, w0, w1, seq_last, bad_last, lines;
	uint64_t first_ns, last_ns, seq_first;
};

/* Stamp lines of vm whose time is in [from, to). */
static void scan(struct vmm *vm, uint64_t from, uint64_t to, struct span *sp)
{
	memset(sp, 0, sizeof(*sp));
	size_t n = vmm_serial_lines(vm);
	char line[192];
	for (size_t i = 0; i < n; i++) {
		uint64_t ns, seq, work, bad;
		if (vmm_serial_line(vm, i, &ns, line, sizeof(line)) ||
		    kvm_stamp_parse(line, &seq, &work, &bad))
			continue;
		if (ns < from || ns >= to)
			continue;
		if (!sp->lines) {
			sp->t0 = sp->first_ns = ns;
			sp->w0 = work;
			sp->seq_first = seq;
		}
		sp->t1 = sp->last_ns = ns;
		sp->w1 = work;
		sp->seq_last = seq;
		sp->bad_last = bad;
		sp->lines++;
	}
}

/* Work per second between the span's first and last line; NaN (not
 * measured: JSON null) with fewer than two lines. */
static double rate(const struct span *sp)
{
	if (sp->lines < 2 || sp->t1 <= sp->t0)
		return NAN;
	return (double)(sp->w1 - sp->w0) * 1e9 / (double)(sp->t1 - sp->t0);
}

/* ---- the run ---- */

static int make_side(struct side *s, const struct kvm_mig_opts *o, int source,
		     struct kvm_mig_result *res)
{
	struct vmm_opts vo = {
		.mem_bytes = o->mem_bytes,
		.vcpus = o->vcpus,
		.dirty_mode = source ? o->dirty_mode : VMM_DIRTY_NONE,
		.ring_entries = o->ring_entries,
		.serial_fd = o->serial_fd,
		.clear_chunk_pages = o->clear_chunk,
	};
	s->res = res;
	int ret = vmm_create(&s->vm, &vo, res->err, sizeof(res->err));
	if (ret)
		return ret;
	side_devices(s);
	if (source) {
		res->manual_protect = vmm_manual_protect(s->vm);
		res->ring_entries = vmm_ring_entries(s->vm);
	}
	if (source && (ret = vmm_load_kernel(s->vm, o->kernel, o->cmdline,
					     res->err, sizeof(res->err))))
		return ret;
	return 0;
}

/* The library's handles of one side (or both, for a local run). */
struct lib {
	mfd_config *own;
	const mfd_config *cfg;
	mfd_source *ms;
	mfd_dest *md;
};

static int lib_config(struct lib *l, const mfd_config *cfg)
{
	l->cfg = cfg;
	if (cfg)
		return 0;
	int ret = mfd_config_new(&l->own);
	l->cfg = l->own;
	return ret;
}

static void lib_free(struct lib *l)
{
	mfd_source_free(l->ms);
	mfd_dest_free(l->md);
	mfd_config_free(l->own);
}

/* The source's handle: pc.ram, one device per vCPU plus the VM's. */
static int open_source(struct lib *l, struct side *src)
{
	mfd_source_hooks sh = { .opaque = src,
				.stop = h_stop,
				.resume = h_resume,
				.postcopy = h_postcopy,
				.throttle = h_throttle,
				.sync_dirty = h_sync_dirty };
	char name[32];
	int ret = mfd_source_new(&l->ms, l->cfg, &sh);
	if (!ret)
		ret = mfd_source_add_block(l->ms, "pc.ram", vmm_mem(src->vm),
					   vmm_mem_size(src->vm), 4096);
	for (unsigned i = 0; !ret && i < src->ndev; i++)
		ret = mfd_source_add_device(l->ms, dev_name(i, name, 32),
					    &kdev_ops, &src->dev[i]);
	return ret;
}

/* The destination's handle, registered the same way, listening on uri. */
static int open_dest(struct lib *l, struct side *dst, const char *uri)
{
	/* Post-copy runs the guest at the switch the same way: state
	 * restored, vCPUs started; a page they touch that is not here yet
	 * faults in KVM (get_user_pages on the slot's memory) and waits in
	 * userfaultfd until the library placed it, as QEMU's post-copy. */
	mfd_dest_hooks dh = { .opaque = dst,
			      .loaded = h_loaded,
			      .postcopy_run = h_loaded };
	char name[32];
	int ret = mfd_dest_new(&l->md, l->cfg, &dh);
	if (!ret)
		ret = mfd_dest_add_block(l->md, "pc.ram", vmm_mem(dst->vm),
					 vmm_mem_size(dst->vm), 4096);
	for (unsigned i = 0; !ret && i < dst->ndev; i++)
		ret = mfd_dest_add_device(l->md, dev_name(i, name, 32),
					  &kdev_ops, &dst->dev[i]);
	if (!ret)
		ret = mfd_dest_start(l->md, uri);
	return ret;
}

static int lib_error(struct kvm_mig_result *res, int ret)
{
	if (!res->err[0])
		snprintf(res->err, sizeof(res->err), "multifd: %s",
			 mfd_strerror(ret));
	return ret;
}

/* Boots the source and lets the guest run before_ms. */
static int boot_source(struct side *src, const struct kvm_mig_opts *o,
		       struct kvm_mig_result *res, uint64_t *t_boot)
{
	int ret = vmm_start(src->vm);
	if (ret)
		return ret;
	*t_boot = now_ns();
	sleep_ms(o->before_ms);
	if (vmm_failed(src->vm)) {
		snprintf(res->err, sizeof(res->err), "guest failed: %s",
			 vmm_error(src->vm));
		return -EIO;
	}
	return 0;
}

/* The guest's view on the source: before [t_boot, t_mig), during
 * [t_mig, t_end), and its last line before t_after (the end of the
 * window end_view() reads: a guest still running here prints on). */
static void source_view(struct side *src, uint64_t t_boot, uint64_t t_mig,
			uint64_t t_end, uint64_t t_after,
			struct kvm_mig_result *res, struct span *all)
{
	struct span before, during;
	scan(src->vm, t_boot, t_mig, &before);
	scan(src->vm, t_mig, t_end, &during);
	scan(src->vm, 0, t_after, all);
	res->rate_before = rate(&before);
	res->rate_during = rate(&during);
	res->last_seq_src = all->seq_last;
	res->bad_src = all->bad_last;
	if (src->stop_ns && all->lines && src->stop_ns > all->last_ns)
		res->src_quiet_ns = src->stop_ns - all->last_ns;
	if (src->stop_ns) {
		struct span late;
		scan(src->vm, src->stop_ns + 200000000ULL, UINT64_MAX, &late);
		res->src_lines_after_stop = late.lines;
	}
}

/* Where the guest runs after the end: its rate, last line and bad pages
 * in [t_end, t_after); on the destination also its first line. */
static void end_view(struct side *s, int dest, uint64_t t_end, uint64_t t_after,
		     struct kvm_mig_result *res, struct span *all)
{
	struct span after;
	scan(s->vm, t_end, t_after, &after);
	res->rate_after = rate(&after);
	res->lines_after = after.lines;
	res->last_seq_end = after.seq_last;
	res->bad_end = after.bad_last;
	if (dest) {
		scan(s->vm, 0, UINT64_MAX, all);
		res->first_seq_dst = all->seq_first;
		if (all->lines && s->run_ns && all->first_ns > s->run_ns)
			res->dst_quiet_ns = all->first_ns - s->run_ns;
	}
	if (vmm_failed(s->vm))
		snprintf(res->err, sizeof(res->err), "%s guest failed: %s",
			 dest ? "destination" : "source", vmm_error(s->vm));
}

int kvm_migrate_run(const struct kvm_mig_opts *o, struct kvm_mig_result *res)
{
	memset(res, 0, sizeof(*res));
	struct side src = { 0 }, dst = { 0 };
	struct lib l = { 0 };
	uint64_t t_boot;
	int ret;
	char uri[128];

	if ((ret = make_side(&src, o, 1, res)) ||
	    (ret = make_side(&dst, o, 0, res)))
		goto out;
	if ((ret = lib_config(&l, o->cfg)) || (ret = open_source(&l, &src)))
		goto lib_err;
	if ((ret = boot_source(&src, o, res, &t_boot)))
		goto out;
	if ((ret = open_dest(&l, &dst, "tcp:127.0.0.1:0")) ||
	    (ret = mfd_dest_get_uri(l.md, uri, sizeof(uri))))
		goto lib_err;
	if (o->kill_dest_at_postcopy)
		src.kill_at_postcopy = l.md;
	if (o->route) {
		char via[128];
		if ((ret = o->route(o->ctx, uri, via, sizeof(via))))
			goto out;
		snprintf(uri, sizeof(uri), "%s", via);
	}
	uint64_t t_mig = now_ns();
	if ((ret = mfd_source_start(l.ms, uri)))
		goto lib_err;
	if (o->midway)
		o->midway(o->ctx);
	if (o->postcopy_after_ms) {
		sleep_ms(o->postcopy_after_ms);
		if ((ret = mfd_source_start_postcopy(l.ms)) &&
		    ret != MFD_ESTATE) /* ESTATE: it ended already */
			goto lib_err;
	}
	if (o->cancel_after_ms >= 0) {
		sleep_ms((unsigned)o->cancel_after_ms);
		mfd_source_cancel(l.ms);
	}
	if (o->kill_dest_after_ms >= 0) {
		sleep_ms((unsigned)o->kill_dest_after_ms);
		mfd_dest_cancel(l.md);
	}
	res->ret = mfd_source_wait(l.ms);
	uint64_t t_end = now_ns();
	res->dest_ret = mfd_dest_wait(l.md);
	mfd_source_get_stats(l.ms, &res->src, sizeof(res->src));
	mfd_dest_get_stats(l.md, &res->dst, sizeof(res->dst));
	res->dest_running = dst.running;
	sleep_ms(o->after_ms);
	uint64_t t_after = now_ns();

	struct span src_all, dst_all;
	source_view(&src, t_boot, t_mig, t_end, t_after, res, &src_all);
	end_view(dst.running ? &dst : &src, dst.running, t_end, t_after, res,
		 &dst_all);
	if (dst.running && dst_all.lines && src_all.lines &&
	    dst_all.first_ns > src_all.last_ns)
		res->serial_gap_ns = dst_all.first_ns - src_all.last_ns;
	if (!res->err[0] && dst.err[0])
		snprintf(res->err, sizeof(res->err), "%s", dst.err);
	ret = 0;
	goto out;
lib_err:
	lib_error(res, ret);
out:
	lib_free(&l);
	side_free(&src);
	side_free(&dst);
	return ret;
}

int kvm_migrate_source(const struct kvm_mig_opts *o, const char *uri,
		       struct kvm_mig_result *res)
{
	memset(res, 0, sizeof(*res));
	struct side src = { 0 };
	struct lib l = { 0 };
	uint64_t t_boot;
	int ret;

	if ((ret = make_side(&src, o, 1, res)))
		goto out;
	if ((ret = lib_config(&l, o->cfg)) || (ret = open_source(&l, &src))) {
		lib_error(res, ret);
		goto out;
	}
	if ((ret = boot_source(&src, o, res, &t_boot)))
		goto out;
	uint64_t t_mig = now_ns();
	res->ret = mfd_source_start(l.ms, uri);
	if (!res->ret && o->postcopy_after_ms) {
		sleep_ms(o->postcopy_after_ms);
		int r = mfd_source_start_postcopy(l.ms);
		if (r && r != MFD_ESTATE)
			mfd_source_cancel(l.ms);
	}
	if (!res->ret)
		res->ret = mfd_source_wait(l.ms);
	uint64_t t_end = now_ns();
	mfd_source_get_stats(l.ms, &res->src, sizeof(res->src));
	if (res->ret)
		snprintf(res->err, sizeof(res->err), "%s",
			 mfd_source_error_text(l.ms));
	/* After a failure the guest runs on here, unless the post-copy
	 * switch gave it away (then it is lost): watch it. */
	int here = res->ret && !res->postcopy;
	if (here)
		sleep_ms(o->after_ms);
	uint64_t t_after = now_ns();
	struct span all, end;
	source_view(&src, t_boot, t_mig, t_end, t_after, res, &all);
	if (here)
		end_view(&src, 0, t_end, t_after, res, &end);
	ret = 0;
out:
	lib_free(&l);
	side_free(&src);
	return ret;
}

int kvm_migrate_dest(const struct kvm_mig_opts *o, const char *uri,
		     void (*listening)(const char *uri),
		     struct kvm_mig_result *res)
{
	memset(res, 0, sizeof(*res));
	struct side dst = { 0 };
	struct lib l = { 0 };
	char bound[128];
	int ret;

	if ((ret = make_side(&dst, o, 0, res)))
		goto out;
	if ((ret = lib_config(&l, o->cfg)) ||
	    (ret = open_dest(&l, &dst, uri)) ||
	    (ret = mfd_dest_get_uri(l.md, bound, sizeof(bound)))) {
		lib_error(res, ret);
		goto out;
	}
	if (listening)
		listening(bound);
	res->dest_ret = mfd_dest_wait(l.md);
	uint64_t t_end = now_ns();
	mfd_dest_get_stats(l.md, &res->dst, sizeof(res->dst));
	res->dest_running = dst.running;
	if (res->dest_ret)
		snprintf(res->err, sizeof(res->err), "%s",
			 dst.err[0] ? dst.err : mfd_dest_error_text(l.md));
	if (dst.running) {
		sleep_ms(o->after_ms);
		struct span all;
		end_view(&dst, 1, t_end, now_ns(), res, &all);
	}
	ret = 0;
out:
	lib_free(&l);
	side_free(&dst);
	return ret;
}
