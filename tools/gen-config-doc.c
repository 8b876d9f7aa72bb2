/* SPDX-License-Identifier: MIT */
/*
 * gen-config-doc: prints the key table of docs/config.md from the library's
 * own key table (through the public mfd_config_key()), so the docs cannot
 * drift from the code.
 *
 *   gen-config-doc                 print the table
 *   gen-config-doc --check FILE    exit 1 unless FILE holds exactly it
 *   gen-config-doc --update FILE   rewrite the table inside FILE
 *
 * The table sits between the BEGIN and END marker lines below.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <multifd/multifd.h>

#define BEGIN "<!-- BEGIN generated key table: tools/gen-config-doc -->\n"
#define END   "<!-- END generated key table -->\n"

struct buf {
	char *p;
	size_t n, cap;
};

static void put(struct buf *b, const char *s, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		size_t cap = (b->n + n + 1) * 2;
		char *p = realloc(b->p, cap);

		if (!p) {
			fprintf(stderr, "gen-config-doc: out of memory\n");
			exit(2);
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = 0;
}

static void puts_b(struct buf *b, const char *s)
{
	put(b, s, strlen(s));
}

/* A table cell: '|' escaped so that a row keeps its columns. */
static void cell(struct buf *b, const char *s)
{
	puts_b(b, " ");
	for (; *s; s++) {
		if (*s == '|')
			puts_b(b, "\\|");
		else
			put(b, s, 1);
	}
	puts_b(b, " |");
}

static void table(struct buf *b)
{
	mfd_config_key_info k;

	puts_b(b, "| Section | Name | Type | Default | Range | Meaning |\n"
		  "|---|---|---|---|---|---|\n");
	for (unsigned i = 0; !mfd_config_key(i, &k, sizeof(k)); i++) {
		puts_b(b, "|");
		cell(b, k.section);
		cell(b, k.name);
		cell(b, k.type);
		cell(b, k.def);
		cell(b, k.range);
		cell(b, k.doc);
		puts_b(b, "\n");
	}
}

static char *slurp(const char *path)
{
	struct buf b = { 0 };
	char chunk[4096];
	size_t n;
	FILE *f = fopen(path, "r");

	if (!f) {
		fprintf(stderr, "gen-config-doc: %s: %s\n", path,
			strerror(errno));
		exit(2);
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		put(&b, chunk, n);
	fclose(f);
	if (!b.p)
		puts_b(&b, "");
	return b.p;
}

int main(int argc, char **argv)
{
	struct buf gen = { 0 }, out = { 0 };
	char *doc, *begin, *end;
	bool update;
	int ret;

	table(&gen);
	if (argc == 1) {
		fputs(gen.p, stdout);
		free(gen.p);
		return 0;
	}
	if (argc != 3 ||
	    (strcmp(argv[1], "--check") && strcmp(argv[1], "--update"))) {
		fprintf(stderr,
			"usage: gen-config-doc [--check|--update FILE]\n");
		return 2;
	}
	update = !strcmp(argv[1], "--update");
	doc = slurp(argv[2]);
	ret = 0;
	begin = strstr(doc, BEGIN);
	end = begin ? strstr(begin, END) : NULL;
	if (!begin || !end) {
		fprintf(stderr, "gen-config-doc: %s: no marker lines\n  %s  %s",
			argv[2], BEGIN, END);
		free(gen.p);
		free(doc);
		return 2;
	}
	begin += strlen(BEGIN);
	put(&out, doc, (size_t)(begin - doc));
	puts_b(&out, gen.p);
	puts_b(&out, end);
	if (!update && strcmp(out.p, doc)) {
		fprintf(stderr,
			"gen-config-doc: %s does not match the key table in "
			"the "
			"library. Expected:\n%s"
			"Regenerate it: gen-config-doc --update %s\n",
			argv[2], gen.p, argv[2]);
		ret = 1;
	} else if (update && strcmp(out.p, doc)) {
		FILE *f = fopen(argv[2], "w");

		if (!f || fputs(out.p, f) < 0 || fclose(f)) {
			fprintf(stderr, "gen-config-doc: %s: %s\n", argv[2],
				strerror(errno));
			ret = 2;
		}
	}
	free(gen.p);
	free(out.p);
	free(doc);
	return ret;
}
