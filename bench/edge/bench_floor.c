/*
 * bench_floor: what one write() per subscriber costs this machine's kernel,
 * with no broker, no nng and no WebSocket library: the floor under W2.
 *
 *   bench_floor [--conns N] [--rate R] [--seconds S] [--size B] [--writers W]
 *
 * N loopback TCP connections (TCP_NODELAY on the sending side, as the edge
 * sets it); W writer threads, each owning N/W of them; reader threads drain
 * the other ends with epoll (as the benchmark's epoll client does).  Each
 * event is one record of B bytes carrying its due time, written with one
 * write() per connection, the way the edge writes one frame per
 * subscriber.
 *
 *   R = 0: events as fast as the writers go: the cost of one write()
 *          (wall time of the writers / writes) and deliveries/s;
 *   R > 0: open loop, event k due at t0 + k/R: latency due -> read for
 *          every delivery (p50/p99/p99.9), and the spread of one event
 *          (last delivery - first), i.e. what serial per-connection sends
 *          alone cost a fan-out of N.
 *
 * Loopback TCP runs the receiver's side of the stack inside the sender's
 * write() (softirq on the same CPU), so the per-write cost includes
 * delivering to the socket and waking the reader.
 */

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "rc_atomic.h"

#define READERS  2
#define MAX_SIZE 4096

static uint32_t nconns = 1000;
static double rate = 500;
static double seconds = 3;
static uint32_t size = 220;
static uint32_t nwriters = 1;

static int *wfd; /* sending ends */
static int *rfd; /* receiving ends */
static uint64_t t0;
static uint64_t nevents;
static _Atomic uint64_t delivered;

/* per event: first and last delivery (relaxed CAS min/max) */
static _Atomic uint64_t *ev_first, *ev_last;

struct lat {
    uint64_t *v;
    size_t n, cap;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t)
{
    struct timespec ts = {.tv_sec = (time_t)(t / 1000000000ull),
                          .tv_nsec = (long)(t % 1000000000ull)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static void lat_add(struct lat *l, uint64_t v)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 1 << 16;
        l->v = realloc(l->v, l->cap * sizeof(*l->v));
        if (l->v == NULL)
            abort();
    }
    l->v[l->n++] = v;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const struct lat *l, double p)
{
    if (l->n == 0)
        return 0;
    size_t i = (size_t)(p / 100.0 * (double)(l->n - 1));
    return (double)l->v[i] / 1000.0;
}

struct reader {
    pthread_t th;
    int ep;
    uint32_t first, count; /* connections [first, first + count) */
    uint8_t (*part)[MAX_SIZE];
    uint32_t *plen;
    struct lat lat;
    _Atomic bool stop;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    struct epoll_event evs[256];
    uint8_t buf[65536];
    while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
        int n = epoll_wait(r->ep, evs, 256, 50);
        for (int i = 0; i < n; i++) {
            uint32_t c = evs[i].data.u32;
            uint32_t li = c - r->first;
            for (;;) {
                ssize_t got = read(rfd[c], buf, sizeof(buf));
                if (got <= 0)
                    break;
                uint64_t now = now_ns();
                size_t off = 0;
                while (off < (size_t)got) {
                    size_t take = size - r->plen[li];
                    if (take > (size_t)got - off)
                        take = (size_t)got - off;
                    memcpy(r->part[li] + r->plen[li], buf + off, take);
                    r->plen[li] += (uint32_t)take;
                    off += take;
                    if (r->plen[li] < size)
                        break;
                    r->plen[li] = 0;
                    uint64_t due, k;
                    memcpy(&due, r->part[li], 8);
                    memcpy(&k, r->part[li] + 8, 8);
                    if (rate > 0 && now >= due)
                        lat_add(&r->lat, now - due);
                    if (k < nevents) {
                        rc_atomic_min_u64(&ev_first[k], now);
                        rc_atomic_max_u64(&ev_last[k], now);
                    }
                    /* relaxed: a progress count, read after the readers stop */
                    atomic_fetch_add_explicit(&delivered, 1, memory_order_relaxed);
                }
                if ((size_t)got < sizeof(buf))
                    break;
            }
        }
    }
    return NULL;
}

struct writer {
    pthread_t th;
    uint32_t first, count;
    uint64_t busy_ns; /* time spent in write() loops */
    uint64_t writes, short_writes;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    uint8_t rec[MAX_SIZE];
    memset(rec, 0x5a, sizeof(rec));
    for (uint64_t k = 0; k < nevents; k++) {
        uint64_t due = rate > 0 ? t0 + (uint64_t)((double)k * 1e9 / rate) : now_ns();
        if (rate > 0)
            sleep_until(due);
        memcpy(rec, &due, 8);
        memcpy(rec + 8, &k, 8);
        uint64_t s = now_ns();
        for (uint32_t i = w->first; i < w->first + w->count; i++) {
            size_t off = 0;
            while (off < size) {
                ssize_t n = write(wfd[i], rec + off, size - off);
                if (n < 0) {
                    if (errno == EINTR)
                        continue;
                    if (errno == EAGAIN) {
                        w->short_writes++;
                        sched_yield();
                        continue;
                    }
                    perror("write");
                    exit(1);
                }
                off += (size_t)n;
                if (off < size)
                    w->short_writes++;
            }
            w->writes++;
        }
        w->busy_ns += now_ns() - s;
    }
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_floor [--conns N] [--rate R] [--seconds S] [--size B] "
                    "[--writers W]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        if (strcmp(argv[i], "--conns") == 0)
            nconns = (uint32_t)atoi(argv[++i]);
        else if (strcmp(argv[i], "--rate") == 0)
            rate = atof(argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--size") == 0)
            size = (uint32_t)atoi(argv[++i]);
        else if (strcmp(argv[i], "--writers") == 0)
            nwriters = (uint32_t)atoi(argv[++i]);
        else
            usage();
    }
    if (nconns == 0 || size < 16 || size > MAX_SIZE || nwriters == 0 || nwriters > nconns)
        usage();
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 2 * nconns + 64 &&
        rl.rlim_max >= 2 * nconns + 64) {
        rl.rlim_cur = 2 * nconns + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    nevents = rate > 0 ? (uint64_t)(rate * seconds) : (uint64_t)(200000 / nconns + 1);
    if (nevents < 10)
        nevents = 10;

    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(ls, 4096) != 0 ||
        getsockname(ls, (struct sockaddr *)&a, &al) != 0) {
        perror("listen");
        return 1;
    }
    wfd = calloc(nconns, sizeof(*wfd));
    rfd = calloc(nconns, sizeof(*rfd));
    int one = 1;
    for (uint32_t i = 0; i < nconns; i++) {
        rfd[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (rfd[i] < 0 || connect(rfd[i], (struct sockaddr *)&a, sizeof(a)) != 0) {
            perror("connect");
            return 1;
        }
        wfd[i] = accept(ls, NULL, NULL);
        if (wfd[i] < 0) {
            perror("accept");
            return 1;
        }
        setsockopt(wfd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        fcntl(wfd[i], F_SETFL, fcntl(wfd[i], F_GETFL) | O_NONBLOCK);
        fcntl(rfd[i], F_SETFL, fcntl(rfd[i], F_GETFL) | O_NONBLOCK);
    }
    ev_first = malloc(nevents * sizeof(*ev_first));
    ev_last = malloc(nevents * sizeof(*ev_last));
    for (uint64_t k = 0; k < nevents; k++) {
        atomic_init(&ev_first[k], UINT64_MAX);
        atomic_init(&ev_last[k], 0);
    }

    struct reader rd[READERS];
    memset(rd, 0, sizeof(rd));
    for (uint32_t r = 0; r < READERS; r++) {
        rd[r].first = nconns * r / READERS;
        rd[r].count = nconns * (r + 1) / READERS - rd[r].first;
        rd[r].ep = epoll_create1(0);
        rd[r].part = calloc(rd[r].count ? rd[r].count : 1, sizeof(*rd[r].part));
        rd[r].plen = calloc(rd[r].count ? rd[r].count : 1, sizeof(*rd[r].plen));
        for (uint32_t i = rd[r].first; i < rd[r].first + rd[r].count; i++) {
            struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
            epoll_ctl(rd[r].ep, EPOLL_CTL_ADD, rfd[i], &ev);
        }
        pthread_create(&rd[r].th, NULL, reader_main, &rd[r]);
    }
    struct writer *wr = calloc(nwriters, sizeof(*wr));
    t0 = now_ns() + 20000000ull;
    uint64_t start = now_ns();
    for (uint32_t w = 0; w < nwriters; w++) {
        wr[w].first = nconns * w / nwriters;
        wr[w].count = nconns * (w + 1) / nwriters - wr[w].first;
        pthread_create(&wr[w].th, NULL, writer_main, &wr[w]);
    }
    for (uint32_t w = 0; w < nwriters; w++)
        pthread_join(wr[w].th, NULL);
    uint64_t wrote_end = now_ns();
    uint64_t expect = nevents * nconns;
    uint64_t dl = now_ns() + 10000000000ull;
    while (atomic_load_explicit(&delivered, memory_order_relaxed) < expect && now_ns() < dl)
        usleep(1000);
    uint64_t end = now_ns();
    for (uint32_t r = 0; r < READERS; r++) {
        atomic_store_explicit(&rd[r].stop, true, memory_order_relaxed);
        pthread_join(rd[r].th, NULL);
    }

    uint64_t writes = 0, busy = 0, shorts = 0;
    for (uint32_t w = 0; w < nwriters; w++) {
        writes += wr[w].writes;
        busy += wr[w].busy_ns;
        shorts += wr[w].short_writes;
    }
    uint64_t got = atomic_load_explicit(&delivered, memory_order_relaxed);
    printf("bench_floor: %u conns, %u writers, %u-byte records, %llu events, rate %s\n", nconns,
           nwriters, size, (unsigned long long)nevents, rate > 0 ? "open loop" : "max");
    if (rate > 0)
        printf("  offered            %.0f events/s = %.0f deliveries/s\n", rate, rate * nconns);
    printf("  delivered          %llu/%llu\n", (unsigned long long)got, (unsigned long long)expect);
    printf("  write() cost       %.2f us per write (writer busy time / writes; %llu short)\n",
           (double)busy / 1000.0 / (double)(writes ? writes : 1), (unsigned long long)shorts);
    if (rate == 0)
        printf("  deliveries/s       %.0f (writes done in %.1f ms, all read in %.1f ms)\n",
               (double)got * 1e9 / (double)(end - start), (double)(wrote_end - start) / 1e6,
               (double)(end - start) / 1e6);
    struct lat all = {0}, spread = {0}, firsts = {0};
    for (uint32_t r = 0; r < READERS; r++)
        for (size_t i = 0; i < rd[r].lat.n; i++)
            lat_add(&all, rd[r].lat.v[i]);
    for (uint64_t k = 0; k < nevents; k++) {
        uint64_t f = atomic_load_explicit(&ev_first[k], memory_order_relaxed);
        uint64_t l = atomic_load_explicit(&ev_last[k], memory_order_relaxed);
        if (f == UINT64_MAX)
            continue;
        lat_add(&spread, l - f);
        uint64_t due = t0 + (uint64_t)((double)k * 1e9 / (rate > 0 ? rate : 1));
        if (rate > 0 && f >= due)
            lat_add(&firsts, f - due);
    }
    qsort(all.v, all.n, sizeof(uint64_t), cmp_u64);
    qsort(spread.v, spread.n, sizeof(uint64_t), cmp_u64);
    qsort(firsts.v, firsts.n, sizeof(uint64_t), cmp_u64);
    if (rate > 0) {
        printf("  latency us         p50 %.0f  p99 %.0f  p99.9 %.0f  max %.0f  (%zu deliveries)\n",
               pct(&all, 50), pct(&all, 99), pct(&all, 99.9), pct(&all, 100), all.n);
        printf("  first delivery us  p50 %.0f  p99 %.0f\n", pct(&firsts, 50), pct(&firsts, 99));
    }
    printf("  spread us          p50 %.0f  p99 %.0f  (last - first delivery of one event)\n",
           pct(&spread, 50), pct(&spread, 99));
    for (uint32_t i = 0; i < nconns; i++) {
        close(wfd[i]);
        close(rfd[i]);
    }
    close(ls);
    return got == expect ? 0 : 1;
}
