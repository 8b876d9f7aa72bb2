/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <pthread.h>
#include <sys/uio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "devstate/simdev.h"

#define SIM_MAGIC 0x444d4953U /* "SIMD" */
#define REC_HDR	  16
#define NONE	  UINT32_MAX

struct mfd_simdev {
	struct mfd_simdev_cfg cfg;
	mfd_device_ops ops;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	int state;
	uint32_t nunits, npre; /* units, of which precopy-able */
	uint32_t *ver;	       /* source: current; dest: loaded */
	uint32_t *sent;	       /* source: version sent in this session */
	/* The state itself: unit u at mem + u * unit_size, as a device keeps
	 * it in its own memory. save() copies from it, save_iov() points at
	 * it, load() writes into it. */
	uint8_t *mem;
	uint8_t *hdrs; /* source: record header of each unit (save_iov) */
	/* Source: the rest of the record in progress when its unit changed
	 * under it (the stream must stay that version's bytes). */
	uint8_t *stash;
	bool rec_stashed;
	uint64_t changes; /* units changed so far (drives the choice) */
	uint64_t t_last;  /* last time running dirtying was accounted */
	double carry;	  /* fractional bytes of dirtying */
	uint32_t cursor;  /* PRE_COPY scan position */
	/* Record in progress (save: being produced; load: being parsed). */
	bool in_rec;
	uint32_t rec_unit, rec_ver, rec_len, rec_off; /* off counts header */
	uint8_t hdr[REC_HDR];
	struct mfd_simdev_stats st;
	/* DMA thread. */
	pthread_t dma_thread;
	bool dma_started, dma_run, dma_busy, dma_quit;
	uint64_t *dma_log;  /* one bit per dma page, atomic */
	uint64_t dma_pages; /* atomic */
	/* Measured, atomic: a burst's whole period (write, pause, the lock
	 * again), smoothed (1/8 a burst). */
	uint64_t dma_period_ns;
	uint64_t dma_npages;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t unit_key(uint64_t seed, uint32_t unit, uint32_t ver)
{
	return mix64(seed ^ mix64(((uint64_t)unit << 32) | ver));
}

/* Word i of a unit's contents. */
static inline uint64_t content_word(uint64_t key, uint64_t i)
{
	return mix64(key + i * 0x9e3779b97f4a7c15ULL);
}

/* Bytes [off, off+n) of the contents into out. */
static void content(uint64_t key, uint32_t off, uint8_t *out, uint32_t n)
{
	while (n) {
		uint64_t w = content_word(key, off / 8);
		uint32_t o = off % 8, k = 8 - o;
		if (k > n)
			k = n;
		if (o == 0 && k == 8) {
			memcpy(out, &w, 8);
		} else {
			uint8_t b[8];
			memcpy(b, &w, 8);
			memcpy(out, b + o, k);
		}
		out += k;
		off += k;
		n -= k;
	}
}

/* Whether in equals bytes [off, off+n) of the contents. */
static bool content_eq(uint64_t key, uint32_t off, const uint8_t *in,
		       uint32_t n)
{
	uint8_t tmp[256];
	while (n) {
		uint32_t k = n < sizeof(tmp) ? n : (uint32_t)sizeof(tmp);
		content(key, off, tmp, k);
		if (memcmp(tmp, in, k))
			return false;
		in += k;
		off += k;
		n -= k;
	}
	return true;
}

static uint32_t unit_len(const struct mfd_simdev *d, uint32_t u)
{
	uint64_t start = (uint64_t)u * d->cfg.unit_size;
	uint64_t left = d->cfg.state_size - start;
	return left < d->cfg.unit_size ? (uint32_t)left : d->cfg.unit_size;
}

static bool dev_runs(int s)
{
	return s == MFD_DEV_RUNNING || s == MFD_DEV_RUNNING_P2P ||
	       s == MFD_DEV_PRE_COPY || s == MFD_DEV_PRE_COPY_P2P;
}

static uint8_t *unit_mem(const struct mfd_simdev *d, uint32_t u)
{
	return d->mem + (uint64_t)u * d->cfg.unit_size;
}

/* Writes unit u's contents at version v into the device memory. */
static void unit_fill(struct mfd_simdev *d, uint32_t u, uint32_t v)
{
	content(unit_key(d->cfg.seed, u, v), 0, unit_mem(d, u), unit_len(d, u));
}

static void touch_locked(struct mfd_simdev *d, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		uint32_t u = (uint32_t)(mix64(d->cfg.seed ^ ~d->changes) %
					d->nunits);
		if (d->in_rec && d->rec_unit == u && !d->rec_stashed) {
			memcpy(d->stash, unit_mem(d, u), unit_len(d, u));
			d->rec_stashed = true;
		}
		d->ver[u]++;
		unit_fill(d, u, d->ver[u]);
		d->changes++;
		d->st.state_changes++;
	}
}

/* Accounts the state the running device changed since the last call. */
static void advance(struct mfd_simdev *d)
{
	uint64_t t = now_ns();
	if (dev_runs(d->state) && d->cfg.dirty_rate && d->t_last) {
		d->carry += (double)(t - d->t_last) * 1e-9 *
			    (double)d->cfg.dirty_rate;
		uint64_t n = (uint64_t)(d->carry / d->cfg.unit_size);
		if (n) {
			d->carry -= (double)n * d->cfg.unit_size;
			if (n > d->nunits)
				n = d->nunits;
			touch_locked(d, n);
		}
	}
	d->t_last = t;
}

/* ---------------------------------------------------------------- */
/* DMA                                                              */
/* ---------------------------------------------------------------- */

static void dma_write_page(struct mfd_simdev *d, uint64_t page, uint64_t v)
{
	uint64_t *p = (uint64_t *)((uint8_t *)d->cfg.dma_base +
				   page * d->cfg.dma_page);
	size_t words = d->cfg.dma_page / 8;
	for (size_t i = 0; i < words; i += 64)
		__atomic_store_n(&p[i], mix64(v + i), __ATOMIC_RELAXED);
	__atomic_fetch_or(&d->dma_log[page / 64], 1ULL << (page % 64),
			  __ATOMIC_RELEASE);
}

/* A DMA burst, then a pause this long with the burst still in flight:
 * stopping the device waits for it. */
#define DMA_BURST_NS 1000000L

/* v += (x - v) / 8, the first sample taken whole; one writer. */
static void smooth(uint64_t *v, uint64_t x)
{
	uint64_t old = __atomic_load_n(v, __ATOMIC_RELAXED);
	int64_t step = ((int64_t)x - (int64_t)old) / 8;
	__atomic_store_n(v, old ? (uint64_t)((int64_t)old + step) : x,
			 __ATOMIC_RELAXED);
}

static void *dma_main(void *arg)
{
	struct mfd_simdev *d = arg;
	uint64_t n = 0;
	double carry = 0;
	uint64_t t_last = 0;
	pthread_mutex_lock(&d->lock);
	for (;;) {
		while (!d->dma_run && !d->dma_quit) {
			t_last = 0;
			pthread_cond_wait(&d->cv, &d->lock);
		}
		if (d->dma_quit)
			break;
		d->dma_busy = true;
		pthread_mutex_unlock(&d->lock);

		uint64_t t = now_ns();
		if (t_last)
			carry += (double)(t - t_last) * 1e-9 *
				 (double)d->cfg.dma_rate / d->cfg.dma_page;
		t_last = t;
		uint64_t pages = (uint64_t)carry;
		carry -= (double)pages;
		for (uint64_t i = 0; i < pages; i++, n++)
			dma_write_page(d,
				       mix64(d->cfg.seed + n) % d->dma_npages,
				       d->cfg.seed ^ n);
		__atomic_fetch_add(&d->dma_pages, pages, __ATOMIC_RELAXED);
		struct timespec ts = { 0, DMA_BURST_NS };
		nanosleep(&ts, NULL);

		pthread_mutex_lock(&d->lock);
		smooth(&d->dma_period_ns, now_ns() - t);
		d->dma_busy = false;
		pthread_cond_broadcast(&d->cv);
	}
	d->dma_busy = false;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

/* Under the lock: start or quiesce the DMA engine for state s. */
static void dma_follow(struct mfd_simdev *d, int s)
{
	if (!d->dma_started)
		return;
	d->dma_run = dev_runs(s);
	pthread_cond_broadcast(&d->cv);
	while (!d->dma_run && d->dma_busy)
		pthread_cond_wait(&d->cv, &d->lock);
}

static int sim_dma_dirty(void *opaque,
			 int (*mark)(void *ctx, void *host, uint64_t len),
			 void *ctx)
{
	struct mfd_simdev *d = opaque;
	if (!d->dma_started)
		return 0;
	uint64_t words = (d->dma_npages + 63) / 64;
	for (uint64_t w = 0; w < words; w++) {
		uint64_t bits = __atomic_exchange_n(&d->dma_log[w], 0,
						    __ATOMIC_ACQ_REL);
		while (bits) {
			unsigned b = (unsigned)__builtin_ctzll(bits);
			bits &= bits - 1;
			uint64_t page = w * 64 + b;
			int ret = mark(ctx,
				       (uint8_t *)d->cfg.dma_base +
					       page * d->cfg.dma_page,
				       d->cfg.dma_page);
			if (ret)
				return ret;
		}
	}
	return 0;
}

/* ---------------------------------------------------------------- */
/* FSM                                                              */
/* ---------------------------------------------------------------- */

static int sim_set_state(void *opaque, int new_state)
{
	struct mfd_simdev *d = opaque;
	int ret = 0;
	pthread_mutex_lock(&d->lock);
	advance(d);
	int from = d->state;
	if (!mfd_dev_arc_valid(from, new_state, d->cfg.caps)) {
		ret = -EINVAL;
		goto out;
	}
	bool saving_from = from == MFD_DEV_PRE_COPY ||
			   from == MFD_DEV_PRE_COPY_P2P ||
			   from == MFD_DEV_STOP_COPY;
	bool saving_to = new_state == MFD_DEV_PRE_COPY ||
			 new_state == MFD_DEV_PRE_COPY_P2P ||
			 new_state == MFD_DEV_STOP_COPY;
	if (saving_to && !saving_from) {
		/* A new data session: nothing sent yet. */
		for (uint32_t u = 0; u < d->nunits; u++)
			d->sent[u] = NONE;
		d->in_rec = false;
		d->cursor = 0;
	}
	if (new_state == MFD_DEV_RESUMING) {
		/* Nothing of the old state survives: what is there after the
		 * load was loaded. */
		memset(d->mem, 0x5a, d->cfg.state_size);
		for (uint32_t u = 0; u < d->nunits; u++)
			d->ver[u] = NONE;
		d->in_rec = false;
		d->rec_off = 0;
	}
	if (from == MFD_DEV_RESUMING) {
		/* Leaving RESUMING validates what was written. */
		bool ok = !d->in_rec && d->rec_off == 0;
		for (uint32_t u = 0; ok && u < d->nunits; u++)
			ok = d->ver[u] != NONE;
		if (!ok) {
			d->state = MFD_DEV_ERROR;
			ret = -EINVAL;
			goto out;
		}
	}
	dma_follow(d, new_state);
	d->state = new_state;
out:
	pthread_mutex_unlock(&d->lock);
	return ret;
}

static int sim_get_state(void *opaque, int *state)
{
	struct mfd_simdev *d = opaque;
	pthread_mutex_lock(&d->lock);
	*state = d->state;
	pthread_mutex_unlock(&d->lock);
	return 0;
}

static int sim_reset(void *opaque)
{
	struct mfd_simdev *d = opaque;
	pthread_mutex_lock(&d->lock);
	dma_follow(d, MFD_DEV_RUNNING);
	d->state = MFD_DEV_RUNNING;
	d->in_rec = false;
	d->rec_off = 0;
	pthread_mutex_unlock(&d->lock);
	return 0;
}

static int sim_precopy_info(void *opaque, uint64_t *initial, uint64_t *dirty)
{
	struct mfd_simdev *d = opaque;
	pthread_mutex_lock(&d->lock);
	if (d->state != MFD_DEV_PRE_COPY && d->state != MFD_DEV_PRE_COPY_P2P) {
		pthread_mutex_unlock(&d->lock);
		return -EINVAL;
	}
	advance(d);
	uint64_t i = 0, g = 0;
	for (uint32_t u = 0; u < d->npre; u++) {
		if (d->sent[u] == NONE)
			i += REC_HDR + unit_len(d, u);
		else if (d->sent[u] != d->ver[u])
			g += REC_HDR + unit_len(d, u);
	}
	if (d->in_rec) /* the rest of a record in progress */
		i += REC_HDR + d->rec_len - d->rec_off;
	*initial = i;
	*dirty = g;
	pthread_mutex_unlock(&d->lock);
	return 0;
}

/* What STOP_COPY would send now: in a data session, every unit whose
 * version has not been sent and the rest of a record in progress; outside
 * one (a new session sends everything), every unit. */
static int sim_stop_copy_size(void *opaque, uint64_t *bytes)
{
	struct mfd_simdev *d = opaque;
	pthread_mutex_lock(&d->lock);
	advance(d);
	bool session = d->state == MFD_DEV_PRE_COPY ||
		       d->state == MFD_DEV_PRE_COPY_P2P ||
		       d->state == MFD_DEV_STOP_COPY;
	uint64_t n = 0;
	for (uint32_t u = 0; u < d->nunits; u++)
		if (!session || d->sent[u] != d->ver[u])
			n += REC_HDR + unit_len(d, u);
	if (session && d->in_rec)
		n += REC_HDR + d->rec_len - d->rec_off;
	*bytes = n;
	pthread_mutex_unlock(&d->lock);
	return 0;
}

/* The arc to STOP_COPY waits for the DMA burst in flight (dma_follow):
 * one is always in flight, and a stop at a moment that is not its start
 * waits for the rest of it, half a burst's period on average: the period
 * measured (write, pause, the lock again), not the nominal pause (half a
 * nominal burst declared 2 ms on 4 devices where the arcs took 2.9-3.5
 * ms at load 3). How late the pauses wake is not added: measured with
 * the guest running it said 0.3-0.9 ms a device, and the stop's arcs
 * run with the guest stopped. The estimate is a median, so the
 * expectation, not the most. Without DMA it costs next to nothing. */
static int sim_stop_cost(void *opaque, uint64_t *ns)
{
	struct mfd_simdev *d = opaque;
	uint64_t period = __atomic_load_n(&d->dma_period_ns, __ATOMIC_RELAXED);
	if (!period)
		period = DMA_BURST_NS;
	*ns = d->dma_started ? period / 2 : 0;
	return 0;
}

/* Next unit to send in this phase, or NONE. */
static uint32_t pick(struct mfd_simdev *d, bool stop_copy)
{
	uint32_t lim = stop_copy ? d->nunits : d->npre;
	if (lim == 0)
		return NONE;
	if (d->cursor >= lim)
		d->cursor = 0;
	for (uint32_t k = 0; k < lim; k++) {
		uint32_t u = d->cursor + k;
		if (u >= lim)
			u -= lim;
		if (d->sent[u] != d->ver[u]) {
			d->cursor = u + 1;
			return u;
		}
	}
	return NONE;
}

/*
 * Under the lock: the next piece of the stream, at most room bytes, where
 * it lies (a record header or a part of a unit's memory); consumed. 0 at
 * the end of what the phase has, -EIO for the injected fault.
 */
static ssize_t next_piece(struct mfd_simdev *d, bool sc, size_t room,
			  const uint8_t **p)
{
	if (d->cfg.fail_save_after &&
	    d->st.saved_bytes >= d->cfg.fail_save_after)
		return -EIO;
	if (!d->in_rec) {
		uint32_t u = pick(d, sc);
		if (u == NONE)
			return 0;
		d->in_rec = true;
		d->rec_stashed = false;
		d->rec_unit = u;
		d->rec_ver = d->ver[u];
		d->rec_len = unit_len(d, u);
		d->rec_off = 0;
		d->sent[u] = d->ver[u];
		uint32_t h[4] = { SIM_MAGIC, u, d->rec_ver, d->rec_len };
		uint8_t *hd = d->hdrs + (uint64_t)u * REC_HDR;
		for (int i = 0; i < 4; i++)
			for (int b = 0; b < 4; b++)
				hd[i * 4 + b] = (uint8_t)(h[i] >> (8 * b));
	}
	size_t k;
	if (d->rec_off < REC_HDR) {
		k = REC_HDR - d->rec_off;
		*p = d->hdrs + (uint64_t)d->rec_unit * REC_HDR + d->rec_off;
	} else {
		k = REC_HDR + d->rec_len - d->rec_off;
		*p = (d->rec_stashed ? d->stash : unit_mem(d, d->rec_unit)) +
		     (d->rec_off - REC_HDR);
	}
	if (k > room)
		k = room;
	d->rec_off += (uint32_t)k;
	d->st.saved_bytes += k;
	if (d->rec_off == REC_HDR + d->rec_len)
		d->in_rec = false;
	return (ssize_t)k;
}

/* Under the lock: whether save may run now, and whether in STOP_COPY. */
static int save_phase(struct mfd_simdev *d, bool *sc)
{
	*sc = d->state == MFD_DEV_STOP_COPY;
	if (!*sc && d->state != MFD_DEV_PRE_COPY &&
	    d->state != MFD_DEV_PRE_COPY_P2P)
		return -EINVAL;
	advance(d);
	return 0;
}

static ssize_t sim_save(void *opaque, void *buf, size_t len)
{
	struct mfd_simdev *d = opaque;
	uint8_t *out = buf;
	size_t done = 0;
	bool sc;
	pthread_mutex_lock(&d->lock);
	if (save_phase(d, &sc)) {
		pthread_mutex_unlock(&d->lock);
		return -EINVAL;
	}
	while (done < len) {
		const uint8_t *p;
		ssize_t k = next_piece(d, sc, len - done, &p);
		if (k < 0) {
			pthread_mutex_unlock(&d->lock);
			return k;
		}
		if (k == 0)
			break;
		memcpy(out + done, p, (size_t)k);
		done += (size_t)k;
	}
	if (!sc)
		d->st.precopy_bytes += done;
	pthread_mutex_unlock(&d->lock);
	return (ssize_t)done;
}

/* STOP_COPY only: the device is stopped, so its memory holds still until
 * it leaves STOP_COPY (the contract of save_iov). */
static ssize_t sim_save_iov(void *opaque, struct iovec *iov, int *iovcnt,
			    size_t len)
{
	struct mfd_simdev *d = opaque;
	size_t done = 0;
	int n = 0;
	pthread_mutex_lock(&d->lock);
	if (d->state != MFD_DEV_STOP_COPY || *iovcnt < 1) {
		pthread_mutex_unlock(&d->lock);
		return -EINVAL;
	}
	while (done < len && n < *iovcnt) {
		/* The rest of a record copied aside (it changed while being
		 * sent) is applied into the state memory where this stream
		 * later places the unit's new version: it goes in a call of
		 * its own (device.h, save_iov). */
		bool aside =
			d->in_rec && d->rec_stashed && d->rec_off >= REC_HDR;
		if (aside && n > 0)
			break;
		const uint8_t *p;
		ssize_t k = next_piece(d, true, len - done, &p);
		if (k < 0) {
			pthread_mutex_unlock(&d->lock);
			return k;
		}
		if (k == 0)
			break;
		iov[n++] = (struct iovec){ (void *)p, (size_t)k };
		done += (size_t)k;
		if (aside)
			break;
	}
	pthread_mutex_unlock(&d->lock);
	*iovcnt = n;
	return (ssize_t)done;
}

/*
 * Under the lock, RESUMING: the next len bytes of the stream at in. placed:
 * they are already in the state memory (in points there), which is only
 * right if it is exactly where the stream puts them.
 */
static int load_locked(struct mfd_simdev *d, const uint8_t *in, size_t len,
		       bool placed)
{
	size_t pos = 0;
	while (pos < len) {
		if (d->rec_off < REC_HDR) {
			if (placed)
				return -EINVAL; /* headers are not state */
			size_t h = REC_HDR - d->rec_off;
			if (h > len - pos)
				h = len - pos;
			memcpy(d->hdr + d->rec_off, in + pos, h);
			d->rec_off += (uint32_t)h;
			pos += h;
			if (d->rec_off < REC_HDR)
				break;
			uint32_t f[4];
			for (int i = 0; i < 4; i++)
				f[i] = (uint32_t)d->hdr[i * 4] |
				       (uint32_t)d->hdr[i * 4 + 1] << 8 |
				       (uint32_t)d->hdr[i * 4 + 2] << 16 |
				       (uint32_t)d->hdr[i * 4 + 3] << 24;
			if (f[0] != SIM_MAGIC || f[1] >= d->nunits ||
			    f[3] != unit_len(d, f[1]) || f[2] == NONE)
				return -EINVAL;
			d->rec_unit = f[1];
			d->rec_ver = f[2];
			d->rec_len = f[3];
			d->in_rec = true;
		}
		uint32_t total = REC_HDR + d->rec_len;
		size_t k = total - d->rec_off;
		if (k > len - pos)
			k = len - pos;
		uint8_t *to = unit_mem(d, d->rec_unit) + (d->rec_off - REC_HDR);
		if (placed && in + pos != to)
			return -EINVAL;
		if (!d->cfg.defer_check &&
		    !content_eq(unit_key(d->cfg.seed, d->rec_unit, d->rec_ver),
				d->rec_off - REC_HDR, in + pos, (uint32_t)k))
			return -EINVAL;
		if (!placed)
			memcpy(to, in + pos, k);
		d->rec_off += (uint32_t)k;
		pos += k;
		if (d->rec_off == total) {
			d->ver[d->rec_unit] = d->rec_ver;
			d->in_rec = false;
			d->rec_off = 0;
		}
	}
	d->st.loaded_bytes += len;
	if (placed)
		d->st.placed_bytes += len;
	return 0;
}

static int load_segs(struct mfd_simdev *d, const struct mfd_dev_seg *seg,
		     int nseg)
{
	uint64_t t0 = now_ns(), len = 0;
	int ret = 0;
	pthread_mutex_lock(&d->lock);
	if (d->state != MFD_DEV_RESUMING)
		ret = -EINVAL;
	for (int i = 0; !ret && i < nseg; i++) {
		const uint8_t *in = seg[i].buf;
		if (!in) {
			if (seg[i].mem_off > d->cfg.state_size ||
			    seg[i].len > d->cfg.state_size - seg[i].mem_off) {
				ret = -ERANGE;
				break;
			}
			in = d->mem + seg[i].mem_off;
		}
		ret = load_locked(d, in, seg[i].len, !seg[i].buf);
		len += seg[i].len;
	}
	pthread_mutex_unlock(&d->lock);
	if (ret == 0 && d->cfg.load_ms_per_mib > 0) {
		/* The restore takes at least its cost, checking included. */
		uint64_t cost = (uint64_t)(d->cfg.load_ms_per_mib * 1e6 *
					   (double)len / (1 << 20));
		uint64_t t = now_ns();
		if (t < t0 + cost) {
			uint64_t w = t0 + cost - t;
			struct timespec ts = { (time_t)(w / 1000000000ULL),
					       (long)(w % 1000000000ULL) };
			nanosleep(&ts, NULL);
		}
	}
	pthread_mutex_lock(&d->lock);
	d->st.load_ns += now_ns() - t0;
	pthread_mutex_unlock(&d->lock);
	return ret;
}

static int sim_load(void *opaque, const void *buf, size_t len)
{
	struct mfd_dev_seg seg = { buf, 0, len };
	return load_segs(opaque, &seg, 1);
}

static int sim_load_segs(void *opaque, const struct mfd_dev_seg *seg, int nseg)
{
	return load_segs(opaque, seg, nseg);
}

/* Its memory, for placed bytes on both sides (device.h: state_mem). */
static int sim_state_mem(void *opaque, void **base, uint64_t *size)
{
	struct mfd_simdev *d = opaque;
	*base = d->mem;
	*size = d->cfg.state_size;
	return 0;
}

/* ---------------------------------------------------------------- */

int mfd_simdev_new(struct mfd_simdev **out, const struct mfd_simdev_cfg *cfg)
{
	if (!out || !cfg || cfg->state_size == 0 || cfg->precopy_fraction < 0 ||
	    cfg->precopy_fraction > 1 || (cfg->unit_size % 8) != 0)
		return -EINVAL;
	struct mfd_simdev *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->cfg = *cfg;
	if (!d->cfg.unit_size)
		d->cfg.unit_size = 64 << 10;
	if (!d->cfg.caps)
		d->cfg.caps = MFD_DEV_CAP_ALL;
	if (!d->cfg.dma_page)
		d->cfg.dma_page = 4096;
	uint64_t nu =
		(d->cfg.state_size + d->cfg.unit_size - 1) / d->cfg.unit_size;
	if (nu >= NONE) {
		free(d);
		return -EINVAL;
	}
	d->nunits = (uint32_t)nu;
	d->npre = (uint32_t)((double)d->nunits * d->cfg.precopy_fraction);
	if (!(d->cfg.caps & MFD_DEV_CAP_PRE_COPY))
		d->npre = 0;
	d->ver = calloc(d->nunits, sizeof(*d->ver));
	d->sent = calloc(d->nunits, sizeof(*d->sent));
	d->mem = malloc(d->cfg.state_size);
	d->hdrs = malloc((size_t)d->nunits * REC_HDR);
	d->stash = malloc(d->cfg.unit_size);
	if (!d->ver || !d->sent || !d->mem || !d->hdrs || !d->stash)
		goto nomem;
	/* Both sides' memory is there before a migration, as a device's is:
	 * contents at version 0 (the destination's are overwritten by what
	 * it loads). */
	for (uint32_t u = 0; u < d->nunits; u++)
		unit_fill(d, u, 0);
	d->state = MFD_DEV_RUNNING;
	pthread_mutex_init(&d->lock, NULL);
	pthread_cond_init(&d->cv, NULL);
	d->ops = (mfd_device_ops){
		.caps = d->cfg.caps,
		.set_state = sim_set_state,
		.get_state = sim_get_state,
		.reset = sim_reset,
		.get_precopy_info = sim_precopy_info,
		.get_stop_copy_size = sim_stop_copy_size,
		.get_stop_cost = sim_stop_cost,
		.save = sim_save,
		.save_iov = sim_save_iov,
		.load = sim_load,
	};
	if (!d->cfg.no_placed) {
		d->ops.state_mem = sim_state_mem;
		d->ops.load_segs = sim_load_segs;
	}
	if (d->cfg.dma_rate && d->cfg.dma_base && d->cfg.dma_size) {
		d->dma_npages = d->cfg.dma_size / d->cfg.dma_page;
		d->dma_log = calloc((d->dma_npages + 63) / 64, 8);
		if (!d->dma_log || !d->dma_npages)
			goto nomem;
		d->ops.dma_dirty = sim_dma_dirty;
		d->dma_run = true;
		if (pthread_create(&d->dma_thread, NULL, dma_main, d))
			goto nomem;
		d->dma_started = true;
	}
	*out = d;
	return 0;
nomem:
	free(d->dma_log);
	free(d->mem);
	free(d->hdrs);
	free(d->stash);
	free(d->ver);
	free(d->sent);
	free(d);
	return -ENOMEM;
}

void mfd_simdev_free(struct mfd_simdev *d)
{
	if (!d)
		return;
	if (d->dma_started) {
		pthread_mutex_lock(&d->lock);
		d->dma_quit = true;
		pthread_cond_broadcast(&d->cv);
		pthread_mutex_unlock(&d->lock);
		pthread_join(d->dma_thread, NULL);
	}
	pthread_cond_destroy(&d->cv);
	pthread_mutex_destroy(&d->lock);
	free(d->dma_log);
	free(d->mem);
	free(d->hdrs);
	free(d->stash);
	free(d->ver);
	free(d->sent);
	free(d);
}

const mfd_device_ops *mfd_simdev_ops(const struct mfd_simdev *d)
{
	return &d->ops;
}

int mfd_simdev_state(struct mfd_simdev *d)
{
	int s;
	sim_get_state(d, &s);
	return s;
}

void mfd_simdev_touch(struct mfd_simdev *d, uint64_t n)
{
	pthread_mutex_lock(&d->lock);
	touch_locked(d, n);
	pthread_mutex_unlock(&d->lock);
}

uint32_t mfd_simdev_units(const struct mfd_simdev *d)
{
	return d->nunits;
}

uint32_t mfd_simdev_version(struct mfd_simdev *d, uint32_t unit)
{
	pthread_mutex_lock(&d->lock);
	uint32_t v = unit < d->nunits ? d->ver[unit] : NONE;
	pthread_mutex_unlock(&d->lock);
	return v;
}

uint64_t mfd_simdev_digest(struct mfd_simdev *d)
{
	pthread_mutex_lock(&d->lock);
	uint64_t h = mix64(d->cfg.seed ^ d->cfg.state_size);
	for (uint32_t u = 0; u < d->nunits; u++)
		h = mix64(h ^ (((uint64_t)u << 32) | d->ver[u]));
	pthread_mutex_unlock(&d->lock);
	return h;
}

void mfd_simdev_get_stats(struct mfd_simdev *d, struct mfd_simdev_stats *st)
{
	pthread_mutex_lock(&d->lock);
	*st = d->st;
	st->dma_pages = __atomic_load_n(&d->dma_pages, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&d->lock);
}

int mfd_simdev_check(struct mfd_simdev *d)
{
	int ret = 0;
	pthread_mutex_lock(&d->lock);
	for (uint32_t u = 0; !ret && u < d->nunits; u++)
		if (d->ver[u] == NONE ||
		    !content_eq(unit_key(d->cfg.seed, u, d->ver[u]), 0,
				unit_mem(d, u), unit_len(d, u)))
			ret = -EINVAL;
	pthread_mutex_unlock(&d->lock);
	return ret;
}

const void *mfd_simdev_mem(const struct mfd_simdev *d, uint64_t *len)
{
	*len = d->cfg.state_size;
	return d->mem;
}
