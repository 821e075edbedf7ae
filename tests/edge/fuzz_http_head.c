/*
 * libFuzzer target: the edge's HTTP request-head parser (rc_http_head) on
 * arbitrary bytes.  The input is cut the way the server cuts what it
 * receives (up to the first "\r\n\r\n", refused if it holds a NUL) into a
 * buffer of exactly that size, so any read past the head is an ASan error;
 * an accepted head must keep the parser's promises: a token for a method,
 * the target an absolute path without blanks or control characters, the
 * path within it, at most RC_HTTP_HEADERS_MAX headers, names that are
 * tokens, values without surrounding blanks or control characters but tabs
 * (no bare CR or LF: a proxy in front would split the line there), every
 * string inside the buffer, each header found again by name, and no
 * header of any position that announces a body.
 * tests/proto/fuzz.sh builds and runs it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rc_http_head.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *why)
{
    fprintf(stderr, "fuzz_http_head: %s\n", why);
    abort();
}

static void check_inside(const char *s, const char *buf, size_t len)
{
    if (s < buf || s > buf + len || s + strlen(s) > buf + len)
        fail("a string outside the head");
}

/* RFC 9110 5.6.2 tchar, spelled out here apart from the parser's own test */
#define TCHARS "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

static bool blank(char c)
{
    return c == ' ' || c == '\t';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *e = memmem(data, size, "\r\n\r\n", 4);
    if (e == NULL)
        return 0;
    size_t len = (size_t)(e - data) + 4;
    if (memchr(data, 0, len) != NULL)
        return 0; /* the server refuses it before parsing */
    char *buf = malloc(len + 1);
    if (!buf)
        abort();
    memcpy(buf, data, len);
    buf[len] = '\0';
    struct rc_http_head h;
    const char *why = NULL;
    uint16_t st = rc_http_head_parse(buf, len, &h, &why);
    if (st != 0) {
        if (why == NULL || (st != 400 && st != 413 && st != 431 && st != 505))
            fail("a refusal without a reason or with an unexpected status");
        free(buf);
        return 0;
    }
    check_inside(h.method, buf, len);
    check_inside(h.target, buf, len);
    if (h.target[0] != '/' || h.path_len > strlen(h.target))
        fail("a target that is not an absolute path, or a path longer than it");
    for (const char *t = h.target; *t; t++)
        if ((unsigned char)*t < 0x21 || *t == 0x7f)
            fail("a control character or blank in the target");
    if (h.method[0] == '\0' || strspn(h.method, TCHARS) != strlen(h.method))
        fail("a method that is not a token");
    if (h.n > RC_HTTP_HEADERS_MAX)
        fail("more headers than the limit");
    for (unsigned i = 0; i < h.n; i++) {
        const char *n = h.name[i], *v = h.value[i];
        check_inside(n, buf, len);
        check_inside(v, buf, len);
        size_t nl = strlen(n), vl = strlen(v);
        if (nl == 0 || strspn(n, TCHARS) != nl)
            fail("a header name that is not a token");
        if (vl > 0 && (blank(v[0]) || blank(v[vl - 1])))
            fail("a header value with blanks around it");
        for (size_t j = 0; j < vl; j++)
            if (((unsigned char)v[j] < 0x20 && v[j] != '\t') || v[j] == 0x7f)
                fail("a control character (a line break, say) inside a header value");
        /* the lookup finds the first header of that name */
        unsigned first = 0;
        while (strcasecmp(h.name[first], n) != 0)
            first++;
        if (rc_http_head_header(&h, n) != h.value[first])
            fail("a header not found by its own name");
        if (strcasecmp(n, "Transfer-Encoding") == 0 ||
            (strcasecmp(n, "Content-Length") == 0 && strcmp(v, "0") != 0))
            fail("a head that announces a body, accepted");
    }
    free(buf);
    return 0;
}
