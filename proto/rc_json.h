/*
 * rc_json: msgpack <-> JSON, for the WebSocket `?format=json` mode and the
 * command-line client.  JSON text is parsed by jansson (Debian
 * libjansson-dev); JSON is written directly, in jansson's compact form.
 * docs/PROTOCOL.md ("JSON mode") says why.  The mapping:
 *
 *   msgpack -> JSON: nil/bool/str/array/map map to their JSON twins; ints
 *   are exact (a uint above 2^63-1, which JSON libraries cannot hold, is
 *   written as a decimal string); floats become JSON numbers (NaN and
 *   infinities, which JSON lacks, become null); bin becomes a base64 string
 *   (RFC 4648, padded); ext becomes {"ext": type, "data": base64}; map keys
 *   that are not strings are stringified (42 -> "42", true -> "true",
 *   nil -> "null", 1.5 -> "1.5", bin -> base64, arrays, maps and ext ->
 *   the base64 of their msgpack bytes); when
 *   two keys stringify alike, the later one wins.  Strings that are not
 *   valid UTF-8 (only possible inside an event's opaque `data`) have each
 *   bad byte replaced by U+FFFD.
 *
 *   JSON -> msgpack: integers stay integers (smallest encoding), other
 *   numbers become float64, objects keep their key order; duplicate keys
 *   are refused.
 *
 * Both nest at most RC_JSON_DEPTH_MAX containers deep.
 */
#ifndef RC_JSON_H
#define RC_JSON_H

#include <stddef.h>

#include "rc_buf.h"

#define RC_JSON_DEPTH_MAX                                                                          \
    300 /* above --max-data-depth's 256 plus the frame, ev and terminal levels */

/* Appends the JSON text (UTF-8, compact, no NUL) of the single msgpack value
 * mp[0..len) to out_json.  RC_EPROTO when mp is not exactly one valid
 * msgpack value, RC_ELIMIT when it nests too deep, RC_ENOMEM.  On error
 * out_json is left as it was. */
int rc_json_from_msgpack(const void *mp, size_t len, struct rc_buf *out_json);

/* Appends the msgpack of the JSON text json[0..len) (any JSON value) to
 * out_mp.  RC_EPROTO on invalid JSON (including duplicate keys and integers
 * outside int64), RC_ELIMIT when it nests too deep, RC_ENOMEM.  On error
 * out_mp is left as it was. */
int rc_json_to_msgpack(const char *json, size_t len, struct rc_buf *out_mp);

/* As rc_json_to_msgpack; on error why (if not NULL) gets a NUL-terminated
 * reason with the line and column, e.g. "line 1 column 7: ...". */
int rc_json_to_msgpack_ex(const char *json, size_t len, struct rc_buf *out_mp, char *why,
                          size_t why_len);

/* Appends the RFC 4648 base64 (padded) of p[0..len) to out. */
int rc_json_base64(const void *p, size_t len, struct rc_buf *out);

#endif
