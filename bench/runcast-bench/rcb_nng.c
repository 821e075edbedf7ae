/*
 * rcb_nng: see rcb_nng.h.
 */
#include "rcb_nng.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <stdio.h>
#include <stdlib.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef RCB_HAVE_CLIENT
#include "runcast.h"
#endif

/* ---- PULL sink ----
 *
 * The raw baseline's receiver.  By default it runs in a process of its own
 * (this program re-executed with --sink-child), as the broker does: in the
 * publishers' process the sink shares nng's task threads with the PUSH
 * pipes, which measured 10-12 us of CPU per message for publishers + sink
 * against 6-7 us split over two processes, and 65-117 k msg/s against
 * 150-215 k (notes/ingest.md), so an in-process sink understates what the
 * transport carries.  --raw-sink thread keeps the old in-process sink. */

/* What a dialer uses for a listener on url: for tcp port 0 the port the
 * kernel picked while binding (so no other socket can take it between
 * choosing and listening, as a port found free and closed could be). */
static void bound_url(char *out, size_t len, const char *url, nng_listener l)
{
    int port = 0;
    const char *colon = strrchr(url, ':');
    if (strncmp(url, "tcp://", 6) == 0 && colon != NULL &&
        nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port) == 0)
        snprintf(out, len, "%.*s:%d", (int)(colon - url), url, port);
    else
        snprintf(out, len, "%s", url);
}

/* The counters; in a process sink a MAP_SHARED memfd mapping both processes
 * see (lock-free 64-bit atomics work across processes on one host). */
struct sink_counts {
    _Atomic uint64_t msgs, bytes; /* relaxed: totals only, polled */
};

struct sink_aio {
    struct rcb_sink *k;
    nng_aio *aio;
};

/* A baseline receiver in a process of its own (`runcast-bench --sink-child`
 * or `--echo-child`): in the publishers' process it shared nng's task
 * threads with them and understated the transport by half. */
struct child {
    pid_t pid; /* -1: none */
    int ctl;   /* its stdin: closing it stops the child; -1: none */
};

/* Closes the child's stdin (it closes its socket and exits) and reaps it;
 * SIGKILL after 5 s. */
static void child_stop(struct child *c)
{
    if (c->ctl >= 0)
        close(c->ctl);
    c->ctl = -1;
    if (c->pid <= 0)
        return;
    uint64_t deadline = rcb_now_ns() + 5000000000ull;
    int st;
    while (waitpid(c->pid, &st, WNOHANG) == 0) {
        if (rcb_now_ns() > deadline) {
            kill(c->pid, SIGKILL);
            waitpid(c->pid, &st, 0);
            break;
        }
        rcb_sleep_ns(2000000);
    }
    c->pid = -1;
}

/* Runs this program (or rcb_o.sink_exe) with argv_tail (mode first) and
 * reads the child's one line, which must start with "<prefix> " and give
 * the bound address: copied to url.  keep_fd is inherited (the sink's
 * counters).  0, or -1 with nothing left running. */
static int child_start(const char *const *argv_tail, const char *prefix, int keep_fd,
                       struct child *c, char *url, size_t urlcap)
{
    c->pid = -1;
    c->ctl = -1;
    char self[PATH_MAX];
    if (rcb_o.sink_exe != NULL) {
        snprintf(self, sizeof(self), "%s", rcb_o.sink_exe);
    } else {
        ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (sl <= 0)
            return -1;
        self[sl] = '\0';
    }
    const char *argv[8] = {self};
    size_t n = 1;
    for (; argv_tail[n - 1] != NULL && n < 7; n++)
        argv[n] = argv_tail[n - 1];
    argv[n] = NULL;
    int in[2] = {-1, -1}, out[2] = {-1, -1};
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0)
        goto fail;
    pid_t pid = fork();
    if (pid < 0)
        goto fail;
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        (void)keep_fd; /* not CLOEXEC: inherited as is */
        execv(self, (char *const *)argv);
        _exit(127);
    }
    c->pid = pid;
    close(in[0]);
    close(out[1]);
    c->ctl = in[1];
    /* the child's one line, within 10 s */
    char line[400];
    size_t len = 0;
    uint64_t deadline = rcb_now_ns() + 10000000000ull;
    while (len < sizeof(line) - 1 && (len == 0 || line[len - 1] != '\n')) {
        struct pollfd p = {.fd = out[0], .events = POLLIN};
        int64_t left = (int64_t)(deadline - rcb_now_ns()) / 1000000;
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        ssize_t r = read(out[0], line + len, sizeof(line) - 1 - len);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    line[len] = '\0';
    close(out[0]);
    size_t pl = strlen(prefix);
    if (strncmp(line, prefix, pl) != 0 || line[pl] != ' ') {
        rcb_log("error: raw %s process: %s", prefix, len ? line : "no answer");
        child_stop(c);
        return -1;
    }
    line[strcspn(line, "\n")] = '\0';
    snprintf(url, urlcap, "%s", line + pl + 1);
    return 0;
fail:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (out[i] >= 0)
            close(out[i]);
    }
    return -1;
}

/* The child's side after it listens: until the parent closes our stdin (or
 * dies: PR_SET_PDEATHSIG). */
static void child_wait_for_parent(void)
{
    char b[64];
    while (read(0, b, sizeof(b)) > 0 || errno == EINTR)
        ;
}

struct rcb_sink {
    char url[256]; /* what publishers dial: the bound port for tcp port 0 */
    struct sink_counts *c;
    /* in-process receiver (thread mode, or the child itself) */
    nng_socket s;
    int n;
    struct sink_aio *a;
    _Atomic bool stop; /* relaxed: the callbacks stop re-posting; nng_aio_stop orders the rest */
    struct sink_counts own;
    struct child proc; /* process mode (the counters are shared with it) */
};

static void sink_cb(void *arg)
{
    struct sink_aio *a = arg;
    if (nng_aio_result(a->aio) != 0)
        return;
    nng_msg *m = nng_aio_get_msg(a->aio);
    atomic_fetch_add_explicit(&a->k->c->bytes, nng_msg_len(m), memory_order_relaxed);
    atomic_fetch_add_explicit(&a->k->c->msgs, 1, memory_order_relaxed);
    nng_msg_free(m);
    if (!atomic_load_explicit(&a->k->stop, memory_order_relaxed))
        nng_recv_aio(a->k->s, a->aio);
}

/* Listens and starts the receives in this process; counts into c. */
static struct rcb_sink *sink_local(const char *url, int naio, struct sink_counts *c)
{
    struct rcb_sink *k = calloc(1, sizeof(*k));
    k->proc.pid = -1;
    k->proc.ctl = -1;
    k->c = c != NULL ? c : &k->own;
    if (nng_pull0_open(&k->s) != 0) {
        free(k);
        return NULL;
    }
    nng_socket_set_size(k->s, NNG_OPT_RECVMAXSZ, 8u << 20);
    nng_socket_set_int(k->s, NNG_OPT_RECVBUF, 1024);
    nng_listener l;
    if (nng_listen(k->s, url, &l, 0) != 0) {
        nng_close(k->s);
        free(k);
        return NULL;
    }
    bound_url(k->url, sizeof(k->url), url, l);
    k->n = naio;
    k->a = calloc((size_t)naio, sizeof(*k->a));
    for (int i = 0; i < naio; i++) {
        k->a[i].k = k;
        nng_aio_alloc(&k->a[i].aio, sink_cb, &k->a[i]);
        nng_recv_aio(k->s, k->a[i].aio);
    }
    return k;
}

static void sink_local_free(struct rcb_sink *k)
{
    atomic_store_explicit(&k->stop, true, memory_order_relaxed);
    for (int i = 0; i < k->n; i++)
        nng_aio_stop(k->a[i].aio);
    nng_close(k->s);
    for (int i = 0; i < k->n; i++)
        nng_aio_free(k->a[i].aio);
    free(k->a);
    free(k);
}

int rcb_sink_child_main(const char *url, int naio, int fd)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    struct sink_counts *c = mmap(NULL, sizeof(*c), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (c == MAP_FAILED)
        return 1;
    struct rcb_sink *k = sink_local(url, naio, c);
    if (k == NULL) {
        printf("error cannot listen on %s\n", url);
        fflush(stdout);
        return 1;
    }
    printf("sink %s\n", k->url);
    fflush(stdout);
    child_wait_for_parent();
    sink_local_free(k);
    munmap(c, sizeof(*c));
    return 0;
}

/* Starts `runcast-bench --sink-child URL NAIO FD` (FD: the shared counters). */
static struct rcb_sink *sink_process(const char *url, int naio)
{
    struct rcb_sink *k = calloc(1, sizeof(*k));
    k->proc.pid = -1;
    k->proc.ctl = -1;
    int fd = memfd_create("rcb-sink", 0); /* no CLOEXEC: the child maps it */
    if (fd < 0 || ftruncate(fd, sizeof(struct sink_counts)) != 0)
        goto fail;
    k->c = mmap(NULL, sizeof(*k->c), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (k->c == MAP_FAILED) {
        k->c = NULL;
        goto fail;
    }
    char na[16], fds[16];
    snprintf(na, sizeof(na), "%d", naio);
    snprintf(fds, sizeof(fds), "%d", fd);
    const char *args[] = {"--sink-child", url, na, fds, NULL};
    if (child_start(args, "sink", fd, &k->proc, k->url, sizeof(k->url)) != 0)
        goto fail;
    close(fd);
    return k;
fail:
    if (fd >= 0)
        close(fd);
    if (k->c != NULL)
        munmap(k->c, sizeof(*k->c));
    free(k);
    return NULL;
}

struct rcb_sink *rcb_sink_new(const char *url, int naio)
{
    return rcb_o.sink_thread ? sink_local(url, naio, NULL) : sink_process(url, naio);
}

const char *rcb_sink_url(const struct rcb_sink *k)
{
    return k->url;
}

pid_t rcb_sink_pid(const struct rcb_sink *k)
{
    return k->proc.pid > 0 ? k->proc.pid : getpid();
}

uint64_t rcb_sink_msgs(struct rcb_sink *k)
{
    return atomic_load_explicit(&k->c->msgs, memory_order_relaxed);
}

uint64_t rcb_sink_bytes(struct rcb_sink *k)
{
    return atomic_load_explicit(&k->c->bytes, memory_order_relaxed);
}

void rcb_sink_free(struct rcb_sink *k)
{
    if (k == NULL)
        return;
    if (k->proc.pid < 0 && k->c == &k->own) {
        sink_local_free(k);
        return;
    }
    child_stop(&k->proc);
    if (k->c != NULL)
        munmap(k->c, sizeof(*k->c));
    free(k);
}

/* ---- REP echo ---- */

struct echo_ctx {
    struct rcb_echo *e;
    nng_ctx ctx;
    nng_aio *aio;
    bool sending; /* callback only */
};

struct rcb_echo {
    nng_socket s;
    char url[256]; /* the bound port for tcp port 0 */
    int n;
    struct echo_ctx *c;
    _Atomic bool stop;
    struct child proc; /* process mode: the echo runs there, not here */
};

/* A reply shaped like the broker's ack: {ok, epoch, results: [{seq}...]} for
 * as many events as the request held (counted from its array header). */
static nng_msg *echo_reply(nng_msg *req)
{
    const uint8_t *p = nng_msg_body(req);
    size_t len = nng_msg_len(req);
    uint32_t n = 1;
    struct rcb_mp r = {p, p + len};
    if (rcb_mp_is_array(&r))
        rcb_mp_array(&r, &n);
    struct rc_buf b;
    rc_buf_init(&b);
    static const uint8_t head[] = {0x83, 0xa2, 'o',  'k', 0xc3, 0xa5, 'e', 'p', 'o', 'c',
                                   'h',  0x01, 0xa7, 'r', 'e',  's',  'u', 'l', 't', 's'};
    rc_buf_append(&b, head, sizeof(head));
    rcb_array_header(&b, n);
    for (uint32_t i = 0; i < n; i++) {
        static const uint8_t res[] = {0x81, 0xa3, 's', 'e', 'q', 0xce, 0, 0, 0, 1};
        rc_buf_append(&b, res, sizeof(res));
    }
    nng_msg *m = NULL;
    if (nng_msg_alloc(&m, 0) == 0)
        nng_msg_append(m, b.data, b.len);
    rc_buf_fini(&b);
    return m;
}

static void echo_cb(void *arg)
{
    struct echo_ctx *c = arg;
    int rv = nng_aio_result(c->aio);
    if (atomic_load_explicit(&c->e->stop, memory_order_relaxed))
        return;
    if (c->sending) {
        c->sending = false;
        if (rv != 0)
            nng_msg_free(nng_aio_get_msg(c->aio));
        nng_ctx_recv(c->ctx, c->aio);
        return;
    }
    if (rv != 0) {
        if (rv != NNG_ECLOSED)
            nng_ctx_recv(c->ctx, c->aio);
        return;
    }
    nng_msg *req = nng_aio_get_msg(c->aio);
    nng_msg *rep = echo_reply(req);
    nng_msg_free(req);
    c->sending = true;
    nng_aio_set_msg(c->aio, rep);
    nng_ctx_send(c->ctx, c->aio);
}

/* Listens and answers in this process. */
static struct rcb_echo *echo_local(const char *url, int nctx)
{
    struct rcb_echo *e = calloc(1, sizeof(*e));
    e->proc.pid = -1;
    e->proc.ctl = -1;
    if (nng_rep0_open(&e->s) != 0) {
        free(e);
        return NULL;
    }
    nng_socket_set_size(e->s, NNG_OPT_RECVMAXSZ, 8u << 20);
    nng_listener l;
    if (nng_listen(e->s, url, &l, 0) != 0) {
        nng_close(e->s);
        free(e);
        return NULL;
    }
    bound_url(e->url, sizeof(e->url), url, l);
    e->n = nctx;
    e->c = calloc((size_t)nctx, sizeof(*e->c));
    for (int i = 0; i < nctx; i++) {
        e->c[i].e = e;
        nng_ctx_open(&e->c[i].ctx, e->s);
        nng_aio_alloc(&e->c[i].aio, echo_cb, &e->c[i]);
        nng_ctx_recv(e->c[i].ctx, e->c[i].aio);
    }
    return e;
}

struct rcb_echo *rcb_echo_new(const char *url, int nctx)
{
    if (rcb_o.sink_thread)
        return echo_local(url, nctx);
    struct rcb_echo *e = calloc(1, sizeof(*e));
    char nc[16];
    snprintf(nc, sizeof(nc), "%d", nctx);
    const char *args[] = {"--echo-child", url, nc, NULL};
    if (child_start(args, "echo", -1, &e->proc, e->url, sizeof(e->url)) != 0) {
        free(e);
        return NULL;
    }
    return e;
}

int rcb_echo_child_main(const char *url, int nctx)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    struct rcb_echo *e = echo_local(url, nctx);
    if (e == NULL) {
        printf("error cannot listen on %s\n", url);
        fflush(stdout);
        return 1;
    }
    printf("echo %s\n", e->url);
    fflush(stdout);
    child_wait_for_parent();
    rcb_echo_free(e);
    return 0;
}

pid_t rcb_echo_pid(const struct rcb_echo *e)
{
    return e->proc.pid > 0 ? e->proc.pid : getpid();
}

const char *rcb_echo_url(const struct rcb_echo *e)
{
    return e->url;
}

void rcb_echo_free(struct rcb_echo *e)
{
    if (e == NULL)
        return;
    if (e->proc.pid > 0) {
        child_stop(&e->proc);
        free(e);
        return;
    }
    atomic_store(&e->stop, true);
    for (int i = 0; i < e->n; i++)
        nng_aio_stop(e->c[i].aio);
    for (int i = 0; i < e->n; i++)
        nng_ctx_close(e->c[i].ctx);
    nng_close(e->s);
    for (int i = 0; i < e->n; i++)
        nng_aio_free(e->c[i].aio);
    free(e->c);
    free(e);
}

/* ---- acks ---- */

bool rcb_parse_ack(const void *buf, size_t len, uint32_t *accepted, uint64_t *seq_sum,
                   uint32_t *results, char *err, size_t errlen)
{
    *accepted = 0;
    *seq_sum = 0;
    *results = 0;
    struct rcb_mp r = {buf, (const uint8_t *)buf + len};
    uint32_t n;
    if (!rcb_mp_map(&r, &n))
        return false;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        if (!rcb_mp_str(&r, &k, &kl))
            return false;
        if (kl == 7 && memcmp(k, "results", 7) == 0) {
            uint32_t m;
            if (!rcb_mp_array(&r, &m))
                return false;
            *results = m;
            for (uint32_t j = 0; j < m; j++) {
                uint32_t f;
                if (!rcb_mp_map(&r, &f))
                    return false;
                for (uint32_t q = 0; q < f; q++) {
                    const char *fk;
                    uint32_t fkl;
                    if (!rcb_mp_str(&r, &fk, &fkl))
                        return false;
                    uint64_t seq;
                    if (fkl == 3 && memcmp(fk, "seq", 3) == 0 && rcb_mp_uint(&r, &seq)) {
                        (*accepted)++;
                        *seq_sum += seq;
                        continue;
                    }
                    if (fkl == 5 && memcmp(fk, "error", 5) == 0 && err && err[0] == 0) {
                        /* keep the first error's message */
                        struct rcb_mp t = r;
                        uint32_t em;
                        if (rcb_mp_map(&t, &em))
                            for (uint32_t z = 0; z < em; z++) {
                                const char *ek, *ev;
                                uint32_t ekl, evl;
                                if (!rcb_mp_str(&t, &ek, &ekl))
                                    break;
                                if (rcb_mp_str(&t, &ev, &evl)) {
                                    if ((ekl == 7 && memcmp(ek, "message", 7) == 0) ||
                                        (ekl == 4 && memcmp(ek, "code", 4) == 0 && !err[0]))
                                        snprintf(err, errlen, "%.*s", (int)evl, ev);
                                } else if (!rcb_mp_skip(&t)) {
                                    break;
                                }
                            }
                    }
                    if (!rcb_mp_skip(&r))
                        return false;
                }
            }
            continue;
        }
        if (!rcb_mp_skip(&r))
            return false;
    }
    return true;
}

int rcb_req_open(nng_socket *s, const char *url)
{
    int rv = nng_req0_open(s);
    if (rv != 0)
        return rv;
    nng_socket_set_ms(*s, NNG_OPT_REQ_RESENDTIME, 60000);
    nng_socket_set_ms(*s, NNG_OPT_RECVTIMEO, 10000);
    nng_socket_set_ms(*s, NNG_OPT_SENDTIMEO, 10000);
    nng_socket_set_size(*s, NNG_OPT_RECVMAXSZ, 8u << 20);
    rv = nng_dial(*s, url, NULL, 0);
    if (rv != 0)
        nng_close(*s);
    return rv;
}

/* One request: send buf, wait for the reply, parse it. */
static int req_once(nng_socket s, const void *buf, size_t len, uint32_t *accepted,
                    uint64_t *seq_sum, char *err, size_t errlen)
{
    nng_msg *m;
    int rv = nng_msg_alloc(&m, 0);
    if (rv != 0)
        return rv;
    nng_msg_append(m, buf, len);
    if ((rv = nng_sendmsg(s, m, 0)) != 0) {
        nng_msg_free(m);
        return rv;
    }
    if ((rv = nng_recvmsg(s, &m, 0)) != 0)
        return rv;
    uint32_t results;
    bool ok =
        rcb_parse_ack(nng_msg_body(m), nng_msg_len(m), accepted, seq_sum, &results, err, errlen);
    nng_msg_free(m);
    return ok ? 0 : NNG_EPROTO;
}

int64_t rcb_retire_runs(const char *req_url, const char *run_tag, uint32_t runs)
{
    nng_socket s;
    if (rcb_req_open(&s, req_url) != 0)
        return -1;
    struct rc_buf b;
    rc_buf_init(&b);
    int64_t total = 0;
    char id[96], err[128] = "";
    for (uint32_t i = 0; i < runs;) {
        uint32_t n = runs - i < 256 ? runs - i : 256;
        rc_buf_reset(&b);
        rcb_array_header(&b, n);
        for (uint32_t j = 0; j < n; j++) {
            rcb_run_id(id, sizeof(id), run_tag, i + j);
            rcb_ev_encode_complete(&b, id);
        }
        uint32_t acc;
        uint64_t sum;
        if (req_once(s, b.data, b.len, &acc, &sum, err, sizeof(err)) != 0) {
            total = -1;
            break;
        }
        total += (int64_t)sum - (int64_t)acc;
        i += n;
    }
    if (err[0])
        rcb_log("retire %s: first error: %s", run_tag, err);
    rc_buf_fini(&b);
    nng_close(s);
    return total;
}

uint64_t rcb_wait_metric(const struct rcb_broker *b, const char *name, double target,
                         uint64_t deadline_ns, uint32_t poll_ms, double *seen, uint64_t *t_last)
{
    *seen = NAN;
    *t_last = rcb_now_ns();
    double prev = NAN;
    for (;;) {
        char *t = rcb_metrics(b);
        double v = rcb_metric(t, name, NULL);
        free(t);
        uint64_t now = rcb_now_ns();
        if (isnan(v))
            return 0;
        *seen = v;
        if (v != prev) {
            prev = v;
            *t_last = now;
        }
        if (v >= target)
            return now;
        /* stalled: nothing more is coming (refused or lost); generous, a
         * loaded 2-core machine can pause a broker for seconds */
        if (now - *t_last > 10000000000ull || now > deadline_ns || rcb_expired())
            return 0;
        rcb_sleep_ns((uint64_t)poll_ms * 1000000ull);
    }
}

uint64_t rcb_wait_accepted(const struct rcb_broker *b, double target, uint64_t deadline_ns,
                           uint32_t poll_ms, double *seen, uint64_t *t_last)
{
    return rcb_wait_metric(b, "runcast_events_accepted_total", target, deadline_ns, poll_ms, seen,
                           t_last);
}

double rcb_broker_rejected(const struct rcb_broker *b, const char *reason)
{
    char *t = rcb_metrics(b);
    char label[64];
    if (reason)
        snprintf(label, sizeof(label), "reason=\"%s\"", reason);
    double v = rcb_metric(t, "runcast_events_rejected_total", reason ? label : NULL);
    free(t);
    return v;
}

/* ---- publisher threads ---- */

struct pth {
    const struct rcb_pubs_cfg *cfg;
    uint32_t idx;
    uint64_t n; /* events for this thread */
    pthread_t th;
    _Atomic int *ready;
    _Atomic bool *go;
    _Atomic int *done;     /* counts threads whose results are final */
    _Atomic bool *release; /* set when the sockets may close (after settle) */
    uint64_t *t0;          /* written before go (release), read after (acquire) */
    uint64_t t_end, sent, msgs, errors, acked;
    uint32_t max_batch;
    struct rcb_hist *rtt;
    char err[160];
};

/* The run ids this thread publishes to, formatted once (an snprintf per
 * event was a third of the encoding cost): runs idx, idx+P, ... when
 * R >= P, else run idx % R.  Event k goes to ids[k % n]. */
struct run_ids {
    char (*id)[96];
    uint32_t n;
};

static int run_ids_init(struct run_ids *r, const struct pth *t)
{
    uint32_t P = t->cfg->threads, R = t->cfg->runs;
    r->n = R >= P ? (R - t->idx + P - 1) / P : 1;
    r->id = calloc(r->n, sizeof(*r->id));
    if (r->id == NULL)
        return -1;
    for (uint32_t j = 0; j < r->n; j++)
        rcb_run_id(r->id[j], sizeof(r->id[j]), t->cfg->run_tag,
                   R >= P ? t->idx + (uint64_t)j * P : t->idx % R);
    return 0;
}

static const char *run_ids_of(const struct run_ids *r, uint64_t k)
{
    return r->id[r->n > 1 ? k % r->n : 0];
}

static void wait_go(struct pth *t)
{
    atomic_fetch_add_explicit(t->ready, 1, memory_order_release);
    while (!atomic_load_explicit(t->go, memory_order_acquire))
        rcb_sleep_ns(200000);
}

/* Publishes this thread's results, then keeps the socket open until the
 * caller has seen everything arrive (closing an nng socket drops what it
 * still queues), at most 60 s. */
static void finish(struct pth *t)
{
    atomic_fetch_add_explicit(t->done, 1, memory_order_release); /* pairs with rcb_pubs_run */
    uint64_t dl = rcb_now_ns() + 60000000000ull;
    while (!atomic_load_explicit(t->release, memory_order_acquire) && rcb_now_ns() < dl)
        rcb_sleep_ns(1000000);
}

/* Waits for the due time, or not at all when it is less than
 * cfg->early_ns away (see rcb_pubs_cfg.early_ns). */
static void pace(const struct pth *t, uint64_t due)
{
    if (t->cfg->early_ns > 0 && due <= rcb_now_ns() + t->cfg->early_ns)
        return;
    rcb_sleep_until(due - t->cfg->early_ns / 2);
}

static uint64_t due_of(const struct pth *t, uint64_t t0, uint64_t i)
{
    /* thread idx sends events idx, idx+P, ... of the global schedule */
    double per = 1e9 / t->cfg->rate;
    return t0 + (uint64_t)(per * (double)(i * t->cfg->threads + t->idx));
}

static void *pth_raw(void *arg)
{
    struct pth *t = arg;
    const struct rcb_pubs_cfg *c = t->cfg;
    bool req = c->mode == RCB_PUB_RAW_REQ;
    nng_socket s;
    int rv = req ? rcb_req_open(&s, c->url) : nng_push0_open(&s);
    if (rv == 0 && !req) {
        nng_socket_set_int(s, NNG_OPT_SENDBUF, 1024);
        nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, 10000);
        rv = nng_dial(s, c->url, NULL, 0);
        if (rv != 0)
            nng_close(s);
    }
    if (rv != 0) {
        snprintf(t->err, sizeof(t->err), "dial %s: %s", c->url, nng_strerror(rv));
        t->errors++;
        wait_go(t);
        finish(t);
        return NULL;
    }
    struct rc_buf b;
    rc_buf_init(&b);
    char id[96];
    struct run_ids ids = {NULL, 0};
    if (!c->starts && run_ids_init(&ids, t) != 0) {
        snprintf(t->err, sizeof(t->err), "out of memory");
        t->errors++;
    }
    uint32_t batch = c->batch ? c->batch : 1;
    if (c->rate > 0)
        batch = 1;
    wait_go(t);
    uint64_t t0 = *t->t0;
    uint64_t i = 0;
    while (i < t->n && !rcb_expired() && (c->starts || ids.id != NULL)) {
        uint32_t n = t->n - i < batch ? (uint32_t)(t->n - i) : batch;
        uint64_t ts;
        if (c->rate > 0) {
            ts = due_of(t, t0, i);
            pace(t, ts);
        } else {
            ts = rcb_now_ns();
        }
        rc_buf_reset(&b);
        if (batch > 1)
            rcb_array_header(&b, n);
        for (uint32_t j = 0; j < n; j++) {
            if (c->starts) {
                /* one new run per event: global index (i + j) * P + idx */
                rcb_run_id(id, sizeof(id), c->run_tag, (i + j) * c->threads + t->idx);
                rcb_ev_encode_start(&b, id, c->start_timeout_ms);
                continue;
            }
            rcb_ev_encode(&b, run_ids_of(&ids, i + j), "delta", ts, i + j, c->size);
        }
        nng_msg *m;
        nng_msg_alloc(&m, 0);
        nng_msg_append(m, b.data, b.len);
        uint64_t s0 = rcb_now_ns();
        if ((rv = nng_sendmsg(s, m, 0)) != 0) {
            nng_msg_free(m);
            t->errors++;
            snprintf(t->err, sizeof(t->err), "send: %s", nng_strerror(rv));
            break;
        }
        if (req) {
            nng_msg *rep;
            if ((rv = nng_recvmsg(s, &rep, 0)) != 0) {
                t->errors++;
                snprintf(t->err, sizeof(t->err), "recv: %s", nng_strerror(rv));
                break;
            }
            uint64_t now = rcb_now_ns();
            if (t->rtt)
                rcb_hist_record(t->rtt, now - (c->rate > 0 ? ts : s0));
            uint32_t acc, results;
            uint64_t sum;
            char e[128] = "";
            if (rcb_parse_ack(nng_msg_body(rep), nng_msg_len(rep), &acc, &sum, &results, e,
                              sizeof(e))) {
                t->acked += acc;
                if (acc < n) {
                    t->errors += n - acc;
                    if (!t->err[0])
                        snprintf(t->err, sizeof(t->err), "rejected: %s", e);
                }
            }
            nng_msg_free(rep);
        }
        t->msgs++;
        t->sent += n;
        if (n > t->max_batch)
            t->max_batch = n;
        i += n;
    }
    t->t_end = rcb_now_ns();
    rc_buf_fini(&b);
    free(ids.id);
    finish(t);
    nng_close(s);
    return NULL;
}

#ifdef RCB_HAVE_CLIENT
static void *pth_lib(void *arg)
{
    struct pth *t = arg;
    const struct rcb_pubs_cfg *c = t->cfg;
    bool ack = c->mode == RCB_PUB_LIB_ACK;
    struct rc_client_opts o;
    rc_client_opts_init(&o);
    o.push_url = ack ? NULL : c->url;
    o.req_url = ack ? c->url : NULL;
    uint32_t batch = c->batch ? c->batch : 1;
    o.batch_max_events = batch;
    o.validate = false; /* the broker validates; keep the load generator light */
    o.ack_timeout_ms = 10000;
    o.queue_wait_ms = 10000;
    o.close_timeout_ms = 10000;
    struct rc_client *cl;
    int rv = rc_client_open_opts(&cl, &o);
    if (rv != 0) {
        snprintf(t->err, sizeof(t->err), "rc_client_open: %d", rv);
        t->errors++;
        wait_go(t);
        finish(t);
        return NULL;
    }
    struct rc_buf b;
    rc_buf_init(&b);
    struct run_ids ids = {NULL, 0};
    if (run_ids_init(&ids, t) != 0) {
        snprintf(t->err, sizeof(t->err), "out of memory");
        t->errors++;
    }
    uint32_t nb = ack ? batch : 1;
    const void **maps = calloc(nb, sizeof(*maps));
    size_t *lens = calloc(nb, sizeof(*lens));
    size_t *offs = calloc(nb, sizeof(*offs));
    struct rc_client_result *res = calloc(nb, sizeof(*res));
    wait_go(t);
    uint64_t t0 = *t->t0;
    uint64_t i = 0;
    /* the cap checked every 64 events: a clock read per event was a
     * tenth of this publisher's CPU */
    while (i < t->n && ((i & 63) != 0 || !rcb_expired()) && ids.id != NULL) {
        if (!ack) {
            uint64_t ts;
            if (c->rate > 0) {
                ts = due_of(t, t0, i);
                pace(t, ts);
            } else {
                ts = rcb_now_ns();
            }
            rc_buf_reset(&b);
            rcb_ev_encode(&b, run_ids_of(&ids, i), "delta", ts, i, c->size);
            rv = rc_client_publish_raw(cl, b.data, b.len, RC_DELIVER_PUSH, NULL);
            if (rv != 0) {
                t->errors++;
                snprintf(t->err, sizeof(t->err), "publish: %d", rv);
                if (t->errors > 100)
                    break;
            } else {
                t->sent++;
            }
            i++;
            continue;
        }
        uint32_t n = t->n - i < nb ? (uint32_t)(t->n - i) : nb;
        uint64_t ts = c->rate > 0 ? due_of(t, t0, i) : rcb_now_ns();
        if (c->rate > 0)
            rcb_sleep_until(ts);
        rc_buf_reset(&b);
        for (uint32_t j = 0; j < n; j++) {
            offs[j] = b.len;
            rcb_ev_encode(&b, run_ids_of(&ids, i + j), "delta", ts, i + j, c->size);
            lens[j] = b.len - offs[j];
        }
        for (uint32_t j = 0; j < n; j++)
            maps[j] = b.data + offs[j];
        uint64_t s0 = rcb_now_ns();
        rv = n == 1 ? rc_client_publish_raw(cl, maps[0], lens[0], RC_DELIVER_ACK, &res[0])
                    : rc_client_publish_raw_batch_ack(cl, maps, lens, n, res);
        uint64_t now = rcb_now_ns();
        if (t->rtt)
            rcb_hist_record(t->rtt, now - (c->rate > 0 ? ts : s0));
        for (uint32_t j = 0; j < n; j++) {
            if (res[j].err == 0) {
                t->acked++;
            } else {
                t->errors++;
                if (!t->err[0])
                    snprintf(t->err, sizeof(t->err), "ack: %s %s", res[j].code, res[j].message);
            }
        }
        if (rv != 0 && rv != -1 && t->errors > 100)
            break;
        t->msgs++;
        t->sent += n;
        if (n > t->max_batch)
            t->max_batch = n;
        i += n;
    }
    if (!ack)
        rc_client_flush(cl, 10000);
    t->t_end = rcb_now_ns();
    struct rc_client_stats st;
    rc_client_get_stats(cl, &st);
    if (!ack) {
        t->msgs = st.messages_pushed;
        t->max_batch = st.max_batch;
    }
    finish(t);
    rc_client_close(cl);
    rc_buf_fini(&b);
    free(maps);
    free(lens);
    free(offs);
    free(res);
    free(ids.id);
    return NULL;
}
#endif

int rcb_pubs_run(const struct rcb_pubs_cfg *cfg, struct rcb_pubs_result *res)
{
    memset(res, 0, sizeof(*res));
    uint32_t P = cfg->threads ? cfg->threads : 1;
#ifndef RCB_HAVE_CLIENT
    if (cfg->mode == RCB_PUB_LIB || cfg->mode == RCB_PUB_LIB_ACK) {
        snprintf(res->err, sizeof(res->err), "built without the publisher library");
        return -1;
    }
#endif
    struct pth *t = calloc(P, sizeof(*t));
    _Atomic int ready = 0, done = 0;
    _Atomic bool go = false, release = false;
    uint64_t t0 = 0;
    for (uint32_t i = 0; i < P; i++) {
        t[i].cfg = cfg;
        t[i].idx = i;
        t[i].n = cfg->events / P + (i < cfg->events % P ? 1 : 0);
        t[i].ready = &ready;
        t[i].go = &go;
        t[i].done = &done;
        t[i].release = &release;
        t[i].t0 = &t0;
        if (cfg->record_rtt)
            t[i].rtt = rcb_hist_new();
        void *(*fn)(void *) = pth_raw;
#ifdef RCB_HAVE_CLIENT
        if (cfg->mode == RCB_PUB_LIB || cfg->mode == RCB_PUB_LIB_ACK)
            fn = pth_lib;
#endif
        pthread_create(&t[i].th, NULL, fn, &t[i]);
    }
    while (atomic_load_explicit(&ready, memory_order_acquire) < (int)P)
        rcb_sleep_ns(1000000);
    rcb_sleep_ns(100000000); /* let the dials complete */
    t0 = rcb_now_ns() + 1000000;
    res->t_start = t0;
    atomic_store_explicit(&go, true, memory_order_release); /* pairs with wait_go */
    /* acquire: pairs with finish(); every thread's fields are final */
    while (atomic_load_explicit(&done, memory_order_acquire) < (int)P)
        rcb_sleep_ns(1000000);
    if (cfg->record_rtt)
        res->rtt = rcb_hist_new();
    for (uint32_t i = 0; i < P; i++) {
        if (t[i].t_end > res->t_end)
            res->t_end = t[i].t_end;
        res->events_sent += t[i].sent;
        res->messages_sent += t[i].msgs;
        res->errors += t[i].errors;
        res->acked += t[i].acked;
        if (t[i].max_batch > res->max_batch)
            res->max_batch = t[i].max_batch;
        if (t[i].err[0] && !res->err[0])
            snprintf(res->err, sizeof(res->err), "%s", t[i].err);
        if (t[i].rtt) {
            rcb_hist_merge(res->rtt, t[i].rtt);
            rcb_hist_free(t[i].rtt);
        }
    }
    if (cfg->settle)
        res->t_settled = cfg->settle(cfg->settle_arg, res);
    atomic_store_explicit(&release, true, memory_order_release); /* pairs with finish() */
    for (uint32_t i = 0; i < P; i++)
        pthread_join(t[i].th, NULL);
    free(t);
    return res->events_sent > 0 ? 0 : -1;
}

/* ---- starting runs in batches ---- */

struct starter {
    const char *url, *tag;
    uint32_t first, last, timeout_ms, batch;
    uint64_t acked, t_done;
    uint64_t *t_sent; /* per run: when its start was sent (may be NULL) */
    char err[160];
};

static void *starter_main(void *arg)
{
    struct starter *s = arg;
    nng_socket sock;
    int rv = rcb_req_open(&sock, s->url);
    if (rv != 0) {
        snprintf(s->err, sizeof(s->err), "dial %s: %s", s->url, nng_strerror(rv));
        return NULL;
    }
    struct rc_buf b;
    rc_buf_init(&b);
    char id[96];
    for (uint32_t i = s->first; i < s->last && !rcb_expired();) {
        uint32_t n = s->last - i < s->batch ? s->last - i : s->batch;
        rc_buf_reset(&b);
        rcb_array_header(&b, n);
        for (uint32_t j = 0; j < n; j++) {
            rcb_run_id(id, sizeof(id), s->tag, i + j);
            rcb_ev_encode_start(&b, id, s->timeout_ms);
        }
        uint64_t now = rcb_now_ns();
        if (s->t_sent)
            for (uint32_t j = 0; j < n; j++)
                s->t_sent[i + j] = now;
        uint32_t acc;
        uint64_t sum;
        char e[128] = "";
        rv = req_once(sock, b.data, b.len, &acc, &sum, e, sizeof(e));
        if (rv != 0) {
            snprintf(s->err, sizeof(s->err), "start request: %s", nng_strerror(rv));
            break;
        }
        if (acc < n && !s->err[0])
            snprintf(s->err, sizeof(s->err), "%u of %u starts rejected: %s", n - acc, n, e);
        s->acked += acc;
        i += n;
    }
    s->t_done = rcb_now_ns();
    rc_buf_fini(&b);
    nng_close(sock);
    return NULL;
}

uint64_t rcb_start_runs(const char *req_url, const char *run_tag, uint32_t runs,
                        uint32_t timeout_ms, uint32_t threads, uint32_t batch, uint64_t *t_done,
                        uint64_t *t_sent, char *err, size_t errlen)
{
    if (threads == 0)
        threads = 1;
    if (batch == 0)
        batch = 256;
    struct starter *s = calloc(threads, sizeof(*s));
    pthread_t *th = calloc(threads, sizeof(*th));
    uint32_t per = (runs + threads - 1) / threads;
    for (uint32_t i = 0; i < threads; i++) {
        s[i] = (struct starter){.url = req_url,
                                .tag = run_tag,
                                .first = i * per < runs ? i * per : runs,
                                .last = (i + 1) * per < runs ? (i + 1) * per : runs,
                                .timeout_ms = timeout_ms,
                                .batch = batch,
                                .t_sent = t_sent};
        pthread_create(&th[i], NULL, starter_main, &s[i]);
    }
    uint64_t acked = 0;
    *t_done = 0;
    if (err)
        err[0] = 0;
    for (uint32_t i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        acked += s[i].acked;
        if (s[i].t_done > *t_done)
            *t_done = s[i].t_done;
        if (s[i].err[0] && err && !err[0])
            snprintf(err, errlen, "%s", s[i].err);
    }
    free(s);
    free(th);
    return acked;
}
