/*
 * rc_listen_line: reading runcastd's "listening" line.
 *
 * runcastd prints one line on stdout once every listener is up:
 *
 *   runcastd listening: ingest tcp://127.0.0.1:7450, ingest-ack tcp://127.0.0.1:7451, http
 * 127.0.0.1:7480
 *
 * (an entry per URL, the resolved port when a URL asked for port 0).  The
 * programs that start runcastd on port 0 (tests, runcast-bench) learn its
 * ports from it: a port found free and closed by the starter could be taken
 * by any other socket before runcastd binds it.
 */
#ifndef RC_LISTEN_LINE_H
#define RC_LISTEN_LINE_H

#include <stddef.h>

/* Copies the address after the first entry labelled `label` ("ingest",
 * "ingest-ack", "http") of the listening line found in `text` into out
 * (cap bytes, NUL-terminated).  RC_OK, RC_ENOTFOUND when `text` holds no
 * listening line or the line no such entry, RC_ETOOBIG when it does not
 * fit. */
int rc_listen_line_find(const char *text, const char *label, char *out, size_t cap);

/* The port at the end of an address ("tcp://h:P", "h:P"), or -1. */
int rc_listen_line_port(const char *addr);

#endif
