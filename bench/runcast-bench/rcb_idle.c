/*
 * rcb_idle: many idle WebSocket connections for the `conns` scenario.
 *
 * nng's dialer cannot be told which source address to use for a ws
 * connection in a way we can rely on across 1.5.x, and an nng stream per
 * connection costs the bench memory and threads it does not need for a
 * connection that only sits there.  So these are plain non-blocking sockets:
 * bind() to 127.0.0.x (IP_BIND_ADDRESS_NO_PORT, so the port is chosen per
 * 4-tuple at connect: one source address gives ~28,000 connections to one
 * server port), a hand-written HTTP/1.1 Upgrade, and the 101 checked.  One
 * epoll loop drives at most `PAR` handshakes at a time.  At the end each
 * connection sends a masked close frame (1000) before closing, so the
 * broker sees normal closes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rcb.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define PAR 256

struct rcb_idle {
    int *fd;
    uint32_t n;
};

struct hs {
    int fd;
    uint32_t idx;
    int state; /* 0 connecting, 1 awaiting response */
    size_t got;
    char buf[1024];
};

static int start_conn(const struct sockaddr_in *dst, uint32_t i, uint32_t naddrs)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = 0};
    src.sin_addr.s_addr = htonl(0x7f000002u + (i % naddrs));
    if (bind(fd, (const struct sockaddr *)&src, sizeof(src)) != 0) {
        close(fd);
        return -1;
    }
    if (connect(fd, (const struct sockaddr *)dst, sizeof(*dst)) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

struct rcb_idle *rcb_idle_open(const char *host, int port, const char *path, uint32_t n,
                               uint32_t naddrs, uint32_t *ok, char *err, size_t errlen)
{
    *ok = 0;
    err[0] = 0;
    if (naddrs == 0)
        naddrs = 1;
    struct rcb_idle *c = calloc(1, sizeof(*c));
    c->fd = malloc((n ? n : 1) * sizeof(int));
    for (uint32_t i = 0; i < n; i++)
        c->fd[i] = -1;
    c->n = n;
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &dst.sin_addr);
    char req[512];
    int reqlen = snprintf(req, sizeof(req),
                          "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n",
                          path, host, port);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct hs *slots = calloc(PAR, sizeof(*slots));
    uint32_t next = 0, inflight = 0, failed = 0;
    for (int s = 0; s < PAR; s++)
        slots[s].fd = -1;
    uint64_t last_progress = rcb_now_ns();
    while ((next < n || inflight > 0) && !rcb_expired()) {
        /* fill free slots */
        for (int s = 0; s < PAR && next < n; s++) {
            if (slots[s].fd >= 0)
                continue;
            int fd = start_conn(&dst, next, naddrs);
            if (fd < 0) {
                snprintf(err, errlen, "connect #%u: %s", next, strerror(errno));
                failed++;
                next = n; /* out of fds or addresses: stop opening */
                break;
            }
            slots[s] = (struct hs){.fd = fd, .idx = next++, .state = 0};
            struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)s};
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
            inflight++;
        }
        struct epoll_event evs[PAR];
        int k = epoll_wait(ep, evs, PAR, 200);
        if (k > 0)
            last_progress = rcb_now_ns();
        else if (rcb_now_ns() - last_progress > 10000000000ull) {
            snprintf(err, errlen, "no handshake progress for 10 s (%u in flight)", inflight);
            break;
        }
        for (int e = 0; e < k; e++) {
            struct hs *h = &slots[evs[e].data.u32];
            if (h->fd < 0)
                continue;
            bool fail = false, done = false;
            if (evs[e].events & (EPOLLERR | EPOLLHUP)) {
                fail = true;
            } else if (h->state == 0 && (evs[e].events & EPOLLOUT)) {
                if (write(h->fd, req, (size_t)reqlen) != reqlen) {
                    fail = true;
                } else {
                    h->state = 1;
                    struct epoll_event ev = {.events = EPOLLIN, .data = evs[e].data};
                    epoll_ctl(ep, EPOLL_CTL_MOD, h->fd, &ev);
                }
            } else if (h->state == 1 && (evs[e].events & EPOLLIN)) {
                ssize_t r = read(h->fd, h->buf + h->got, sizeof(h->buf) - 1 - h->got);
                if (r <= 0) {
                    fail = r == 0 || (errno != EAGAIN && errno != EINTR);
                } else {
                    h->got += (size_t)r;
                    h->buf[h->got] = 0;
                    if (strstr(h->buf, "\r\n\r\n") != NULL) {
                        if (strncmp(h->buf, "HTTP/1.1 101", 12) == 0)
                            done = true;
                        else
                            fail = true;
                    } else if (h->got >= sizeof(h->buf) - 1) {
                        fail = true;
                    }
                }
            }
            if (fail || done) {
                epoll_ctl(ep, EPOLL_CTL_DEL, h->fd, NULL);
                if (done) {
                    c->fd[h->idx] = h->fd;
                    (*ok)++;
                } else {
                    if (err[0] == 0) {
                        char *nl = strchr(h->buf, '\r');
                        if (nl)
                            *nl = 0;
                        snprintf(err, errlen, "handshake #%u failed%s%s", h->idx,
                                 h->buf[0] ? ": " : "", h->buf);
                    }
                    close(h->fd);
                    failed++;
                }
                h->fd = -1;
                h->got = 0;
                inflight--;
            }
        }
        if (failed > 100 && failed > *ok / 10) {
            if (err[0] == 0)
                snprintf(err, errlen, "too many failed handshakes");
            break;
        }
    }
    for (int s = 0; s < PAR; s++)
        if (slots[s].fd >= 0)
            close(slots[s].fd);
    free(slots);
    close(ep);
    return c;
}

void rcb_idle_close(struct rcb_idle *c)
{
    if (c == NULL)
        return;
    /* masked close frame, code 1000: FIN|close, MASK|2, key, code ^ key */
    const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
    uint8_t fr[8] = {0x88,
                     0x82,
                     key[0],
                     key[1],
                     key[2],
                     key[3],
                     (uint8_t)(0x03 ^ key[0]),
                     (uint8_t)(0xe8 ^ key[1])};
    for (uint32_t i = 0; i < c->n; i++) {
        if (c->fd[i] < 0)
            continue;
        if (write(c->fd[i], fr, sizeof(fr)) < 0) {
            /* the broker may have closed it already */
        }
        shutdown(c->fd[i], SHUT_WR);
    }
    /* give the broker a moment to answer the closes, then drop them */
    rcb_sleep_ns(200000000);
    for (uint32_t i = 0; i < c->n; i++)
        if (c->fd[i] >= 0)
            close(c->fd[i]);
    free(c->fd);
    free(c);
}
