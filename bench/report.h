/* SPDX-License-Identifier: MIT */
/*
 * Results of one bench run as an ordered list of key/value pairs, printed
 * either as one JSON object or as an aligned table. No external library.
 */
#ifndef BENCH_REPORT_H
#define BENCH_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum report_type {
	REPORT_STR,
	REPORT_U64,
	REPORT_I64,
	REPORT_F64,
	REPORT_BOOL,
	REPORT_RAW, /* JSON text (an array, an object), printed as is */
};

struct report_item {
	const char *key; /* static: not copied */
	enum report_type type;
	int decimals; /* REPORT_F64 */
	union {
		char *s; /* copied (STR, RAW) */
		uint64_t u;
		int64_t i;
		double f;
		bool b;
	};
};

struct report {
	struct report_item *items;
	size_t n, cap;
	bool oom; /* an add failed; printing says so */
};

void report_init(struct report *r);
void report_free(struct report *r);

/* Append one pair; keys keep the order of their first add, and adding a
 * key again replaces its value. */
void report_str(struct report *r, const char *key, const char *v);
void report_u64(struct report *r, const char *key, uint64_t v);
void report_i64(struct report *r, const char *key, int64_t v);
void report_f64(struct report *r, const char *key, double v, int decimals);
void report_bool(struct report *r, const char *key, bool v);
/* v is valid JSON, e.g. "[{...}, ...]"; copied. */
void report_raw(struct report *r, const char *key, const char *json);

/* Exactly one JSON object and a newline. Non-finite numbers print null. */
void report_json(const struct report *r, FILE *f);
/* One "key  value" line per pair, values aligned. */
void report_table(const struct report *r, FILE *f);

/* JSON string literal of s (quotes included). */
void json_write_string(FILE *f, const char *s);

#endif /* BENCH_REPORT_H */
