#include "rc_alloc.h"
#include "rc_error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * mallctl is a weak reference: programs that link jemalloc resolve it, the
 * sanitizer builds and the tests leave it NULL and get RC_ENOTSUP.  Debian's
 * jemalloc is built without a symbol prefix, so it replaces malloc itself.
 */
extern int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen)
    __attribute__((weak));

/* Likewise weak: jemalloc's sized free (rc_free_sized). */
extern void sdallocx(void *ptr, size_t size, int flags) __attribute__((weak));

void *rc_malloc(size_t size)
{
    return malloc(size);
}

void *rc_calloc(size_t n, size_t size)
{
    return calloc(n, size);
}

void *rc_realloc(void *p, size_t size)
{
    return realloc(p, size);
}

void rc_free(void *p)
{
    free(p);
}

void rc_free_sized(void *p, size_t size)
{
    if (p != NULL && sdallocx != NULL)
        sdallocx(p, size, 0);
    else
        free(p);
}

char *rc_strndup(const char *s, size_t len)
{
    char *d = malloc(len + 1);
    if (d == NULL)
        return NULL;
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

int rc_alloc_stats(struct rc_alloc_stats *st)
{
    if (mallctl == NULL)
        return RC_ENOTSUP;
    /* jemalloc caches its statistics; bumping "epoch" refreshes them. */
    uint64_t epoch = 1;
    size_t len = sizeof(epoch);
    if (mallctl("epoch", &epoch, &len, &epoch, len) != 0)
        return RC_EIO;
    size_t v = 0;
    len = sizeof(v);
    if (mallctl("stats.allocated", &v, &len, NULL, 0) != 0)
        return RC_EIO;
    st->allocated = v;
    len = sizeof(v);
    if (mallctl("stats.resident", &v, &len, NULL, 0) != 0)
        return RC_EIO;
    st->resident = v;
    return RC_OK;
}

const char *rc_alloc_backend(void)
{
    return mallctl != NULL ? "jemalloc" : "libc";
}
