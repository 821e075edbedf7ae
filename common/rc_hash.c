#include "rc_hash.h"

#include <errno.h>
#include <stdint.h>
#include <sys/random.h>
#include <unistd.h>

#include "rc_clock.h"

struct rc_hash_state rc_hash_key_state;

void rc_hash_seed(uint64_t k0, uint64_t k1)
{
    rc_hash_key_state.v0 = k0 ^ 0x736f6d6570736575u;
    rc_hash_key_state.v1 = k1 ^ 0x646f72616e646f6du;
    rc_hash_key_state.v2 = k0 ^ 0x6c7967656e657261u;
    rc_hash_key_state.v3 = k1 ^ 0x7465646279746573u;
}

/* Runs before main (and before any test body): every table of the process
 * uses one key, and it is never zero-initialised in use. */
__attribute__((constructor)) static void hash_key_init(void)
{
    uint64_t k[2];
    uint8_t *p = (uint8_t *)k;
    size_t got = 0;
    while (got < sizeof(k)) {
        ssize_t n = getrandom(p + got, sizeof(k) - got, 0);
        if (n > 0)
            got += (size_t)n;
        else if (n < 0 && errno != EINTR)
            break;
    }
    if (got < sizeof(k)) {
        /* No getrandom (kernel < 3.17): a weaker key from what varies per
         * process (time, pid, the stack's ASLR address), still unknown to
         * a remote client. */
        k[0] = rc_clock_mono_ns() ^ (uint64_t)rc_clock_wall_ms() << 20;
        k[1] = (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)&k;
        for (int i = 0; i < 2; i++) { /* splitmix64's finaliser */
            k[i] = (k[i] ^ (k[i] >> 30)) * 0xBF58476D1CE4E5B9u;
            k[i] = (k[i] ^ (k[i] >> 27)) * 0x94D049BB133111EBu;
            k[i] ^= k[i] >> 31;
        }
    }
    rc_hash_seed(k[0], k[1]);
}
