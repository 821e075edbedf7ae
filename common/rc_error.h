/*
 * rc_error: the one error enum of runcast.
 *
 * Every library function that can fail returns 0 on success or one of the
 * negative RC_E* codes below.  The table RC_ERROR_MAP is the single source of
 * each code's value, name and message, so adding a code is one line.
 */
#ifndef RC_ERROR_H
#define RC_ERROR_H

#define RC_ERROR_MAP(X)                                                                            \
    X(ENOMEM, -1, "out of memory")                                                                 \
    X(EINVAL, -2, "invalid argument")                                                              \
    X(EOVERLOAD, -3, "over a queue or mailbox limit")                                              \
    X(ECLOSED, -4, "object is stopped or closed")                                                  \
    X(ENOTFOUND, -5, "not found")                                                                  \
    X(ETIMEDOUT, -6, "timed out")                                                                  \
    X(EPROTO, -7, "protocol error")                                                                \
    X(ELIMIT, -8, "a configured limit was reached")                                                \
    X(EEXIST, -9, "already exists")                                                                \
    X(ENOTSUP, -10, "not supported in this build")                                                 \
    X(EIO, -11, "I/O or transport error")                                                          \
    X(ETOOBIG, -12, "too large")                                                                   \
    X(ESTATE, -13, "operation not allowed in the current state")                                   \
    X(ESHUTDOWN, -14, "shutting down")                                                             \
    X(EADDRINUSE, -15, "address in use")

enum rc_error {
    RC_OK = 0,
#define RC_ERROR_ENUM(name, value, msg) RC_##name = (value),
    RC_ERROR_MAP(RC_ERROR_ENUM)
#undef RC_ERROR_ENUM
};

/* "RC_ENOMEM" etc.; "RC_OK" for 0; "RC_UNKNOWN" for a value not in the map. */
const char *rc_error_name(int err);

/* A message a person can read; never NULL. */
const char *rc_error_message(int err);

#endif
