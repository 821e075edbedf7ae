/* ws_client: see ws_client.h. */
#include "ws_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>

#include "rc_json.h"

struct ws_client {
    nng_stream *s;
    nng_aio *aio;
    uint8_t *in; /* received bytes not parsed yet */
    size_t in_len, in_cap;
    struct rc_buf msg; /* fragments */
    json_t *pending;   /* elements of an array frame still to hand out */
    size_t pending_i;
    uint64_t frames, arrays;
    bool closed;
    uint16_t close_code;
};

static nng_stream *dial(uint16_t port, nng_aio *aio)
{
    char url[64];
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%u", (unsigned)port);
    nng_stream_dialer *d;
    if (nng_stream_dialer_alloc(&d, url) != 0)
        return NULL;
    nng_aio_set_timeout(aio, 3000);
    nng_stream_dialer_dial(d, aio);
    nng_aio_wait(aio);
    nng_stream *s = nng_aio_result(aio) == 0 ? nng_aio_get_output(aio, 0) : NULL;
    if (s != NULL)
        nng_stream_set_bool(s, NNG_OPT_TCP_NODELAY, true);
    nng_stream_dialer_free(d);
    return s;
}

static int write_all(nng_stream *s, nng_aio *aio, const void *p, size_t len)
{
    const uint8_t *b = p;
    while (len > 0) {
        nng_iov iov = {.iov_buf = (void *)b, .iov_len = len};
        nng_aio_set_iov(aio, 1, &iov);
        nng_aio_set_timeout(aio, 5000);
        nng_stream_send(s, aio);
        nng_aio_wait(aio);
        if (nng_aio_result(aio) != 0)
            return -1;
        size_t n = nng_aio_count(aio);
        b += n;
        len -= n;
    }
    return 0;
}

/* Reads some bytes; returns the count, 0 on timeout, -1 on close/error. */
static int read_some(nng_stream *s, nng_aio *aio, void *p, size_t len, int timeout_ms)
{
    nng_iov iov = {.iov_buf = p, .iov_len = len};
    nng_aio_set_iov(aio, 1, &iov);
    nng_aio_set_timeout(aio, timeout_ms);
    nng_stream_recv(s, aio);
    nng_aio_wait(aio);
    int rv = nng_aio_result(aio);
    if (rv == NNG_ETIMEDOUT)
        return 0;
    if (rv != 0)
        return -1;
    return (int)nng_aio_count(aio);
}

struct ws_client *ws_connect(uint16_t port, const char *path, const char *origin, int *status,
                             char *body, size_t body_len)
{
    *status = 0;
    if (body != NULL && body_len > 0)
        body[0] = '\0';
    struct ws_client *c = calloc(1, sizeof(*c));
    if (c == NULL || nng_aio_alloc(&c->aio, NULL, NULL) != 0) {
        free(c);
        return NULL;
    }
    rc_buf_init(&c->msg);
    c->in_cap = 1 << 16;
    c->in = malloc(c->in_cap);
    c->s = dial(port, c->aio);
    if (c->s == NULL) {
        ws_close(c);
        return NULL;
    }
    char req[1024];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                     path, (unsigned)port, origin ? "Origin: " : "", origin ? origin : "",
                     origin ? "\r\n" : "");
    if (write_all(c->s, c->aio, req, (size_t)n) != 0) {
        ws_close(c);
        return NULL;
    }
    /* Read the response head. */
    char *end = NULL;
    while (end == NULL) {
        int r = read_some(c->s, c->aio, c->in + c->in_len, c->in_cap - c->in_len - 1, 3000);
        if (r <= 0)
            break;
        c->in_len += (size_t)r;
        c->in[c->in_len] = 0;
        end = strstr((char *)c->in, "\r\n\r\n");
    }
    if (end == NULL) {
        ws_close(c);
        return NULL;
    }
    sscanf((char *)c->in, "HTTP/1.%*d %d", status);
    size_t head = (size_t)(end + 4 - (char *)c->in);
    if (*status != 101) {
        /* read the body (Content-Length) */
        const char *cl = strcasestr((char *)c->in, "Content-Length:");
        size_t want = cl ? (size_t)atol(cl + 15) : 0;
        while (c->in_len - head < want) {
            int r = read_some(c->s, c->aio, c->in + c->in_len, c->in_cap - c->in_len - 1, 3000);
            if (r <= 0)
                break;
            c->in_len += (size_t)r;
        }
        c->in[c->in_len] = 0;
        if (body != NULL)
            snprintf(body, body_len, "%s", (char *)c->in + head);
        ws_close(c);
        return NULL;
    }
    memmove(c->in, c->in + head, c->in_len - head);
    c->in_len -= head;
    return c;
}

void ws_close(struct ws_client *c)
{
    if (c == NULL)
        return;
    if (c->s != NULL) {
        nng_stream_close(c->s);
        nng_stream_free(c->s);
    }
    nng_aio_free(c->aio);
    free(c->in);
    rc_buf_fini(&c->msg);
    json_decref(c->pending);
    free(c);
}

int ws_send_raw(struct ws_client *c, const void *p, size_t len)
{
    return write_all(c->s, c->aio, p, len);
}

int ws_send_frame(struct ws_client *c, unsigned op, bool fin, const void *p, size_t len)
{
    uint8_t *f = malloc(len + 14);
    if (f == NULL)
        return -1;
    size_t hl = 0;
    f[hl++] = (uint8_t)((fin ? 0x80 : 0) | op);
    if (len < 126) {
        f[hl++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xffff) {
        f[hl++] = 0x80 | 126;
        f[hl++] = (uint8_t)(len >> 8);
        f[hl++] = (uint8_t)len;
    } else {
        f[hl++] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            f[hl++] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    }
    const uint8_t mask[4] = {0xa1, 0xb2, 0xc3, 0xd4};
    memcpy(f + hl, mask, 4);
    hl += 4;
    for (size_t i = 0; i < len; i++)
        f[hl + i] = ((const uint8_t *)p)[i] ^ mask[i & 3];
    int rv = write_all(c->s, c->aio, f, hl + len);
    free(f);
    return rv;
}

int ws_send_json_as_msgpack(struct ws_client *c, const char *json)
{
    struct rc_buf b;
    rc_buf_init(&b);
    int rv = rc_json_to_msgpack(json, strlen(json), &b);
    if (rv == 0)
        rv = ws_send_frame(c, 0x2, true, b.data, b.len);
    rc_buf_fini(&b);
    return rv;
}

int ws_send_close(struct ws_client *c, uint16_t code)
{
    uint8_t b[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    return ws_send_frame(c, 0x8, true, b, 2);
}

/* Parses one frame from c->in if whole: returns 1 and fills, 0 if more is
 * needed. */
static int take_frame(struct ws_client *c, unsigned *op, bool *fin, struct rc_buf *payload)
{
    if (c->in_len < 2)
        return 0;
    size_t hl = 2;
    uint64_t len = c->in[1] & 0x7f;
    if (len == 126) {
        if (c->in_len < 4)
            return 0;
        len = (uint64_t)c->in[2] << 8 | c->in[3];
        hl = 4;
    } else if (len == 127) {
        if (c->in_len < 10)
            return 0;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | c->in[2 + i];
        hl = 10;
    }
    if (c->in_len < hl + len)
        return 0;
    *op = c->in[0] & 0x0f;
    *fin = (c->in[0] & 0x80) != 0;
    rc_buf_reset(payload);
    rc_buf_append(payload, c->in + hl, (size_t)len);
    memmove(c->in, c->in + hl + len, c->in_len - hl - (size_t)len);
    c->in_len -= hl + (size_t)len;
    return 1;
}

int ws_recv(struct ws_client *c, int timeout_ms, unsigned *op, struct rc_buf *out,
            uint16_t *close_code)
{
    if (c->closed) {
        if (close_code)
            *close_code = c->close_code;
        return -1;
    }
    struct rc_buf fr;
    rc_buf_init(&fr);
    rc_buf_reset(&c->msg);
    unsigned msg_op = 0;
    int result = 0;
    for (;;) {
        unsigned fop;
        bool fin;
        if (take_frame(c, &fop, &fin, &fr)) {
            if (fop == 0x8) {
                c->closed = true;
                c->close_code = fr.len >= 2 ? (uint16_t)(fr.data[0] << 8 | fr.data[1]) : 1005;
                if (close_code)
                    *close_code = c->close_code;
                ws_send_close(c, c->close_code == 1005 ? 1000 : c->close_code);
                result = -1;
                break;
            }
            if (fop == 0x9) {
                ws_send_frame(c, 0xA, true, fr.data, fr.len);
                continue;
            }
            if (fop == 0xA)
                continue;
            if (fop != 0)
                msg_op = fop;
            rc_buf_append(&c->msg, fr.data, fr.len);
            if (fin) {
                *op = msg_op;
                rc_buf_reset(out);
                rc_buf_append(out, c->msg.data, c->msg.len);
                c->frames++;
                result = 1;
                break;
            }
            continue;
        }
        if (c->in_len == c->in_cap) {
            uint8_t *n = realloc(c->in, c->in_cap * 2);
            if (n == NULL) {
                result = -1;
                break;
            }
            c->in = n;
            c->in_cap *= 2;
        }
        int r = read_some(c->s, c->aio, c->in + c->in_len, c->in_cap - c->in_len, timeout_ms);
        if (r == 0) {
            result = 0;
            break;
        }
        if (r < 0) {
            c->closed = true;
            c->close_code = 1006;
            if (close_code)
                *close_code = 1006;
            result = -1;
            break;
        }
        c->in_len += (size_t)r;
    }
    rc_buf_fini(&fr);
    return result;
}

json_t *ws_next(struct ws_client *c, int timeout_ms, uint16_t *close_code)
{
    if (close_code)
        *close_code = 0;
    if (c->pending != NULL) {
        json_t *v = json_incref(json_array_get(c->pending, c->pending_i++));
        if (c->pending_i >= json_array_size(c->pending)) {
            json_decref(c->pending);
            c->pending = NULL;
        }
        return v;
    }
    unsigned op;
    struct rc_buf m, j;
    rc_buf_init(&m);
    rc_buf_init(&j);
    json_t *v = NULL;
    int r = ws_recv(c, timeout_ms, &op, &m, close_code);
    if (r == 1) {
        if (op == 0x2) {
            if (rc_json_from_msgpack(m.data, m.len, &j) == 0)
                v = json_loadb((const char *)j.data, j.len, 0, NULL);
        } else {
            v = json_loadb((const char *)m.data, m.len, 0, NULL);
        }
    }
    rc_buf_fini(&m);
    rc_buf_fini(&j);
    if (v != NULL && json_is_array(v)) {
        c->arrays++;
        c->pending = v;
        c->pending_i = 0;
        if (json_array_size(v) == 0) {
            json_decref(v);
            c->pending = NULL;
            return NULL;
        }
        return ws_next(c, timeout_ms, close_code);
    }
    return v;
}

json_t *ws_next_op(struct ws_client *c, const char *op, int timeout_ms, json_t *skipped)
{
    for (;;) {
        json_t *v = ws_next(c, timeout_ms, NULL);
        if (v == NULL)
            return NULL;
        const char *o = json_string_value(json_object_get(v, "op"));
        if (o != NULL && strcmp(o, op) == 0)
            return v;
        if (skipped != NULL)
            json_array_append(skipped, v);
        json_decref(v);
    }
}

uint64_t ws_frames(const struct ws_client *c)
{
    return c->frames;
}

uint64_t ws_array_frames(const struct ws_client *c)
{
    return c->arrays;
}

uint16_t ws_wait_close(struct ws_client *c, int timeout_ms)
{
    struct rc_buf m;
    rc_buf_init(&m);
    uint16_t code = 0;
    for (;;) {
        unsigned op;
        int r = ws_recv(c, timeout_ms, &op, &m, &code);
        if (r <= 0)
            break;
    }
    rc_buf_fini(&m);
    return code;
}

size_t http_raw(uint16_t port, const void *req, size_t len, char **resp, int timeout_ms)
{
    *resp = NULL;
    nng_aio *aio;
    if (nng_aio_alloc(&aio, NULL, NULL) != 0)
        return 0;
    nng_stream *s = dial(port, aio);
    if (s == NULL) {
        nng_aio_free(aio);
        return 0;
    }
    struct rc_buf b;
    rc_buf_init(&b);
    if (write_all(s, aio, req, len) == 0) {
        char tmp[4096];
        for (;;) {
            int r = read_some(s, aio, tmp, sizeof(tmp), timeout_ms);
            if (r <= 0)
                break;
            rc_buf_append(&b, tmp, (size_t)r);
        }
    }
    size_t n = b.len;
    *resp = malloc(n + 1); /* binary-safe copy (frames hold NUL bytes) */
    if (*resp != NULL) {
        if (n > 0)
            memcpy(*resp, b.data, n);
        (*resp)[n] = '\0';
    }
    rc_buf_fini(&b);
    nng_stream_close(s);
    nng_stream_free(s);
    nng_aio_free(aio);
    return n;
}

int http_get(uint16_t port, const char *path, char **body)
{
    *body = NULL;
    char req[1024];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
    char *resp;
    size_t len = http_raw(port, req, (size_t)n, &resp, 3000);
    int status = 0;
    if (resp != NULL && len > 11 && sscanf(resp, "HTTP/1.%*d %d", &status) == 1) {
        const char *e = strstr(resp, "\r\n\r\n");
        *body = strdup(e ? e + 4 : "");
    }
    free(resp);
    return status;
}
