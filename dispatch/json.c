/*
 * json.c - see json.h.
 */
#include "dispatch/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    default:
        return "an object";
    }
}

int wb_json_msg_decode(wb_json_msg_t *m, const void *data, size_t len, char *err, size_t errlen)
{
    memset(m, 0, sizeof(*m));
    json_error_t je;
    json_t *v = json_loadb(data, len, JSON_DECODE_ANY, &je);
    if (v == NULL) {
        if (errlen > 0)
            snprintf(err, errlen, "%s at byte %d", je.text, je.position);
        return WB_EPROTO;
    }
    if (!json_is_object(v)) {
        if (errlen > 0)
            snprintf(err, errlen, "got %s", type_name(v));
        json_decref(v);
        return WB_EINVAL;
    }
    m->obj = v;
    json_t *t = json_object_get(v, "type");
    m->has_type = t != NULL;
    m->type = json_is_string(t) ? json_string_value(t) : NULL;
    m->id = json_object_get(v, "id");
    return 0;
}

void wb_json_msg_free(wb_json_msg_t *m)
{
    json_decref(m->obj);
    memset(m, 0, sizeof(*m));
}

int wb_json_route(const char *const *names, size_t n, const char *type)
{
    if (type == NULL)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], type) == 0)
            return (int)i;
    return -1;
}

int wb_json_str(const json_t *obj, const char *key, const char **s, size_t *len)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return WB_ENOENT;
    if (!json_is_string(v))
        return WB_EINVAL;
    *s = json_string_value(v);
    *len = json_string_length(v);
    return 0;
}

char *wb_json_encode(const json_t *v, size_t *len)
{
    size_t flags = JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17);
    size_t n = json_dumpb(v, NULL, 0, flags);
    if (n == 0)
        return NULL;
    char *buf = malloc(n + 1);
    if (buf == NULL)
        return NULL;
    if (json_dumpb(v, buf, n, flags) != n) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}
