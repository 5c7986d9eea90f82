/*
 * identity.c - the node key file. See identity.h.
 */
#include "apps/peer/identity.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/error.h"

void wb_identity_hex(const uint8_t id[32], char out[65])
{
    sodium_bin2hex(out, 65, id, 32);
}

int wb_identity_parse(const char *hex, uint8_t id[32])
{
    size_t n = 0;
    const char *end;
    if (hex == NULL || strlen(hex) != 64 || sodium_hex2bin(id, 32, hex, 64, NULL, &n, &end) != 0 ||
        n != 32 || *end != 0)
        return WB_EINVAL;
    return 0;
}

static int mkdirs(const char *dir)
{
    char p[4096];
    if (strlen(dir) >= sizeof(p))
        return -1;
    strcpy(p, dir);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = 0;
        if (mkdir(p, 0700) != 0 && errno != EEXIST)
            return -1;
        *s = '/';
    }
    return mkdir(p, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

static int load(const char *path, uint8_t pk[32], uint8_t sk[64], char *err, size_t errlen)
{
    json_error_t je;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (j == NULL) {
        wb_errf(err, errlen, "%s: %s", path, je.text);
        return WB_EINVAL;
    }
    const char *seedhex = json_string_value(json_object_get(j, "seed"));
    const char *idhex = json_string_value(json_object_get(j, "id"));
    const char *type = json_string_value(json_object_get(j, "type"));
    uint8_t seed[32], id[32];
    int rc = WB_EINVAL;
    if (type == NULL || strcmp(type, "ed25519") != 0)
        wb_errf(err, errlen, "%s: type must be \"ed25519\"", path);
    else if (wb_identity_parse(seedhex, seed) != 0 || wb_identity_parse(idhex, id) != 0)
        wb_errf(err, errlen, "%s: seed and id must be 64 hex characters each", path);
    else {
        crypto_sign_seed_keypair(pk, sk, seed);
        if (sodium_memcmp(pk, id, 32) != 0)
            wb_errf(err, errlen, "%s: id does not match the seed", path);
        else
            rc = 0;
    }
    sodium_memzero(seed, sizeof(seed));
    json_decref(j);
    return rc;
}

int wb_identity_load(const char *dir, uint8_t pk[32], uint8_t sk[64], int *created, char *err,
                     size_t errlen)
{
    char path[4200], tmp[4220];
    *created = 0;
    if (dir == NULL || snprintf(path, sizeof(path), "%s/node_key.json", dir) >= (int)sizeof(path)) {
        wb_errf(err, errlen, "data directory path too long");
        return WB_EINVAL;
    }
    if (access(path, F_OK) == 0)
        return load(path, pk, sk, err, errlen);
    if (mkdirs(dir) != 0) {
        wb_errf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return WB_ESYS;
    }
    uint8_t seed[32];
    randombytes_buf(seed, sizeof(seed));
    crypto_sign_seed_keypair(pk, sk, seed);
    char seedhex[65], idhex[65], text[256];
    wb_identity_hex(seed, seedhex);
    wb_identity_hex(pk, idhex);
    int n = snprintf(text, sizeof(text),
                     "{\"type\": \"ed25519\", \"seed\": \"%s\", \"id\": \"%s\"}\n", seedhex, idhex);
    sodium_memzero(seed, sizeof(seed));
    sodium_memzero(seedhex, sizeof(seedhex));
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
    int ok = fd >= 0 && write(fd, text, (size_t)n) == n && fsync(fd) == 0;
    int e = errno;
    sodium_memzero(text, sizeof(text));
    if (fd >= 0)
        close(fd);
    if (!ok || rename(tmp, path) != 0) {
        if (ok)
            e = errno;
        unlink(tmp);
        wb_errf(err, errlen, "cannot write %s: %s", path, strerror(e));
        return WB_ESYS;
    }
    *created = 1;
    return 0;
}
