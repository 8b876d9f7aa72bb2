/* SPDX-License-Identifier: MIT */
/*
 * The bench's library configuration: defaults < the bench's own defaults <
 * --config FILE < command line (--KEY VALUE, --set KEY=VALUE, ... in
 * command-line order, the last one winning). The one range check is the
 * library's (mfd_config_set_err()). Public API only.
 */
#ifndef BENCH_BENCHCFG_H
#define BENCH_BENCHCFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <multifd/multifd.h>

/* One command-line setting of a library key. */
struct cfg_setting {
	const char *key;   /* "channels" or "migration.channels" */
	const char *value; /* as given */
	const char *what;  /* the option that gave it, for messages */
	bool option;	   /* given as "--KEY VALUE" (else KEY=VALUE) */
	char *owned;	   /* storage to free, or NULL */
};

struct cfg_list {
	struct cfg_setting *v;
	size_t n;
};

/* Appends a setting; copies key and value. Exits on out-of-memory. */
void cfg_list_add(struct cfg_list *l, const char *key, const char *value,
		  const char *what);
/* The same for a setting given as the option what ("--channels"): its
 * messages say "--channels VALUE". */
void cfg_list_add_opt(struct cfg_list *l, const char *key, const char *value,
		      const char *what);
/* "key=value" as given to --set; false when it is not of that form. */
bool cfg_list_add_kv(struct cfg_list *l, const char *kv, const char *what);
void cfg_list_free(struct cfg_list *l);
/* The value of the last setting of name ("KEY" or "SECTION.KEY" both
 * match), or NULL. Valid until cfg_list_free(). */
const char *cfg_list_last(const struct cfg_list *l, const char *name);

/*
 * Builds one side's config: library defaults, then bench_defaults, then
 * the file at path (when non-NULL), then cmdline. Prints the reason for
 * the first error to stderr (prefixed with prog) and returns it.
 */
int benchcfg_build(const char *prog, const struct cfg_list *bench_defaults,
		   const char *path, const struct cfg_list *cmdline,
		   mfd_config **out);
/* Writes every key's effective value as an INI file mfd_config_load()
 * accepts, each key preceded by a comment with its meaning and range. */
void benchcfg_print(const mfd_config *cfg, FILE *f);

#endif /* BENCH_BENCHCFG_H */
