/*
 * json.h - the JSON codec of dispatch/: messages that are JSON objects
 * routed by their "type" string (the Magic Wormhole protocols).
 *
 * Parsing and printing are jansson's (strict RFC 8259 parser: UTF-8 checked,
 * nesting bounded by jansson's depth limit, numbers that overflow a double
 * refused, trailing whitespace allowed, anything else after the value
 * refused). What this file adds is the routing header: the message must be
 * an object, and its "type" and "id" members are picked out once so that a
 * dispatcher can route on them without knowing the rest.
 */
#ifndef WB_DISPATCH_JSON_H
#define WB_DISPATCH_JSON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    json_t *obj;      /* the whole message (owned; wb_json_msg_free) */
    const char *type; /* the "type" string; NULL when absent or not a string */
    int has_type;     /* a "type" member is present, whatever its JSON type */
    json_t *id;       /* the "id" member (borrowed from obj), or NULL */
} wb_json_msg_t;

/* Decode data[0..len) as one JSON object. Returns 0; WB_EPROTO when it is
 * not JSON (err gets jansson's reason with its position); WB_EINVAL when it
 * is JSON but not an object (err says which type it was). On error m holds
 * nothing. */
int wb_json_msg_decode(wb_json_msg_t *m, const void *data, size_t len, char *err, size_t errlen);
void wb_json_msg_free(wb_json_msg_t *m);

/* The index of type in names[0..n), or -1: a type table for routing. */
int wb_json_route(const char *const *names, size_t n, const char *type);

/* A member that must be a string, when present. Returns 0 with *s and *len
 * set; WB_ENOENT when absent; WB_EINVAL when it is not a string. */
int wb_json_str(const json_t *obj, const char *key, const char **s, size_t *len);

/* The compact encoding of v (any JSON value) in a malloc'd, NUL-terminated
 * buffer; *len excludes the NUL. NULL on ENOMEM. Non-ASCII is written as
 * UTF-8, reals with 17 significant digits (they read back exactly). */
char *wb_json_encode(const json_t *v, size_t *len);

#endif
