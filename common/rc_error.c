#include "rc_error.h"

const char *rc_error_name(int err)
{
    switch (err) {
    case RC_OK:
        return "RC_OK";
#define RC_ERROR_NAME(name, value, msg)                                                            \
    case RC_##name:                                                                                \
        return "RC_" #name;
        RC_ERROR_MAP(RC_ERROR_NAME)
#undef RC_ERROR_NAME
    default:
        return "RC_UNKNOWN";
    }
}

const char *rc_error_message(int err)
{
    switch (err) {
    case RC_OK:
        return "success";
#define RC_ERROR_MSG(name, value, msg)                                                             \
    case RC_##name:                                                                                \
        return msg;
        RC_ERROR_MAP(RC_ERROR_MSG)
#undef RC_ERROR_MSG
    default:
        return "unknown error";
    }
}
