/* SPDX-License-Identifier: MIT */
/*
 * The stamping test guest (freestanding, no libc). Every vCPU owns the
 * pages i with i % ncpus == its index, in the area from 4 MiB to the end
 * of RAM. It dirties its pages at `rate=` pages per second of guest time
 * (TSC; the VMM appends tsc_khz= and ncpus= to the command line), stamping
 * each with (index, generation), and keeps the generation it wrote in a
 * table at 2 MiB (one u32 per page: the guest's own write log). Between
 * writes it verifies its pages continuously against the table; a page
 * that does not hold what was last written (or zeros, never written) is a
 * bad page. vCPU 0 prints on COM1 every 100 ms of guest time:
 *
 *   stamp seq=N work=W writes=R bad=B pages=P
 *
 * work is pages verified, writes pages stamped, bad pages found bad; all
 * are totals over every vCPU since boot, and seq counts the lines.
 */
#include <stdint.h>

#include "bench/kvm/pvh.h"

#define TABLE_BASE 0x200000ULL
#define AREA_BASE  0x400000ULL
#define PAGE	   4096ULL
#define COM1	   0x3f8
#define MAGIC	   0x5354414d50ULL

struct counters {
	volatile uint64_t work, writes, bad;
	uint64_t pad[5];
};

static struct counters cpu_count[8];

void guest_main(const struct hvm_start_info *si, uint64_t cpu);

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

static void puts_com1(const char *s)
{
	while (*s)
		outb(COM1, (uint8_t)*s++);
}

static void put_u64(uint64_t v)
{
	char buf[24];
	int n = 0;
	do {
		buf[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		outb(COM1, (uint8_t)buf[--n]);
}

static void put_kv(const char *k, uint64_t v)
{
	puts_com1(k);
	put_u64(v);
}

/* Value of "key=" on the command line, or def. */
static uint64_t arg(const char *cmd, const char *key, uint64_t def)
{
	for (const char *p = cmd; p && *p; p++) {
		if (p != cmd && p[-1] != ' ')
			continue;
		const char *k = key, *q = p;
		while (*k && *q == *k)
			k++, q++;
		if (*k || *q != '=')
			continue;
		uint64_t v = 0;
		for (q++; *q >= '0' && *q <= '9'; q++)
			v = v * 10 + (uint64_t)(*q - '0');
		return v;
	}
	return def;
}

static uint64_t check_word(uint64_t i, uint64_t g)
{
	return (i * 0x9e3779b97f4a7c15ULL) ^ g ^ MAGIC;
}

void guest_main(const struct hvm_start_info *si, uint64_t cpu)
{
	const char *cmd = (const char *)(uintptr_t)si->cmdline_paddr;
	uint64_t khz = arg(cmd, "tsc_khz", 1000000);
	uint64_t ncpus = arg(cmd, "ncpus", 1);
	uint64_t rate = arg(cmd, "rate", 1000); /* pages/s, all vCPUs */
	uint64_t mem_end = 0;
	const struct hvm_memmap_entry *mm =
		(const void *)(uintptr_t)si->memmap_paddr;
	for (uint32_t i = 0; i < si->memmap_entries; i++)
		if (mm[i].type == HVM_MEMMAP_TYPE_RAM &&
		    mm[i].addr + mm[i].size > mem_end)
			mem_end = mm[i].addr + mm[i].size;
	uint64_t mem_cap = arg(cmd, "mem", 0) << 20; /* limit the area */
	if (mem_cap && mem_cap < mem_end)
		mem_end = mem_cap;
	if (si->magic != HVM_START_MAGIC || ncpus < 1 || ncpus > 8 ||
	    cpu >= ncpus || mem_end <= AREA_BASE || khz == 0) {
		if (cpu == 0)
			puts_com1("stamp: bad boot parameters\n");
		return;
	}
	uint64_t npages = (mem_end - AREA_BASE) / PAGE;
	volatile uint32_t *gen = (volatile uint32_t *)(uintptr_t)TABLE_BASE;
	struct counters *me = &cpu_count[cpu];
	uint64_t hz = khz * 1000;
	uint64_t tick = hz / 10; /* 100 ms */
	uint64_t t0 = rdtsc(), next_print = t0 + tick, seq = 0;
	uint64_t written = 0, wcur = cpu, vcur = cpu;
	uint64_t my_rate = rate / ncpus + (cpu < rate % ncpus);

	if (cpu == 0) {
		put_kv("stamp: pages=", npages);
		put_kv(" vcpus=", ncpus);
		put_kv(" rate=", rate);
		puts_com1("\n");
	}
	for (;;) {
		uint64_t now = rdtsc();
		uint64_t due = (now - t0) / 1000 * my_rate / (hz / 1000);
		for (int n = 0; n < 64 && written < due; n++, written++) {
			uint32_t g = gen[wcur] + 1;
			volatile uint64_t *p =
				(volatile uint64_t *)(uintptr_t)(AREA_BASE +
								 wcur * PAGE);
			gen[wcur] = g;
			p[0] = wcur;
			p[1] = g;
			p[511] = check_word(wcur, g);
			me->writes++;
			wcur += ncpus;
			if (wcur >= npages)
				wcur = cpu;
		}
		for (int n = 0; n < 16; n++) {
			uint32_t g = gen[vcur];
			volatile uint64_t *p =
				(volatile uint64_t *)(uintptr_t)(AREA_BASE +
								 vcur * PAGE);
			int ok = g ? p[0] == vcur && p[1] == g &&
						 p[511] == check_word(vcur, g)
				   : !p[0] && !p[1] && !p[511];
			if (!ok)
				me->bad++;
			me->work++;
			vcur += ncpus;
			if (vcur >= npages)
				vcur = cpu;
		}
		if (cpu == 0 && now >= next_print) {
			uint64_t w = 0, r = 0, b = 0;
			for (uint64_t c = 0; c < ncpus; c++) {
				w += cpu_count[c].work;
				r += cpu_count[c].writes;
				b += cpu_count[c].bad;
			}
			put_kv("stamp seq=", ++seq);
			put_kv(" work=", w);
			put_kv(" writes=", r);
			put_kv(" bad=", b);
			put_kv(" pages=", npages);
			puts_com1("\n");
			next_print += tick;
			if (now > next_print + 10 * tick)
				next_print = now + tick; /* long pause */
		}
	}
}
