/*
 * rcb_report: collects figures per scenario and prints them as a table
 * (stdout, Markdown-compatible so docs/BENCHMARKS.md can take it as is) or,
 * with --json, as one JSON document at exit (jansson).
 */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "rcb.h"

#define MAX_FIGS 320

struct fig {
    char name[64];
    double value;
    bool na;
    char unit[16];
    char goal[64];
    char note[128];
};

struct scen {
    char name[32];
    char title[128];
    char params[512];
    struct fig figs[MAX_FIGS];
    int n;
    bool ok;
    char error[256];
    double seconds;
    uint64_t t0;
};

static struct scen scens[32];
static int nscen;
static struct scen *cur;

void rcb_report_begin(const char *scenario, const char *title)
{
    if (nscen >= (int)(sizeof(scens) / sizeof(scens[0])))
        nscen--;
    cur = &scens[nscen++];
    memset(cur, 0, sizeof(*cur));
    snprintf(cur->name, sizeof(cur->name), "%s", scenario);
    snprintf(cur->title, sizeof(cur->title), "%s", title);
    cur->t0 = rcb_now_ns();
}

void rcb_report_param(const char *key, const char *fmt, ...)
{
    if (cur == NULL)
        return;
    char v[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v, sizeof(v), fmt, ap);
    va_end(ap);
    size_t l = strlen(cur->params);
    snprintf(cur->params + l, sizeof(cur->params) - l, "%s%s=%s", l ? " " : "", key, v);
}

static struct fig *add(const char *name, const char *unit)
{
    if (cur == NULL)
        return NULL;
    if (cur->n >= MAX_FIGS) {
        rcb_log("error: more than %d figures in scenario %s; %s dropped", MAX_FIGS, cur->name,
                name);
        return NULL;
    }
    struct fig *f = &cur->figs[cur->n++];
    memset(f, 0, sizeof(*f));
    snprintf(f->name, sizeof(f->name), "%s", name);
    snprintf(f->unit, sizeof(f->unit), "%s", unit ? unit : "");
    return f;
}

void rcb_fig(const char *name, double value, const char *unit, const char *goal, const char *note)
{
    struct fig *f = add(name, unit);
    if (f == NULL)
        return;
    f->value = value;
    f->na = isnan(value) || isinf(value);
    if (goal)
        snprintf(f->goal, sizeof(f->goal), "%s", goal);
    if (note)
        snprintf(f->note, sizeof(f->note), "%s", note);
}

void rcb_fig_na(const char *name, const char *unit, const char *why)
{
    rcb_fig(name, NAN, unit, NULL, why);
}

static void fmt_val(char *out, size_t len, const struct fig *f)
{
    if (f->na) {
        snprintf(out, len, "n/a");
        return;
    }
    double v = f->value;
    double a = fabs(v);
    if (a >= 1e6)
        snprintf(out, len, "%.0f", v);
    else if (a >= 100)
        snprintf(out, len, "%.0f", v);
    else if (a >= 10)
        snprintf(out, len, "%.1f", v);
    else if (a == floor(a))
        snprintf(out, len, "%.0f", v);
    else
        snprintf(out, len, "%.3g", v);
    /* thousands separators for big integers */
    if (a >= 10000 && strchr(out, '.') == NULL && strchr(out, 'e') == NULL) {
        char t[64];
        int n = (int)strlen(out), neg = out[0] == '-', j = 0;
        for (int i = 0; i < n; i++) {
            t[j++] = out[i];
            int rest = n - 1 - i;
            if (i >= neg && rest > 0 && rest % 3 == 0)
                t[j++] = ',';
        }
        t[j] = 0;
        snprintf(out, len, "%s", t);
    }
}

void rcb_report_end(bool ok, const char *error)
{
    if (cur == NULL)
        return;
    cur->ok = ok;
    cur->seconds = (double)(rcb_now_ns() - cur->t0) / 1e9;
    if (error)
        snprintf(cur->error, sizeof(cur->error), "%s", error);
    if (!rcb_o.json) {
        printf("\n### %s: %s%s\n\n", cur->name, cur->title, ok ? "" : " (FAILED)");
        if (cur->params[0])
            printf("`%s` (%.1f s)\n\n", cur->params, cur->seconds);
        if (!ok && cur->error[0])
            printf("error: %s\n\n", cur->error);
        if (cur->n > 0) {
            printf("| %-36s | %14s | %-8s | %-26s | %s\n", "figure", "value", "unit", "goal",
                   "note |");
            printf("|%s|%s|%s|%s|%s\n", "--------------------------------------",
                   "----------------:", "----------", "----------------------------", "------|");
            for (int i = 0; i < cur->n; i++) {
                char v[64];
                fmt_val(v, sizeof(v), &cur->figs[i]);
                printf("| %-36s | %14s | %-8s | %-26s | %s |\n", cur->figs[i].name, v,
                       cur->figs[i].unit, cur->figs[i].goal, cur->figs[i].note);
            }
        }
        fflush(stdout);
    }
    cur = NULL;
}

void rcb_report_finish(void)
{
    if (!rcb_o.json)
        return;
    json_t *root = json_object();
    struct utsname u;
    uname(&u);
    json_t *m = json_object();
    json_object_set_new(m, "nproc", json_integer(sysconf(_SC_NPROCESSORS_ONLN)));
    json_object_set_new(m, "mem_bytes",
                        json_integer((json_int_t)sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE)));
    json_object_set_new(m, "kernel", json_string(u.release));
    double la[3] = {0, 0, 0};
    if (getloadavg(la, 3) == 3)
        json_object_set_new(m, "loadavg1", json_real(la[0]));
    json_object_set_new(root, "machine", m);
    json_object_set_new(root, "smoke", json_boolean(rcb_o.smoke));
    json_t *arr = json_array();
    for (int i = 0; i < nscen; i++) {
        struct scen *s = &scens[i];
        json_t *o = json_object();
        json_object_set_new(o, "scenario", json_string(s->name));
        json_object_set_new(o, "title", json_string(s->title));
        json_object_set_new(o, "params", json_string(s->params));
        json_object_set_new(o, "ok", json_boolean(s->ok));
        json_object_set_new(o, "seconds", json_real(s->seconds));
        if (s->error[0])
            json_object_set_new(o, "error", json_string(s->error));
        json_t *fa = json_array();
        for (int k = 0; k < s->n; k++) {
            struct fig *f = &s->figs[k];
            json_t *fo = json_object();
            json_object_set_new(fo, "name", json_string(f->name));
            json_object_set_new(fo, "value", f->na ? json_null() : json_real(f->value));
            json_object_set_new(fo, "unit", json_string(f->unit));
            if (f->goal[0])
                json_object_set_new(fo, "goal", json_string(f->goal));
            if (f->note[0])
                json_object_set_new(fo, "note", json_string(f->note));
            json_array_append_new(fa, fo);
        }
        json_object_set_new(o, "figures", fa);
        json_array_append_new(arr, o);
    }
    json_object_set_new(root, "scenarios", arr);
    char *s = json_dumps(root, JSON_INDENT(2));
    if (s) {
        puts(s);
        free(s);
    }
    json_decref(root);
}

void rcb_fig_latency(const char *prefix, const struct rcb_hist *h, const char *goal_p50,
                     const char *goal_p99, const char *goal_p999)
{
    char n[64];
    if (h->count == 0) {
        snprintf(n, sizeof(n), "%s latency", prefix);
        rcb_fig_na(n, "us", "no samples");
        return;
    }
    snprintf(n, sizeof(n), "%s latency p50", prefix);
    rcb_fig(n, (double)rcb_hist_pct(h, 50) / 1e3, "us", goal_p50, NULL);
    snprintf(n, sizeof(n), "%s latency p99", prefix);
    rcb_fig(n, (double)rcb_hist_pct(h, 99) / 1e3, "us", goal_p99, NULL);
    snprintf(n, sizeof(n), "%s latency p99.9", prefix);
    rcb_fig(n, (double)rcb_hist_pct(h, 99.9) / 1e3, "us", goal_p999, NULL);
    snprintf(n, sizeof(n), "%s latency max", prefix);
    char note[64];
    snprintf(note, sizeof(note), "%llu samples", (unsigned long long)h->count);
    rcb_fig(n, (double)h->max / 1e3, "us", NULL, note);
}
