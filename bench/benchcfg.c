/* SPDX-License-Identifier: MIT */
/* The bench's library configuration: see benchcfg.h. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchcfg.h"

static char *xstrdup(const char *s)
{
	char *p = strdup(s);

	if (!p) {
		fprintf(stderr, "multifd-bench: out of memory\n");
		exit(1);
	}
	return p;
}

void cfg_list_add(struct cfg_list *l, const char *key, const char *value,
		  const char *what)
{
	size_t klen = strlen(key), vlen = strlen(value);
	struct cfg_setting *v = realloc(l->v, (l->n + 1) * sizeof(*v));
	char *s;

	if (!v) {
		fprintf(stderr, "multifd-bench: out of memory\n");
		exit(1);
	}
	l->v = v;
	/* One allocation: "key\0value\0". */
	s = malloc(klen + vlen + 2);
	if (!s) {
		fprintf(stderr, "multifd-bench: out of memory\n");
		exit(1);
	}
	memcpy(s, key, klen + 1);
	memcpy(s + klen + 1, value, vlen + 1);
	l->v[l->n++] = (struct cfg_setting){
		.key = s, .value = s + klen + 1, .what = what, .owned = s
	};
}

void cfg_list_add_opt(struct cfg_list *l, const char *key, const char *value,
		      const char *what)
{
	cfg_list_add(l, key, value, what);
	l->v[l->n - 1].option = true;
}

bool cfg_list_add_kv(struct cfg_list *l, const char *kv, const char *what)
{
	const char *eq = strchr(kv, '=');
	char *key;

	if (!eq || eq == kv)
		return false;
	key = xstrdup(kv);
	key[eq - kv] = 0;
	cfg_list_add(l, key, eq + 1, what);
	free(key);
	return true;
}

void cfg_list_free(struct cfg_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].owned);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

const char *cfg_list_last(const struct cfg_list *l, const char *name)
{
	for (size_t i = l->n; i-- > 0;) {
		const char *key = l->v[i].key, *dot = strchr(key, '.');

		if (!strcmp(key, name) || (dot && !strcmp(dot + 1, name)))
			return l->v[i].value;
	}
	return NULL;
}

static int apply(const char *prog, mfd_config *cfg, const struct cfg_list *l)
{
	char why[512];

	for (size_t i = 0; l && i < l->n; i++) {
		const struct cfg_setting *s = &l->v[i];
		int err = mfd_config_set_err(cfg, s->key, s->value, why,
					     sizeof(why));

		if (err && s->option)
			fprintf(stderr, "%s: %s %s: %s\n", prog, s->what,
				s->value, why[0] ? why : mfd_strerror(err));
		else if (err)
			fprintf(stderr, "%s: %s %s=%s: %s\n", prog, s->what,
				s->key, s->value,
				why[0] ? why : mfd_strerror(err));
		if (err)
			return err;
	}
	return 0;
}

int benchcfg_build(const char *prog, const struct cfg_list *bench_defaults,
		   const char *path, const struct cfg_list *cmdline,
		   mfd_config **out)
{
	mfd_config *cfg;
	char why[512];
	int err = mfd_config_new(&cfg);

	if (err) {
		fprintf(stderr, "%s: mfd_config_new: %s\n", prog,
			mfd_strerror(err));
		return err;
	}
	err = apply(prog, cfg, bench_defaults);
	if (!err && path) {
		err = mfd_config_load(cfg, path, why, sizeof(why));
		if (err)
			fprintf(stderr, "%s: %s\n", prog,
				why[0] ? why : mfd_strerror(err));
	}
	if (!err)
		err = apply(prog, cfg, cmdline);
	if (err) {
		mfd_config_free(cfg);
		return err;
	}
	*out = cfg;
	return 0;
}

/* "# " lines of at most 78 columns: INI readers (inih) cut long lines. */
static void print_comment(FILE *f, const char *text)
{
	const char *p = text;
	while (*p) {
		size_t n = strlen(p);
		if (n > 76) {
			n = 76;
			while (n > 20 && p[n] != ' ')
				n--;
		}
		fprintf(f, "# %.*s\n", (int)n, p);
		p += n;
		while (*p == ' ')
			p++;
	}
}

void benchcfg_print(const mfd_config *cfg, FILE *f)
{
	mfd_config_key_info k, j;
	char val[128];

	fprintf(f, "# multifd effective configuration "
		   "(multifd-bench --config FILE loads it)\n");
	/* Sections in order of first appearance, each with all its keys. */
	for (unsigned i = 0; !mfd_config_key(i, &k, sizeof(k)); i++) {
		bool seen = false;

		for (unsigned p = 0; p < i && !seen; p++)
			seen = !mfd_config_key(p, &j, sizeof(j)) &&
			       !strcmp(j.section, k.section);
		if (seen)
			continue;
		fprintf(f, "\n[%s]\n", k.section);
		for (unsigned n = i; !mfd_config_key(n, &j, sizeof(j)); n++) {
			char key[256];

			if (strcmp(j.section, k.section))
				continue;
			snprintf(key, sizeof(key), "%s.%s", j.section, j.name);
			if (mfd_config_get(cfg, key, val, sizeof(val)))
				snprintf(val, sizeof(val), "%s", j.def);
			char doc[1024];
			snprintf(doc, sizeof(doc), "%s (%s, %s, default %s)",
				 j.doc, j.type, j.range, j.def);
			print_comment(f, doc);
			fprintf(f, "%s = %s\n", j.name, val);
		}
	}
}
