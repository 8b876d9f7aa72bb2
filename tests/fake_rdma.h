/* SPDX-License-Identifier: MIT */
/*
 * The fake fabric (fake_verbs.c) as a transport, for tests only: URIs
 * "fake-rdma:local:PORT" make RDMA channels (multifd/channels/rdma.c) over
 * in-memory queue pairs in this process, so that a whole migration runs
 * over the RDMA protocol with one-sided page writes.
 */
#ifndef MFD_FAKE_RDMA_H
#define MFD_FAKE_RDMA_H

/* Registers the "fake-rdma" scheme; call once before migrating. */
void fake_rdma_install(void);

#endif
