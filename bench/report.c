/* SPDX-License-Identifier: MIT */
/*
 * Report printing: a minimal JSON writer and a plain table.
 */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

void report_init(struct report *r)
{
	memset(r, 0, sizeof(*r));
}

void report_free(struct report *r)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->items[i].type == REPORT_STR ||
		    r->items[i].type == REPORT_RAW)
			free(r->items[i].s);
	free(r->items);
	memset(r, 0, sizeof(*r));
}

/* The slot for key: the existing one (its old value released) or a new one
 * at the end. NULL when out of memory. */
static struct report_item *slot(struct report *r, const char *key)
{
	for (size_t i = 0; i < r->n; i++) {
		struct report_item *it = &r->items[i];

		if (strcmp(it->key, key))
			continue;
		if (it->type == REPORT_STR || it->type == REPORT_RAW)
			free(it->s);
		return it;
	}
	if (r->n == r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 32;
		struct report_item *p = realloc(r->items, cap * sizeof(*p));

		if (!p) {
			r->oom = true;
			return NULL;
		}
		r->items = p;
		r->cap = cap;
	}
	r->items[r->n].key = key;
	return &r->items[r->n++];
}

void report_str(struct report *r, const char *key, const char *v)
{
	char *s = strdup(v ? v : "");
	struct report_item *it;

	if (!s) {
		r->oom = true;
		return;
	}
	it = slot(r, key);
	if (!it) {
		free(s);
		return;
	}
	it->type = REPORT_STR;
	it->s = s;
}

void report_raw(struct report *r, const char *key, const char *json)
{
	report_str(r, key, json);
	for (size_t i = 0; i < r->n; i++)
		if (r->items[i].key == key && r->items[i].type == REPORT_STR)
			r->items[i].type = REPORT_RAW;
}

void report_u64(struct report *r, const char *key, uint64_t v)
{
	struct report_item *it = slot(r, key);

	if (it) {
		it->type = REPORT_U64;
		it->u = v;
	}
}

void report_i64(struct report *r, const char *key, int64_t v)
{
	struct report_item *it = slot(r, key);

	if (it) {
		it->type = REPORT_I64;
		it->i = v;
	}
}

void report_f64(struct report *r, const char *key, double v, int decimals)
{
	struct report_item *it = slot(r, key);

	if (it) {
		it->type = REPORT_F64;
		it->f = v;
		it->decimals = decimals;
	}
}

void report_bool(struct report *r, const char *key, bool v)
{
	struct report_item *it = slot(r, key);

	if (it) {
		it->type = REPORT_BOOL;
		it->b = v;
	}
}

void json_write_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"':
			fputs("\\\"", f);
			break;
		case '\\':
			fputs("\\\\", f);
			break;
		case '\n':
			fputs("\\n", f);
			break;
		case '\r':
			fputs("\\r", f);
			break;
		case '\t':
			fputs("\\t", f);
			break;
		default:
			if (*p < 0x20)
				fprintf(f, "\\u%04x", *p);
			else
				fputc(*p, f); /* UTF-8 passes through */
		}
	}
	fputc('"', f);
}

/* Text of a number (or bool) item; "null" or "-" when not finite. */
static void format_scalar(const struct report_item *it, char *buf, size_t len,
			  bool json)
{
	switch (it->type) {
	case REPORT_U64:
		snprintf(buf, len, "%" PRIu64, it->u);
		break;
	case REPORT_I64:
		snprintf(buf, len, "%" PRId64, it->i);
		break;
	case REPORT_F64:
		if (isfinite(it->f))
			snprintf(buf, len, "%.*f", it->decimals, it->f);
		else
			snprintf(buf, len, "%s", json ? "null" : "-");
		break;
	case REPORT_BOOL:
		snprintf(buf, len, "%s", it->b ? "true" : "false");
		break;
	case REPORT_STR:
	case REPORT_RAW:
		snprintf(buf, len, "%s", it->s);
		break;
	}
}

void report_json(const struct report *r, FILE *f)
{
	fputc('{', f);
	for (size_t i = 0; i < r->n; i++) {
		fputs(i ? ", " : "", f);
		const struct report_item *it = &r->items[i];
		char buf[64];

		json_write_string(f, it->key);
		fputs(": ", f);
		if (it->type == REPORT_STR) {
			json_write_string(f, it->s);
		} else if (it->type == REPORT_RAW) {
			fputs(it->s, f);
		} else {
			format_scalar(it, buf, sizeof(buf), true);
			fputs(buf, f);
		}
	}
	if (r->oom)
		fputs(r->n ? ", \"report_incomplete\": true"
			   : "\"report_incomplete\": true",
		      f);
	fputs("}\n", f);
}

void report_table(const struct report *r, FILE *f)
{
	int width = 0;

	for (size_t i = 0; i < r->n; i++) {
		int len = (int)strlen(r->items[i].key);

		if (len > width)
			width = len;
	}
	for (size_t i = 0; i < r->n; i++) {
		const struct report_item *it = &r->items[i];

		char buf[64];

		/* Numbers right-aligned in one column, text left. */
		if (it->type == REPORT_STR || it->type == REPORT_BOOL ||
		    it->type == REPORT_RAW) {
			format_scalar(it, buf, sizeof(buf), false);
			fprintf(f, "%-*s  %s\n", width, it->key,
				it->type == REPORT_BOOL ? buf : it->s);
		} else {
			format_scalar(it, buf, sizeof(buf), false);
			fprintf(f, "%-*s  %14s\n", width, it->key, buf);
		}
	}
	if (r->oom)
		fputs("(report incomplete: out of memory)\n", f);
}
