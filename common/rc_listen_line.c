#include "rc_listen_line.h"

#include <stdlib.h>
#include <string.h>

#include "rc_error.h"

int rc_listen_line_find(const char *text, const char *label, char *out, size_t cap)
{
    static const char intro[] = "runcastd listening: ";
    const char *p = text != NULL ? strstr(text, intro) : NULL;
    if (p == NULL || label == NULL || out == NULL || cap == 0)
        return RC_ENOTFOUND;
    p += sizeof(intro) - 1;
    size_t ll = strlen(label);
    const char *end = p + strcspn(p, "\n");
    /* Entries are "LABEL ADDR" separated by ", ": compare whole labels so
     * "ingest" does not match "ingest-ack". */
    while (p < end) {
        size_t n = strcspn(p, ",\n");
        if (n > ll && strncmp(p, label, ll) == 0 && p[ll] == ' ') {
            size_t an = n - ll - 1;
            if (an == 0)
                return RC_ENOTFOUND;
            if (an >= cap)
                return RC_ETOOBIG;
            memcpy(out, p + ll + 1, an);
            out[an] = '\0';
            return RC_OK;
        }
        p += n;
        if (p < end && p[0] == ',' && p[1] == ' ')
            p += 2;
        else
            break;
    }
    return RC_ENOTFOUND;
}

int rc_listen_line_port(const char *addr)
{
    const char *c = addr != NULL ? strrchr(addr, ':') : NULL;
    if (c == NULL || c[1] == '\0')
        return -1;
    char *e;
    long v = strtol(c + 1, &e, 10);
    return (*e == '\0' && v > 0 && v <= 65535) ? (int)v : -1;
}
