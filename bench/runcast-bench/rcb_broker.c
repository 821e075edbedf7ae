/*
 * rcb_broker: the broker under test.  Either attaches to a running runcastd
 * (--ingest, --ingest-ack, --http) or starts one on free loopback ports,
 * waits for /healthz, and stops it (SIGTERM, then SIGKILL) at the end.  Also
 * reads /metrics (a small HTTP/1.1 GET over a plain socket) and the
 * process's RSS from /proc.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rc_error.h"
#include "rc_listen_line.h"
#include "rcb.h"

void rcb_pull_listen_url(char *url, size_t len, char *path, size_t plen, const char *what)
{
    /* relaxed: only makes names unique; nothing is published through it */
    static _Atomic unsigned seq;
    if (!rcb_o.ipc) {
        snprintf(url, len, "tcp://127.0.0.1:0");
        if (plen)
            path[0] = '\0';
        return;
    }
    unsigned n = atomic_fetch_add_explicit(&seq, 1, memory_order_relaxed) + 1;
    snprintf(path, plen, "/tmp/runcast-bench-%d-%s-%u.sock", (int)getpid(), what, n);
    /* a file left by a crashed run with our pid would make the listen fail */
    unlink(path);
    snprintf(url, len, "ipc://%s", path);
}

int rcb_raise_nofile(uint64_t n)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    if (rl.rlim_cur >= n)
        return 0;
    if (rl.rlim_max < n) {
        /* root with CAP_SYS_RESOURCE may raise the hard limit up to
         * fs.nr_open; otherwise take what the hard limit allows */
        struct rlimit r2 = {n, n};
        if (setrlimit(RLIMIT_NOFILE, &r2) == 0)
            return 0;
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        return -1;
    }
    rl.rlim_cur = n;
    return setrlimit(RLIMIT_NOFILE, &rl);
}

/* ---- HTTP ---- */

static int tcp_connect(const char *host, int port, int timeout_ms)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, strcmp(host, "localhost") == 0 ? "127.0.0.1" : host, &a.sin_addr) != 1)
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static size_t dechunk(char *body, size_t len)
{
    size_t in = 0, out = 0;
    while (in < len) {
        char *end;
        unsigned long n = strtoul(body + in, &end, 16);
        char *crlf = strstr(body + in, "\r\n");
        if (crlf == NULL || end == body + in)
            break;
        in = (size_t)(crlf - body) + 2;
        if (n == 0 || in + n > len)
            break;
        memmove(body + out, body + in, n);
        out += n;
        in += n + 2;
    }
    body[out] = 0;
    return out;
}

int rcb_http_get(const char *host, int port, const char *path, int *status, char **body,
                 int timeout_ms)
{
    *body = NULL;
    *status = 0;
    int fd = tcp_connect(host, port, timeout_ms);
    if (fd < 0)
        return -1;
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n"
                     "User-Agent: runcast-bench\r\n\r\n",
                     path, host, port);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    uint64_t deadline = rcb_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    for (;;) {
        if (len + 4096 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r > 0) {
            len += (size_t)r;
            /* stop early when Content-Length is satisfied (keep-alive servers) */
            buf[len] = 0;
            char *hend = strstr(buf, "\r\n\r\n");
            if (hend != NULL) {
                char *cl = strcasestr(buf, "\r\nContent-Length:");
                if (cl != NULL && cl < hend) {
                    size_t want = strtoul(cl + 17, NULL, 10);
                    if (len - (size_t)(hend + 4 - buf) >= want)
                        break;
                }
            }
            continue;
        }
        if (r == 0 || rcb_now_ns() > deadline)
            break;
        if (errno == EINTR)
            continue;
        break;
    }
    close(fd);
    buf[len] = 0;
    if (sscanf(buf, "HTTP/1.%*d %d", status) != 1) {
        free(buf);
        return -1;
    }
    char *hend = strstr(buf, "\r\n\r\n");
    if (hend == NULL) {
        free(buf);
        return -1;
    }
    size_t hlen = (size_t)(hend + 4 - buf);
    bool chunked = false;
    char *te = strcasestr(buf, "\r\nTransfer-Encoding: chunked");
    if (te != NULL && te < hend)
        chunked = true;
    memmove(buf, buf + hlen, len - hlen + 1);
    if (chunked)
        dechunk(buf, len - hlen);
    *body = buf;
    return 0;
}

char *rcb_metrics(const struct rcb_broker *b)
{
    int st;
    char *body;
    if (b->http_port <= 0 ||
        rcb_http_get(b->http_host, b->http_port, "/metrics", &st, &body, 5000) != 0)
        return NULL;
    if (st != 200) {
        free(body);
        return NULL;
    }
    return body;
}

double rcb_metric(const char *text, const char *name, const char *label)
{
    if (text == NULL)
        return NAN;
    size_t nl = strlen(name);
    double sum = 0;
    bool found = false;
    const char *p = text;
    while (*p) {
        const char *eol = strchr(p, '\n');
        if (eol == NULL)
            eol = p + strlen(p);
        if (*p != '#' && strncmp(p, name, nl) == 0 && (p[nl] == '{' || p[nl] == ' ')) {
            const char *v = p + nl;
            bool match = true;
            if (*v == '{') {
                const char *close = memchr(v, '}', (size_t)(eol - v));
                if (close == NULL) {
                    p = *eol ? eol + 1 : eol;
                    continue;
                }
                if (label != NULL) {
                    size_t ll = strlen(label);
                    match = false;
                    for (const char *q = v; q + ll <= close; q++)
                        if (memcmp(q, label, ll) == 0) {
                            match = true;
                            break;
                        }
                }
                v = close + 1;
            } else if (label != NULL) {
                match = false;
            }
            if (match) {
                sum += strtod(v, NULL);
                found = true;
            }
        }
        p = *eol ? eol + 1 : eol;
    }
    return found ? sum : NAN;
}

double rcb_metric_any(const char *text, const char *const *names, const char *label)
{
    for (; *names; names++) {
        double v = rcb_metric(text, *names, label);
        if (!isnan(v))
            return v;
    }
    return NAN;
}

static const char *const m_alloc[] = {"runcast_memory_allocated_bytes",
                                      "runcast_jemalloc_allocated_bytes",
                                      "runcast_alloc_allocated_bytes", NULL};
static const char *const m_mem[] = {"runcast_memory_bytes", "runcast_jemalloc_bytes", NULL};
static const char *const m_acc[] = {"runcast_events_accepted_total", "runcast_events_accepted",
                                    NULL};
static const char *const m_runs[] = {"runcast_runs", "runcast_runs_active", NULL};

void rcb_broker_mem(const struct rcb_broker *b, struct rcb_mem *m)
{
    long long rss = rcb_broker_rss(b);
    m->rss = rss >= 0 ? (double)rss : NAN;
    char *t = rcb_metrics(b);
    m->allocated = rcb_metric_any(t, m_alloc, NULL);
    if (isnan(m->allocated))
        m->allocated = rcb_metric_any(t, m_mem, "allocated");
    free(t);
}

double rcb_broker_events_accepted(const struct rcb_broker *b)
{
    char *t = rcb_metrics(b);
    double v = rcb_metric_any(t, m_acc, NULL);
    free(t);
    return v;
}

double rcb_broker_runs_active(const struct rcb_broker *b)
{
    char *t = rcb_metrics(b);
    double v = rcb_metric(t, "runcast_runs_active", NULL);
    if (isnan(v))
        v = rcb_metric_any(t, m_runs, "\"active\"");
    free(t);
    return v;
}

double rcb_proc_cpu_s(pid_t pid)
{
    if (pid <= 0)
        return NAN;
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NAN;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* fields after "(comm)": state is 3, utime 14, stime 15 */
    const char *p = strrchr(buf, ')');
    unsigned long ut, st;
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return NAN;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

long long rcb_broker_rss(const struct rcb_broker *b)
{
    if (b->pid <= 0)
        return -1;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)b->pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    char line[256];
    long long kb = -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = atoll(line + 6);
            break;
        }
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

/* ---- spawning ---- */

static bool file_exec(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0;
}

static int find_runcastd(char *out, size_t len)
{
    if (rcb_o.spawn != NULL) {
        snprintf(out, len, "%s", rcb_o.spawn);
        return file_exec(out) ? 0 : -1;
    }
#ifdef RCB_RUNCASTD_PATH
    if (file_exec(RCB_RUNCASTD_PATH)) {
        snprintf(out, len, "%s", RCB_RUNCASTD_PATH);
        return 0;
    }
#endif
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return -1;
    self[n] = 0;
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = 0;
    const char *rel[] = {"runcastd", "../../broker/runcastd", "../broker/runcastd",
                         "../../runcastd", "../runcastd"};
    for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
        if ((size_t)snprintf(out, len, "%s/%s", self, rel[i]) >= len)
            continue;
        if (file_exec(out))
            return 0;
    }
    return -1;
}

static char *read_help(const char *path)
{
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof(cmd), "'%s' --help 2>&1", path);
    FILE *f = popen(cmd, "r");
    if (f == NULL)
        return NULL;
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    size_t r;
    while ((r = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += r;
        if (len + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    buf[len] = 0;
    pclose(f);
    return buf;
}

static bool help_has(const char *help, const char *opt)
{
    if (help == NULL)
        return true;
    size_t n = strlen(opt);
    for (const char *p = strstr(help, opt); p; p = strstr(p + 1, opt)) {
        char c = p[n];
        if (c == ' ' || c == '=' || c == '\t' || c == '\n' || c == ',' || c == 0)
            return true;
    }
    return false;
}

static int parse_hostport(const char *s, char *host, size_t hl, int *port)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL)
        return -1;
    size_t n = (size_t)(colon - s);
    if (n >= hl)
        return -1;
    memcpy(host, s, n);
    host[n] = 0;
    *port = atoi(colon + 1);
    return *port > 0 ? 0 : -1;
}

static bool tcp_port_open(const char *url)
{
    const char *p = strstr(url, "://");
    if (p == NULL)
        return false;
    char host[64];
    int port;
    if (parse_hostport(p + 3, host, sizeof(host), &port) != 0)
        return false;
    int fd = tcp_connect(host, port, 500);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

/* Waits (at most ms) for the spawned runcastd's listening line in its log
 * and takes its addresses from it. */
static int read_listening(struct rcb_broker *b, uint32_t ms)
{
    uint64_t deadline = rcb_now_ns() + (uint64_t)ms * 1000000ull;
    char text[8192];
    while (rcb_now_ns() < deadline) {
        int st;
        if (waitpid(b->pid, &st, WNOHANG) == b->pid) {
            rcb_log("error: runcastd exited during start-up (status %d); log: %s", st, b->log_path);
            b->pid = -1;
            b->spawned = false;
            return -1;
        }
        size_t n = 0;
        FILE *f = fopen(b->log_path, "r");
        if (f != NULL) {
            n = fread(text, 1, sizeof(text) - 1, f);
            fclose(f);
        }
        text[n] = '\0';
        char http[128];
        if (rc_listen_line_find(text, "ingest", b->ingest, sizeof(b->ingest)) == RC_OK &&
            rc_listen_line_find(text, "ingest-ack", b->ack, sizeof(b->ack)) == RC_OK &&
            rc_listen_line_find(text, "http", http, sizeof(http)) == RC_OK) {
            b->http_port = rc_listen_line_port(http);
            if (b->http_port <= 0)
                break;
            snprintf(b->ws_url, sizeof(b->ws_url), "ws://%s:%d/ws", b->http_host, b->http_port);
            return 0;
        }
        rcb_sleep_ns(20000000);
    }
    rcb_log("error: runcastd printed no listening line within %u ms; log: %s", ms, b->log_path);
    return -1;
}

static int wait_ready(struct rcb_broker *b, uint32_t ms)
{
    uint64_t deadline = rcb_now_ns() + (uint64_t)ms * 1000000ull;
    while (rcb_now_ns() < deadline) {
        if (b->spawned) {
            int st;
            if (waitpid(b->pid, &st, WNOHANG) == b->pid) {
                rcb_log("error: runcastd exited during start-up (status %d); log: %s", st,
                        b->log_path);
                b->pid = -1;
                b->spawned = false;
                return -1;
            }
        }
        int status;
        char *body;
        if (rcb_http_get(b->http_host, b->http_port, "/healthz", &status, &body, 1000) == 0) {
            free(body);
            if (status == 200)
                return 0;
        }
        rcb_sleep_ns(50000000);
    }
    /* no edge (yet)?  Accept a broker whose ingress answers. */
    if (tcp_port_open(b->ingest) && tcp_port_open(b->ack)) {
        rcb_log("warning: /healthz did not answer 200; ingress is up, going on without /metrics");
        b->http_port = -b->http_port;
        return 0;
    }
    return -1;
}

int rcb_broker_start(struct rcb_broker *b, const char *const *extra)
{
    memset(b, 0, sizeof(*b));
    b->pid = -1;
    if (rcb_o.ingest || rcb_o.ack || rcb_o.http) {
        if (!(rcb_o.ingest && rcb_o.ack && rcb_o.http)) {
            rcb_log("error: --ingest, --ingest-ack and --http go together");
            return -1;
        }
        snprintf(b->ingest, sizeof(b->ingest), "%s", rcb_o.ingest);
        snprintf(b->ack, sizeof(b->ack), "%s", rcb_o.ack);
        if (parse_hostport(rcb_o.http, b->http_host, sizeof(b->http_host), &b->http_port) != 0) {
            rcb_log("error: --http wants HOST:PORT");
            return -1;
        }
        snprintf(b->ws_url, sizeof(b->ws_url), "ws://%s:%d/ws", b->http_host, b->http_port);
        b->pid = rcb_o.pid;
        return wait_ready(b, 3000);
    }
    char path[PATH_MAX];
    if (find_runcastd(path, sizeof(path)) != 0) {
        rcb_log("error: no runcastd found (give --spawn PATH, or --ingest/--ingest-ack/--http)");
        return -1;
    }
    b->help = read_help(path);
    /* Port 0 everywhere; the ports come from runcastd's listening line
     * (rc_listen_line.h says why). */
    snprintf(b->http_host, sizeof(b->http_host), "127.0.0.1");
    static int nspawn;
    snprintf(b->log_path, sizeof(b->log_path), "/tmp/runcast-bench-%d-%d.log", (int)getpid(),
             ++nspawn);

    const char *argv[128];
    int argc = 0;
    argv[argc++] = path;
    /* --transport ipc: the ingest PULL on a socket file (the issue allows
     * any nng URL); the REP and HTTP stay on tcp */
    char ingest_url[sizeof(b->ipc_path) + 8];
    rcb_pull_listen_url(ingest_url, sizeof(ingest_url), b->ipc_path, sizeof(b->ipc_path), "ingest");
    argv[argc++] = "--ingest";
    argv[argc++] = ingest_url;
    argv[argc++] = "--ingest-ack";
    argv[argc++] = "tcp://127.0.0.1:0"; /* port 0 may repeat: a free port of its own */
    argv[argc++] = "--http";
    argv[argc++] = "127.0.0.1:0";
    if (help_has(b->help, "--log-level")) {
        argv[argc++] = "--log-level";
        argv[argc++] = "warn";
    }
    for (; extra && extra[0] && extra[1] && argc < 100; extra += 2) {
        if (help_has(b->help, extra[0])) {
            argv[argc++] = extra[0];
            argv[argc++] = extra[1];
        } else {
            rcb_log("note: runcastd has no %s option; not passed", extra[0]);
        }
    }
    char *ba = rcb_o.broker_args ? strdup(rcb_o.broker_args) : NULL;
    if (ba != NULL)
        for (char *t = strtok(ba, " "); t && argc < 126; t = strtok(NULL, " "))
            argv[argc++] = t;
    argv[argc] = NULL;

    char cmdline[2048] = "";
    for (int i = 0; i < argc; i++) {
        strncat(cmdline, argv[i], sizeof(cmdline) - strlen(cmdline) - 2);
        strncat(cmdline, " ", sizeof(cmdline) - strlen(cmdline) - 1);
    }
    rcb_log("starting %s(log %s)", cmdline, b->log_path);

    pid_t pid = fork();
    if (pid < 0) {
        free(ba);
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(b->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0)
            dup2(nul, 0);
        execv(path, (char *const *)argv);
        _exit(127);
    }
    free(ba);
    b->pid = pid;
    b->spawned = true;
    if (read_listening(b, 10000) != 0 || wait_ready(b, 10000) != 0) {
        rcb_broker_stop(b);
        return -1;
    }
    return 0;
}

void rcb_broker_stop(struct rcb_broker *b)
{
    if (b->spawned && b->pid > 0) {
        kill(b->pid, SIGTERM);
        uint64_t deadline = rcb_now_ns() + 10000000000ull;
        int st;
        bool gone = false;
        while (rcb_now_ns() < deadline) {
            if (waitpid(b->pid, &st, WNOHANG) == b->pid) {
                gone = true;
                break;
            }
            rcb_sleep_ns(20000000);
        }
        if (!gone) {
            rcb_log("runcastd did not exit within 10 s of SIGTERM: SIGKILL");
            kill(b->pid, SIGKILL);
            waitpid(b->pid, &st, 0);
        }
    }
    b->spawned = false;
    b->pid = -1;
    if (b->ipc_path[0] != '\0')
        unlink(b->ipc_path);
    b->ipc_path[0] = '\0';
    free(b->help);
    b->help = NULL;
}
