/*
 * rc_http_head: the parser of an HTTP/1.x request head (request line and
 * header lines), apart from any I/O so that it can be tested and fuzzed on
 * its own.  The edge's HTTP server (rc_edge_srv.c) finds a whole head in
 * what it received, refuses one with a NUL byte or over 8 KiB, and hands it
 * here.
 *
 * What it accepts is deliberately narrow (the edge serves GET/HEAD of a few
 * paths and the WebSocket upgrade): HTTP/1.0 or 1.1, a token for a method,
 * an absolute-path target, header names that are tokens right before their
 * colon, no control characters (a bare CR or LF above all) in the target or
 * a value but tabs in values, no folded header lines, at most
 * RC_HTTP_HEADERS_MAX headers, and no request body (Transfer-Encoding, or a
 * Content-Length other than 0).  Where another HTTP parser (a proxy in
 * front) could read the same bytes differently, it refuses.
 */
#ifndef RC_HTTP_HEAD_H
#define RC_HTTP_HEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RC_HTTP_HEADERS_MAX 64u

struct rc_http_head {
    const char *method;                     /* "GET", ... */
    const char *target;                     /* path and query */
    size_t path_len;                        /* bytes of target before '?' */
    bool keep;                              /* keep the connection after the answer */
    const char *name[RC_HTTP_HEADERS_MAX];  /* as sent (a token) */
    const char *value[RC_HTTP_HEADERS_MAX]; /* leading and trailing blanks removed */
    unsigned n;
};

/*
 * Parses the head in buf[0, len) in place (NULs are written over the
 * separators; every string of h points into buf).  The caller guarantees
 * the head's shape as the server finds it: it ends with "\r\n\r\n", that is
 * its first occurrence, and no byte of it is NUL.  Returns 0, or the HTTP
 * status to refuse the request with (400, 413, 431, 505) and a reason in
 * *why.
 */
uint16_t rc_http_head_parse(char *buf, size_t len, struct rc_http_head *h, const char **why);

/* The value of header name (case-insensitive; the first of several), or
 * NULL. */
const char *rc_http_head_header(const struct rc_http_head *h, const char *name);

#endif
