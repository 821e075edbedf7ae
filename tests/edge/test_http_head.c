/* Unit tests of rc_http_head: the edge's HTTP request-head parser. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rc_http_head.h"

/* Parses text (a whole head, "\r\n\r\n" at its end) in a buffer of its
 * exact size; the buffer stays valid until the next call. */
static uint16_t parse(const char *text, struct rc_http_head *h, const char **why)
{
    static char *buf;
    free(buf);
    size_t len = strlen(text);
    buf = malloc(len + 1);
    cr_assert_not_null(buf);
    memcpy(buf, text, len + 1);
    *why = NULL;
    return rc_http_head_parse(buf, len, h, why);
}

Test(http_head, request_line_and_headers)
{
    struct rc_http_head h;
    const char *why;
    cr_assert_eq(parse("GET /runs?status=running HTTP/1.1\r\n"
                       "Host: 127.0.0.1:7480\r\n"
                       "Upgrade:  websocket \t\r\n"
                       "X-Empty:\r\n"
                       "\r\n",
                       &h, &why),
                 0, "%s", why);
    cr_assert_str_eq(h.method, "GET");
    cr_assert_str_eq(h.target, "/runs?status=running");
    cr_assert_eq(h.path_len, strlen("/runs"));
    cr_assert(h.keep, "HTTP/1.1 keeps the connection by default");
    cr_assert_eq(h.n, 3);
    cr_assert_str_eq(rc_http_head_header(&h, "host"), "127.0.0.1:7480");
    /* blanks around the value are not part of it */
    cr_assert_str_eq(rc_http_head_header(&h, "UPGRADE"), "websocket");
    cr_assert_str_eq(rc_http_head_header(&h, "x-empty"), "");
    cr_assert_null(rc_http_head_header(&h, "Origin"));
}

Test(http_head, no_headers_and_the_first_of_repeated_ones)
{
    struct rc_http_head h;
    const char *why;
    cr_assert_eq(parse("HEAD /healthz HTTP/1.0\r\n\r\n", &h, &why), 0, "%s", why);
    cr_assert_str_eq(h.method, "HEAD");
    cr_assert_eq(h.n, 0);
    cr_assert_not(h.keep, "HTTP/1.0 closes by default");
    cr_assert_eq(parse("GET / HTTP/1.1\r\nA: 1\r\na: 2\r\n\r\n", &h, &why), 0, "%s", why);
    cr_assert_str_eq(rc_http_head_header(&h, "A"), "1");
}

Test(http_head, connection_header_decides_keep_alive)
{
    struct rc_http_head h;
    const char *why;
    cr_assert_eq(parse("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n", &h, &why), 0);
    cr_assert_not(h.keep);
    cr_assert_eq(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &h, &why), 0);
    cr_assert(h.keep);
    cr_assert_eq(parse("GET /ws HTTP/1.1\r\nConnection: Upgrade\r\n\r\n", &h, &why), 0);
    cr_assert(h.keep);
}

Test(http_head, refusals_say_why)
{
    static const struct {
        const char *head;
        uint16_t status;
    } cases[] = {
        {"GET\r\n\r\n", 400},                                  /* no target */
        {"GET /\r\n\r\n", 400},                                /* no version */
        {"GET / HTTP/1.1 extra\r\n\r\n", 400},                 /* three spaces */
        {"GET / HTTP/2.0\r\n\r\n", 505},                       /* version */
        {"GET / HTTP/1.10\r\n\r\n", 505},                      /* version */
        {"GET / http/1.1\r\n\r\n", 505},                       /* version case */
        {"GET runs HTTP/1.1\r\n\r\n", 400},                    /* relative target */
        {"GET http://h/ HTTP/1.1\r\n\r\n", 400},               /* absolute form */
        {"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400}, /* folded line */
        {"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400},      /* no colon */
        {"GET / HTTP/1.1\r\n: empty name\r\n\r\n", 400},       /* empty name */
        {"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n", 413},  /* a body */
        {"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 413},
        /* a body announced by a second header of the name */
        {"GET / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n", 413},
        /* where a proxy in front could read other headers than we do */
        {"GET / HTTP/1.1\r\nUpgrade : websocket\r\n\r\n", 400},              /* blank before : */
        {"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400},                      /* not a token */
        {"GET / HTTP/1.1\r\nX: a\nTransfer-Encoding: chunked\r\n\r\n", 400}, /* bare LF */
        {"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 400},                          /* bare CR */
        {"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n", 400},                        /* control char */
        {"GET /a\nb HTTP/1.1\r\n\r\n", 400},                                 /* LF in the target */
        {"G(T / HTTP/1.1\r\n\r\n", 400}, /* method not a token */
        {" / HTTP/1.1\r\n\r\n", 400},    /* empty method */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct rc_http_head h;
        const char *why;
        cr_assert_eq(parse(cases[i].head, &h, &why), cases[i].status, "case %zu: %s", i,
                     cases[i].head);
        cr_assert_not_null(why, "case %zu without a reason", i);
    }
    struct rc_http_head h;
    const char *why;
    /* Content-Length: 0 is no body; a tab inside a value is allowed */
    cr_assert_eq(parse("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &h, &why), 0);
    cr_assert_eq(parse("GET / HTTP/1.1\r\nX: a\tb\r\n\r\n", &h, &why), 0, "%s", why);
    cr_assert_str_eq(rc_http_head_header(&h, "x"), "a\tb");
}

Test(http_head, at_most_64_header_lines)
{
    char text[4096];
    size_t n = (size_t)snprintf(text, sizeof(text), "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 64; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "H%d: v\r\n", i);
    snprintf(text + n, sizeof(text) - n, "\r\n");
    struct rc_http_head h;
    const char *why;
    cr_assert_eq(parse(text, &h, &why), 0, "%s", why);
    cr_assert_eq(h.n, RC_HTTP_HEADERS_MAX);
    cr_assert_str_eq(rc_http_head_header(&h, "h63"), "v");
    snprintf(text + n, sizeof(text) - n, "H64: v\r\n\r\n");
    cr_assert_eq(parse(text, &h, &why), 431);
}
