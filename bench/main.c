/* SPDX-License-Identifier: MIT */
/*
 * multifd-bench: migrate a simulated VM from a source to a destination and
 * report times, volumes, rates and CPU use. Only the public API
 * (include/multifd/multifd.h) is used, as a hypervisor would use it.
 *
 * The parts: cli.c (options, --help, the one ordered list of library
 * settings), benchcfg.c (that list applied over the defaults and
 * --config), harness.c (hooks, watchdog, timing, statistics: shared by
 * both runs), local.c (both sides in this process), twohost.c (one side
 * of a two-process run), results.c (what each run reports) and report.c
 * (the JSON or table writer). Around them: vm.c (the RAM image), guest.c
 * (writer threads), devices.c, progress.c and plot.c; kvm/ (--vm kvm: a
 * real KVM guest).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <infiniband/verbs.h>

#include <multifd/multifd.h>

#include "benchcfg.h"
#include "cli.h"
#include "fileinfo.h"
#include "harness.h"
#include "local.h"
#include "twohost.h"
#include "kvm/kvm_bench.h"

/* RDMA needs a device: say so at once, before RAM is mapped and filled. */
static int check_rdma_device(void)
{
	int n = 0;
	struct ibv_device **list = ibv_get_device_list(&n);

	if (list)
		ibv_free_device_list(list);
	if (!list || n == 0) {
		fprintf(stderr,
			"%s: --transport rdma: no RDMA device is present "
			"(ibv_get_device_list found none)\n",
			prog_name);
		return -ENODEV;
	}
	return 0;
}

/*
 * One side's config: library defaults < the bench's defaults (verify on) <
 * --config FILE < the command line in order (benchcfg.c).
 */
static int build_config(const struct bench_opts *o, mfd_config **out)
{
	struct cfg_list defaults = { 0 };
	int err;

	cfg_list_add(&defaults, "verify", "on", "the bench's default");
	err = benchcfg_build(prog_name, &defaults, o->config_path, &o->sets,
			     out);
	cfg_list_free(&defaults);
	return err;
}

static int run(const struct bench_opts *o, mfd_config *scfg,
	       const mfd_config *dcfg)
{
	if (!strcmp(o->transport, "rdma") && check_rdma_device())
		return 1;
	if (o->print_config) {
		benchcfg_print(scfg, stdout);
		return 0;
	}
	if (o->mode != MODE_LOCAL && (o->dev.n || o->dev.vdpa)) {
		fprintf(stderr,
			"%s: --devices: local runs only (both sides "
			"must register the same devices)\n",
			prog_name);
		return 1;
	}
	if (o->kvm.on) /* a real KVM guest (bench/kvm/) */
		return kvm_bench_run(&o->kvm, o,
				     o->mode == MODE_DEST ? dcfg : scfg);
	if (o->mode != MODE_LOCAL)
		return twohost_run(o, o->mode == MODE_SOURCE ? scfg : dcfg);
	return local_run(o, scfg, dcfg);
}

int main(int argc, char **argv)
{
	struct bench_opts o;
	mfd_config *scfg = NULL, *dcfg = NULL;
	int status = EXIT_USAGE;

	cli_parse(argc, argv, &o);
	if (o.mode == MODE_FILE_INFO)
		return file_info_run(o.info_path);
	/* Bad configuration is a usage error: fail before mapping RAM. */
	if (!build_config(&o, &scfg) && !build_config(&o, &dcfg))
		status = run(&o, scfg, dcfg);
	mfd_config_free(scfg);
	mfd_config_free(dcfg);
	cfg_list_free(&o.sets);
	return status;
}
