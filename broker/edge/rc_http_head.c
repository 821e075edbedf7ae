#include "rc_http_head.h"

#include <string.h>
#include <strings.h>

/* RFC 9110 5.6.2: the characters of a token (a method, a header name). */
static bool is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool is_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (!is_tchar((unsigned char)*s))
            return false;
    return true;
}

/* A control character: none belongs in a target or a header value but a
 * tab in a value.  A bare CR or LF above all: a proxy in front that ends a
 * line there would see another header than we do (request smuggling). */
static bool has_ctl(const char *s, bool tab_ok)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c < 0x20 && !(tab_ok && c == '\t')) || c == 0x7f)
            return true;
    }
    return false;
}

/* The request line: "METHOD SP target SP HTTP/1.x". */
static uint16_t parse_request_line(char *p, struct rc_http_head *h, const char **why)
{
    char *sp1 = strchr(p, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (sp1 == NULL || sp2 == NULL || strchr(sp2 + 1, ' ') != NULL) {
        *why = "malformed request line";
        return 400;
    }
    *sp1 = '\0';
    *sp2 = '\0';
    const char *version = sp2 + 1;
    if (strncmp(version, "HTTP/1.", 7) != 0 || (version[7] != '0' && version[7] != '1') ||
        version[8] != '\0') {
        *why = "only HTTP/1.0 and HTTP/1.1";
        return 505;
    }
    h->keep = version[7] == '1';
    h->method = p;
    h->target = sp1 + 1;
    if (!is_token(h->method)) {
        *why = "malformed method";
        return 400;
    }
    if (h->target[0] != '/') {
        *why = "the target must be an absolute path";
        return 400;
    }
    if (has_ctl(h->target, false)) {
        *why = "a control character in the target";
        return 400;
    }
    h->path_len = strcspn(h->target, "?");
    return 0;
}

/* One header line "name: value" (NUL-terminated at its CRLF). */
static uint16_t parse_header_line(char *p, struct rc_http_head *h, const char **why)
{
    if (*p == ' ' || *p == '\t') {
        *why = "folded header lines are not accepted";
        return 400;
    }
    char *colon = strchr(p, ':');
    if (colon == NULL || colon == p) {
        *why = "malformed header line";
        return 400;
    }
    if (h->n == RC_HTTP_HEADERS_MAX) {
        *why = "too many header lines";
        return 431;
    }
    *colon = '\0';
    /* RFC 9112 5.1: no blank between the name and its colon, which a
     * server must refuse (another parser may read the name differently) */
    if (!is_token(p)) {
        *why = "malformed header name";
        return 400;
    }
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    char *ve = v + strlen(v);
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
        *--ve = '\0';
    if (has_ctl(v, true)) {
        *why = "a control character in a header value";
        return 400;
    }
    h->name[h->n] = p;
    h->value[h->n] = v;
    h->n++;
    return 0;
}

uint16_t rc_http_head_parse(char *buf, size_t len, struct rc_http_head *h, const char **why)
{
    memset(h, 0, sizeof(*h));
    char *end = buf + len;
    /* the head ends with "\r\n\r\n", so each search stops inside it */
    char *eol = strstr(buf, "\r\n");
    if (eol == NULL) {
        *why = "malformed request line";
        return 400;
    }
    *eol = '\0';
    uint16_t st = parse_request_line(buf, h, why);
    if (st != 0)
        return st;
    for (char *p = eol + 2; p < end; p = eol + 2) {
        eol = strstr(p, "\r\n");
        if (eol == NULL || eol == p)
            break; /* the empty line (NULL: not the promised shape) */
        *eol = '\0';
        st = parse_header_line(p, h, why);
        if (st != 0)
            return st;
    }
    const char *cn = rc_http_head_header(h, "Connection");
    if (cn != NULL && strcasestr(cn, "close") != NULL)
        h->keep = false;
    if (cn != NULL && strcasestr(cn, "keep-alive") != NULL)
        h->keep = true;
    /* Every line, not the first of each name: a second Content-Length that
     * a proxy in front would take is a body we would not read. */
    for (unsigned i = 0; i < h->n; i++) {
        if (strcasecmp(h->name[i], "Transfer-Encoding") == 0 ||
            (strcasecmp(h->name[i], "Content-Length") == 0 && strcmp(h->value[i], "0") != 0)) {
            *why = "request bodies are not accepted";
            return 413;
        }
    }
    return 0;
}

const char *rc_http_head_header(const struct rc_http_head *h, const char *name)
{
    for (unsigned i = 0; i < h->n; i++)
        if (strcasecmp(h->name[i], name) == 0)
            return h->value[i];
    return NULL;
}
