/*
 * rc_hash: the keyed hash (SipHash-1-3) for tables keyed by bytes from
 * outside the process.
 */
#ifndef RC_HASH_H
#define RC_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/*
 * The hash of every table keyed by bytes a publisher or subscriber chose:
 * the run shards, the conversation and waiting-subscription maps, the
 * ingress' per-batch grouping (it takes this hash) and each run's
 * idempotency index (rc_run.c).  Unkeyed, such a hash lets a client who
 * reads this source compute ids that all land in one bucket: chains (or
 * probe sequences) of n entries walked on every lookup, O(n^2) for a flood
 * that passes every validation, one stalled shard mutex for every other run.
 *
 * So it is keyed by a 128-bit secret drawn from getrandom(2) when the
 * process starts, and it is SipHash-1-3 (Aumasson & Bernstein; what Rust's
 * HashMap and CPython's str/bytes hash use for this purpose; Redis uses
 * SipHash-1-2): a keyed PRF whose key enters the state that every round
 * mixes, so without the key an attacker cannot predict any output bit nor
 * find inputs that collide for all keys.  A seeded multiply-xorshift (the
 * previous hash with the seed as its initial value) is not enough: with
 * the seed only XORed in, state differences propagate independently of it
 * and "seed-independent" multicollisions are known for that family
 * (MurmurHash2/3, CityHash).  One compression round per 8 bytes and three
 * to finish: ~110 instructions for the bench's 14-byte ids (35 unkeyed),
 * once per event in the ingress (docs/ARCHITECTURE.md, Registry).
 * Byte order is SipHash's (little-endian words), so the reference values
 * in tests/broker/test_runs.c hold on any host.  The broker's registry
 * (rc_runs_hash) and the CLI's `tail --all` index use it.
 */

/* The four initial state words, the key already folded in.  Written before
 * any other thread exists (a constructor in rc_hash.c, or rc_hash_seed,
 * which tests call before they build a table); read only afterwards, so
 * no lock.  Not for direct use. */
struct rc_hash_state {
    uint64_t v0, v1, v2, v3;
};
extern struct rc_hash_state rc_hash_key_state;

/* Replaces the process's random key (tests and benchmarks: a fixed key, or
 * two keys compared).  Call while no other thread hashes and before any
 * table is built: tables built under the old key would lose entries. */
void rc_hash_seed(uint64_t k0, uint64_t k1);

static inline uint64_t rc_hash_le64_(const char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v)); /* one unaligned load */
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline uint64_t rc_hash_le32_(const char *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

static inline uint64_t rc_hash_rotl_(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

#define RC_HASH_SIPROUND_()                                                                        \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = rc_hash_rotl_(v1, 13) ^ v0;                                                           \
        v0 = rc_hash_rotl_(v0, 32);                                                                \
        v2 += v3;                                                                                  \
        v3 = rc_hash_rotl_(v3, 16) ^ v2;                                                           \
        v0 += v3;                                                                                  \
        v3 = rc_hash_rotl_(v3, 21) ^ v0;                                                           \
        v2 += v1;                                                                                  \
        v1 = rc_hash_rotl_(v1, 17) ^ v2;                                                           \
        v2 = rc_hash_rotl_(v2, 32);                                                                \
    } while (0)

/* SipHash-1-3 of p[0..len) under the process's key.  Inline: the broker
 * calls it once per event. */
static inline uint64_t rc_hash_keyed(const void *vp, size_t len)
{
    const char *p = vp;
    uint64_t v0 = rc_hash_key_state.v0, v1 = rc_hash_key_state.v1;
    uint64_t v2 = rc_hash_key_state.v2, v3 = rc_hash_key_state.v3;
    for (const char *end = p + (len & ~(size_t)7); p != end; p += 8) {
        uint64_t m = rc_hash_le64_(p);
        v3 ^= m;
        RC_HASH_SIPROUND_();
        v0 ^= m;
    }
    /* The last block: the 0-7 remaining bytes, the length in the top byte.
     * Read without a loop per byte: with 8+ bytes in all, the word ending
     * at the end shifted down; else two overlapping halves, or the first,
     * middle and last bytes (each byte lands at its own position, the
     * overlaps OR a byte with itself). */
    size_t r = len & 7;
    uint64_t b = (uint64_t)len << 56;
    if (r && len >= 8)
        b |= rc_hash_le64_(p + r - 8) >> (64 - 8 * r);
    else if (r >= 4)
        b |= rc_hash_le32_(p) | rc_hash_le32_(p + r - 4) << (8 * (r - 4));
    else if (r)
        b |= (uint64_t)(uint8_t)p[0] | (uint64_t)(uint8_t)p[r / 2] << (8 * (r / 2)) |
             (uint64_t)(uint8_t)p[r - 1] << (8 * (r - 1));
    v3 ^= b;
    RC_HASH_SIPROUND_();
    v0 ^= b;
    v2 ^= 0xff;
    RC_HASH_SIPROUND_();
    RC_HASH_SIPROUND_();
    RC_HASH_SIPROUND_();
    return v0 ^ v1 ^ v2 ^ v3;
}

#endif
