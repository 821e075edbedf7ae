#include "rc_tipc.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The test process's directory ("" until the first URL); tests are
 * single-process and make URLs on their main thread. */
static char dir[64];
static pid_t dir_pid;

void rc_tipc_url(char *out, size_t cap, const char *tag)
{
    static unsigned n;
    if (dir[0] == '\0' || dir_pid != getpid()) {
        snprintf(dir, sizeof(dir), "/tmp/rc-ipc-%d-XXXXXX", (int)getpid());
        cr_assert(mkdtemp(dir) != NULL, "mkdtemp %s: %s", dir, strerror(errno));
        dir_pid = getpid();
    }
    int len = snprintf(out, cap, "ipc://%s/%s-%u.sock", dir, tag, n++);
    cr_assert(len > 0 && (size_t)len < cap, "ipc URL too long for %zu bytes", cap);
}

void rc_tipc_cleanup(void)
{
    if (dir[0] == '\0' || dir_pid != getpid())
        return; /* none made here (an inherited name is the parent's) */
    DIR *d = opendir(dir);
    if (d != NULL) {
        char path[sizeof(dir) + 260];
        for (struct dirent *de; (de = readdir(d)) != NULL;) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
    dir[0] = '\0';
}
