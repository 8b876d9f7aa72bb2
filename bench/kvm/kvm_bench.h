/* SPDX-License-Identifier: MIT */
/* multifd-bench --vm kvm (bench/kvm/kvm_bench.c). */
#ifndef MFD_BENCH_KVM_BENCH_H
#define MFD_BENCH_KVM_BENCH_H

/* Whether the command line asks for --vm kvm. */
int kvm_bench_wanted(int argc, char **argv);
/* The whole run; returns the process exit status (77: KVM not usable). */
int kvm_bench_main(int argc, char **argv);

#endif
