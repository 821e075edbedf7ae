/*
 * rc_alloc: the one allocation wrapper of runcast.
 *
 * All runcast code allocates through these functions so that the allocator
 * stays a link-time choice: the programs link jemalloc as the process
 * allocator (so malloc is jemalloc, with its per-thread caches), sanitizer
 * builds use the sanitizer's allocator.  rc_alloc_stats reads jemalloc's
 * statistics through mallctl when jemalloc is present, for /metrics.
 */
#ifndef RC_ALLOC_H
#define RC_ALLOC_H

#include <stddef.h>

void *rc_malloc(size_t size);
void *rc_calloc(size_t n, size_t size);
void *rc_realloc(void *p, size_t size);
/* Frees p; NULL does nothing. */
void rc_free(void *p);
/* Frees p, allocated with exactly size bytes requested: with jemalloc,
 * sdallocx, which finds the size class from size instead of looking the
 * pointer up; elsewhere free. */
void rc_free_sized(void *p, size_t size);
/* A NUL-terminated copy of the first len bytes of s, or NULL on ENOMEM. */
char *rc_strndup(const char *s, size_t len);

struct rc_alloc_stats {
    size_t allocated; /* bytes the application holds */
    size_t resident;  /* bytes of physical memory the allocator holds */
};

/* Fills st from jemalloc's mallctl ("stats.allocated", "stats.resident").
 * Returns RC_ENOTSUP when the process does not run on jemalloc. */
int rc_alloc_stats(struct rc_alloc_stats *st);

/* "jemalloc" or "libc" (sanitizer builds and programs without jemalloc). */
const char *rc_alloc_backend(void);

#endif
