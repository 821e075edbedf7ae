/*
 * rc_nngaddr: address formatting (see rc_nngaddr.h).
 */
#include "rc_nngaddr.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "rc_alloc.h"

void rc_nngaddr_format(const nng_sockaddr *sa, const char *label, char *out, size_t cap)
{
    char host[64];
    switch (sa->s_family) {
    case NNG_AF_INET:
        inet_ntop(AF_INET, &sa->s_in.sa_addr, host, sizeof(host));
        snprintf(out, cap, "%s:%u", host, ntohs(sa->s_in.sa_port));
        break;
    case NNG_AF_INET6:
        inet_ntop(AF_INET6, sa->s_in6.sa_addr, host, sizeof(host));
        snprintf(out, cap, "[%s]:%u", host, ntohs(sa->s_in6.sa_port));
        break;
    case NNG_AF_IPC:
        snprintf(out, cap, "ipc:%.60s (%s)", sa->s_ipc.sa_path, label);
        break;
    default:
        snprintf(out, cap, "%s", label);
        break;
    }
}

char *rc_nngaddr_bound_url(const char *url, int port)
{
    nng_url *u = NULL;
    char *out = NULL;
    if (port > 0 && strncmp(url, "tcp", 3) == 0 && nng_url_parse(&u, url) == 0) {
        size_t n = strlen(url) + 32;
        out = rc_malloc(n);
        if (out) {
            bool v6 = strchr(u->u_hostname, ':') != NULL;
            snprintf(out, n, "%s://%s%s%s:%d", u->u_scheme, v6 ? "[" : "", u->u_hostname,
                     v6 ? "]" : "", port);
        }
    }
    if (u)
        nng_url_free(u);
    if (!out)
        out = rc_strndup(url, strlen(url));
    return out;
}
