#include "rc_push_idle.h"

#include "rc_clock.h"
#include "rc_error.h"

#include <errno.h>
#include <poll.h>

int rc_push_idle_fd(nng_socket s, int *fdp)
{
    if (fdp == NULL)
        return RC_EINVAL;
    int fd;
    if (nng_socket_get_int(s, NNG_OPT_SENDFD, &fd) != 0)
        return RC_EIO;
    *fdp = fd;
    return RC_OK;
}

int rc_push_idle_wait(int fd, uint64_t deadline_ms)
{
    if (fd < 0)
        return RC_EINVAL;
    for (;;) {
        uint64_t now = rc_clock_mono_ms();
        uint64_t left = deadline_ms > now ? deadline_ms - now : 0;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int n = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
        if (n > 0)
            return RC_OK;
        if (n == 0) {
            if (left <= 60000)
                return RC_ETIMEDOUT;
            continue;
        }
        if (errno != EINTR)
            return RC_EIO;
    }
}
