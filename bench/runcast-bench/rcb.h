/*
 * rcb: shared pieces of runcast-bench, the load generator of issue 8.
 *
 *   rcb_main.c     command line, scenario dispatch, hard wall-clock cap
 *   rcb_report.c   figures -> one table per scenario, or JSON (--json)
 *   rcb_broker.c   start/stop a runcastd on free ports, /metrics, RSS
 *   rcb_mp.c       a tiny msgpack reader for the receive path, event encoder
 *   rcb_ws.c       WebSocket subscribers (nng ws dialer, aio callbacks) and
 *                  the raw nng WebSocket baseline server
 *   rcb_idle.c     idle WebSocket connections over plain sockets (conns)
 *   rcb_s_*.c      the scenarios
 *
 * Every scenario is bounded in count and in time, talks only to loopback and
 * stops by itself.
 */
#ifndef RCB_H
#define RCB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "rc_buf.h"
#include "rcb_hist.h"

/* ---- options ---- */

struct rcb_opts {
    /* target: a running broker (all three set) or a spawned one */
    const char *ingest;      /* --ingest URL (PULL) */
    const char *ack;         /* --ingest-ack URL (REP) */
    const char *http;        /* --http HOST:PORT */
    const char *spawn;       /* --spawn PATH (default: the runcastd built next to us) */
    pid_t pid;               /* --pid: the target broker's pid, for RSS */
    const char *broker_args; /* --broker-args "..." extra options for a spawned broker */
    bool json;
    bool smoke;
    bool quiet;
    /* workload knobs; 0 = the scenario's default */
    uint32_t publishers;   /* -P */
    uint32_t runs;         /* -R */
    uint64_t events;       /* -n: events per measurement */
    uint32_t size;         /* -s: event size in bytes */
    uint32_t batch;        /* -b: events per message */
    uint32_t subs;         /* -S: subscribers */
    uint32_t conns;        /* -N: connections (conns) */
    uint32_t addrs;        /* --addrs: 127.0.0.x source addresses (conns) */
    double rate;           /* --rate: offered events/s (0: the scenario's steps) */
    const char *workload;  /* fanout: W1, W2, W3 or all */
    uint32_t timeout_ms;   /* runs: the per-run watchdog */
    double duration_s;     /* soak, and the length of each rate step */
    double cap_s;          /* hard wall-clock cap per scenario */
    const char *ws_client; /* "nng" (default) or "epoll": the subscribers' WebSocket client */
    bool ipc;              /* --transport ipc: PUSH/PULL over ipc:// (spawned broker's --ingest
                              and the raw sinks alike); default tcp://127.0.0.1 */
    bool sink_thread;      /* --raw-sink thread: the raw PULL sink in this process */
    const char *sink_exe;  /* program re-executed as the raw sink process (NULL: this one,
                              /proc/self/exe; the tests name runcast-bench) */
};

extern struct rcb_opts rcb_o;

/* Monotonic ns (CLOCK_MONOTONIC, comparable across processes on one host). */
uint64_t rcb_now_ns(void);
void rcb_sleep_ns(uint64_t ns);
/* Sleeps until the absolute monotonic time due (no-op when past). */
void rcb_sleep_until(uint64_t due_ns);

/* Logs progress to stderr (suppressed by --quiet, except messages that
 * begin with "error" or "warning"). */
void rcb_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Scenario deadline: true once the hard cap of the current scenario is
 * reached (loops check it and stop). */
bool rcb_expired(void);
/* Seconds left before the cap. */
double rcb_left_s(void);
/* Sets the current scenario's deadline (0: none). */
void rcb_set_deadline(uint64_t ns);
/* For main's cap thread: when to end the process (atomic, acquire/release),
 * and the running scenario's name. */
extern _Atomic uint64_t rcb_kill_ns;
extern char rcb_cur_name[32];

/* ---- report ---- */

void rcb_report_begin(const char *scenario, const char *title);
/* One figure.  goal and note may be NULL. */
void rcb_fig(const char *name, double value, const char *unit, const char *goal, const char *note);
/* A figure that could not be measured (printed as n/a). */
void rcb_fig_na(const char *name, const char *unit, const char *why);
void rcb_report_param(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints the table (text mode) and marks the scenario done (ok = ran). */
void rcb_report_end(bool ok, const char *error);
/* At exit: JSON document of every scenario (json mode). */
void rcb_report_finish(void);

/* ---- the broker ---- */

struct rcb_broker {
    pid_t pid;    /* >0: a process we can read RSS from */
    bool spawned; /* we started it and stop it */
    char ingest[128];
    char ack[128];
    char http_host[64];
    int http_port;
    char ws_url[192];
    char log_path[256];
    char ipc_path[200]; /* --transport ipc: the spawned broker's ingest socket file */
    char *help;         /* `runcastd --help` text (spawned), to pass only known options */
};

/*
 * Starts (or attaches to) the broker.  extra: NULL-terminated list of
 * "--option", "value" pairs; each is passed only when the broker's --help
 * names the option.  Waits for GET /healthz to answer 200 (10 s).
 */
int rcb_broker_start(struct rcb_broker *b, const char *const *extra);
void rcb_broker_stop(struct rcb_broker *b);
/* CPU time (user + system, s) of process pid from /proc/PID/stat (clock
 * ticks: 10 ms steps, so only long phases give a per-event figure); NAN
 * when unknown. */
double rcb_proc_cpu_s(pid_t pid);
/* RSS in bytes from /proc/PID/status (VmRSS), -1 when unknown. */
long long rcb_broker_rss(const struct rcb_broker *b);

/* GET path over HTTP/1.1 (Connection: close); *body is malloc'ed. */
int rcb_http_get(const char *host, int port, const char *path, int *status, char **body,
                 int timeout_ms);
/* GET /metrics; NULL on failure (caller frees). */
char *rcb_metrics(const struct rcb_broker *b);
/* Sum of the samples of metric `name` whose label set contains `label`
 * (NULL: all).  NAN when absent. */
double rcb_metric(const char *text, const char *name, const char *label);
/* The first of several candidate names that is present (NAN when none). */
double rcb_metric_any(const char *text, const char *const *names, const char *label);

/* Memory snapshot of the broker: RSS and jemalloc allocated (from /metrics). */
struct rcb_mem {
    double rss;       /* bytes, NAN when unknown */
    double allocated; /* bytes, NAN when unknown */
};
void rcb_broker_mem(const struct rcb_broker *b, struct rcb_mem *m);
/* Named counters read from /metrics */
double rcb_broker_events_accepted(const struct rcb_broker *b);
double rcb_broker_runs_active(const struct rcb_broker *b);

/* Where a PUSH/PULL receiver of ours listens, per --transport: tcp on
 * 127.0.0.1 port 0 (the listener reports the port it bound), or a fresh ipc
 * socket file under /tmp named after this process and `what`.  *path gets the
 * ipc file to unlink afterwards ("" for tcp). */
void rcb_pull_listen_url(char *url, size_t len, char *path, size_t plen, const char *what);
/* Raises RLIMIT_NOFILE to at least n (root may raise the hard limit). */
int rcb_raise_nofile(uint64_t n);

/* ---- msgpack: event encoding and a minimal reader ---- */

/* Appends one publish event map of about `size` bytes:
 * {run, type, text: padding, data: [t_ns, k]}. */
void rcb_ev_encode(struct rc_buf *b, const char *run, const char *type, uint64_t t_ns, uint64_t k,
                   uint32_t size);
void rcb_array_header(struct rc_buf *b, uint32_t n);
/* {run, type: "complete"} */
void rcb_ev_encode_complete(struct rc_buf *b, const char *run);
/* A server ev map like the edge's (raw WebSocket baseline). */
void rcb_ev_encode_server(struct rc_buf *b, const char *run, uint64_t seq, uint64_t t_ns,
                          uint32_t size);
/* Appends a start event with a watchdog override {timeouts: {"*": ms}}. */
void rcb_ev_encode_start(struct rc_buf *b, const char *run, uint32_t timeout_ms);
/* Appends {op: "sub", run: R} / {op: "sub", all: true}. */
void rcb_sub_encode(struct rc_buf *b, const char *run, bool all);

struct rcb_mp {
    const uint8_t *p, *end;
};
/* Skips one value; false when truncated/invalid. */
bool rcb_mp_skip(struct rcb_mp *r);
/* Reads a container/scalar header. */
bool rcb_mp_map(struct rcb_mp *r, uint32_t *n);
bool rcb_mp_array(struct rcb_mp *r, uint32_t *n);
bool rcb_mp_str(struct rcb_mp *r, const char **s, uint32_t *len);
bool rcb_mp_uint(struct rcb_mp *r, uint64_t *v);
/* Peeks whether the next value is an array / a map. */
bool rcb_mp_is_array(const struct rcb_mp *r);

/* What a subscriber needs from one server message. */
struct rcb_msg {
    char op;         /* 'e' ev, 'h' hello, 'o' ok, 'x' err, 's' snap, 'g' gap, 'b' hb, 'p' pong */
    const char *run; /* ev/snap: run id (not NUL-terminated) */
    uint32_t run_len;
    const char *type; /* ev type */
    uint32_t type_len;
    uint64_t seq;
    bool synthetic;
    bool has_t;
    uint64_t t_ns; /* data[0] of our events */
    bool has_k;
    uint64_t k;       /* data[1] of our events: the publisher's event index */
    uint64_t idle_ms; /* synthetic terminal: data.idle_ms */
    const char *msg;  /* err message */
    uint32_t msg_len;
};

/*
 * Parses as many whole server messages as buf holds (a frame is a map or an
 * array of maps; nng's ws stream may merge frames, and msgpack delimits
 * itself).  Calls cb per message; returns the bytes consumed (a trailing
 * partial value stays for the next call), or -1 on garbage.
 */
typedef void (*rcb_msg_cb)(void *arg, const struct rcb_msg *m);
long rcb_parse_msgs(const uint8_t *buf, size_t len, rcb_msg_cb cb, void *arg);

/* ---- WebSocket subscribers (nng ws dialer, aio callbacks) ---- */

struct rcb_subs;
struct rcb_ep;
struct rcb_subs_stats {
    uint64_t connected, failed, closed;
    uint64_t hellos, oks, errs, evs, frames_bytes, terminals, synthetic;
    uint64_t snaps, gaps;
    char last_err[128];
};

/* Called for every ev (from nng's threads; conn_idx says which connection).
 * Must be thread-safe. */
typedef void (*rcb_ev_cb)(void *arg, uint32_t conn_idx, const struct rcb_msg *m, uint64_t now_ns);

/* Connects n subscribers to url (at most `parallel` dials in flight). */
struct rcb_subs *rcb_subs_new(const char *url, uint32_t n, rcb_ev_cb cb, void *arg);
/* Waits until every connection is up or failed (bounded). */
int rcb_subs_wait_connected(struct rcb_subs *s, uint32_t timeout_ms);
/* Sends one frame to connection i (run subscription or all). */
int rcb_subs_sub(struct rcb_subs *s, uint32_t i, const char *run, bool all);
/* Waits until `oks` replies arrived (bounded). */
int rcb_subs_wait_oks(struct rcb_subs *s, uint64_t oks, uint32_t timeout_ms);
void rcb_subs_stats(struct rcb_subs *s, struct rcb_subs_stats *st);
/* Latency histogram of evs carrying our timestamp (merged over threads). */
void rcb_subs_hist(struct rcb_subs *s, struct rcb_hist *out);
void rcb_subs_hist_reset(struct rcb_subs *s);
void rcb_subs_free(struct rcb_subs *s);

/* ---- raw nng WebSocket baseline: our own listener sending ev frames ---- */

struct rcb_wsbase;
/* Listens on ws://127.0.0.1:PORT/ws (a port of its own, rcb_wsbase_port);
 * each accepted connection gets the hello
 * frame, then `per_conn` frames of `per_frame` ev maps of `size` bytes as fast as nng sends
 * (rate_per_conn > 0: open loop, that many frames/s) once rcb_wsbase_go is
 * called. */
struct rcb_wsbase *rcb_wsbase_new(uint32_t size, uint32_t per_frame);
int rcb_wsbase_port(const struct rcb_wsbase *w);
int rcb_wsbase_go(struct rcb_wsbase *w, uint64_t per_conn, double rate_per_conn);
/* Frames sent so far. */
uint64_t rcb_wsbase_sent(struct rcb_wsbase *w);
void rcb_wsbase_free(struct rcb_wsbase *w);

/* ---- idle WebSocket connections (plain sockets, hand-written upgrade) ---- */

struct rcb_idle;
/* Opens n connections to host:port path, spread over naddrs source addresses
 * 127.0.0.2.., at most `parallel` handshakes in flight; stops at the
 * deadline.  *ok gets the number upgraded (101). */
struct rcb_idle *rcb_idle_open(const char *host, int port, const char *path, uint32_t n,
                               uint32_t naddrs, uint32_t *ok, char *err, size_t errlen);
void rcb_idle_close(struct rcb_idle *c);

/* ---- scenarios ---- */

int rcb_s_ingest(void);
int rcb_s_ack(void);
int rcb_s_fanout(void);
int rcb_s_conns(void);
int rcb_s_runs(void);
int rcb_s_soak(void);

/* Small helpers shared by the scenarios. */
static inline double rcb_rate(double n, uint64_t ns)
{
    return ns ? n * 1e9 / (double)ns : 0.0;
}
/* Formats a run id "b<tag>-<i>" into buf. */
void rcb_run_id(char *buf, size_t len, const char *tag, uint64_t i);
/* Process-unique tag so runs of one bench invocation never collide. */
const char *rcb_tag(void);

/* Latency figures from a histogram (ns -> us). */
void rcb_fig_latency(const char *prefix, const struct rcb_hist *h, const char *goal_p50,
                     const char *goal_p99, const char *goal_p999);

#endif
