/*
 * rc_nngaddr: how the broker names nng addresses in its logs and reports
 * (private to broker/core).  Shared by the nng sockets (rc_ingress.c) and
 * the stream reader (rc_sppull.c), which see the same kinds of peers.
 */
#ifndef RC_NNGADDR_H
#define RC_NNGADDR_H

#include <nng/nng.h>
#include <stddef.h>

/* Writes sa as "127.0.0.1:5555", "[::1]:5555" or "ipc:PATH (LABEL)" into
 * out; label alone ("pipe 7", "conn 3") for any other family. */
void rc_nngaddr_format(const nng_sockaddr *sa, const char *label, char *out, size_t cap);

/* url with its port replaced by port when it is a tcp URL and port > 0,
 * else a copy of url (rc_malloc'd; NULL when memory is short).  How a
 * port-0 URL is reported once bound. */
char *rc_nngaddr_bound_url(const char *url, int port);

#endif
