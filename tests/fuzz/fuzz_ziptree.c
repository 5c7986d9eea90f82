/*
 * fuzz_ziptree.c - wb_ziptree_extract (apps/wormhole/ziptree.h) on
 * arbitrary bytes, as a received directory transfer.
 *
 * The bytes become an archive file in a private temporary root and are
 * extracted into root/d with small bounds (1 MiB, 64 entries). Then the
 * whole root is walked without following links: nothing may exist but the
 * root, the archive and root/d with what is under it; no symlink anywhere;
 * after success at most 64 entries and 1 MiB of file data under root/d;
 * after a refusal a reason and no root/d at all. libzip itself is not
 * instrumented; the harness's checks are what the fuzzer is after.
 */
#define _GNU_SOURCE /* nftw's FTW_PHYS, FTW_DEPTH */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <fcntl.h>

#include "apps/wormhole/ziptree.h"
#include "runtime/error.h"

#define MAX_BYTES (1u << 20)
#define MAX_FILES 64

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "fuzz_ziptree: %s:%d: check failed: %s\n", __FILE__, __LINE__, #x);    \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static char root[64], zip_path[96], dest[96];
static size_t dest_len;
static uint64_t seen_bytes, seen_entries;

static int check_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)ftw;
    if (type == FTW_SL || type == FTW_SLN || S_ISLNK(st->st_mode)) {
        fprintf(stderr, "fuzz_ziptree: a symlink was made: %s\n", path);
        abort();
    }
    if (!strcmp(path, root) || !strcmp(path, zip_path) || !strcmp(path, dest))
        return 0;
    if (strncmp(path, dest, dest_len) != 0 || path[dest_len] != '/') {
        fprintf(stderr, "fuzz_ziptree: written outside the destination: %s\n", path);
        abort();
    }
    CHECK(type == FTW_F || type == FTW_D || type == FTW_DP);
    CHECK(S_ISREG(st->st_mode) || S_ISDIR(st->st_mode));
    CHECK((st->st_mode & 07000) == 0);
    seen_entries++;
    if (S_ISREG(st->st_mode))
        seen_bytes += (uint64_t)st->st_size;
    return 0;
}

static void remove_root(void)
{
    rmdir(root);
}

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st, (void)type, (void)ftw;
    CHECK(remove(path) == 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!root[0]) {
        umask(022);
        snprintf(root, sizeof root, "/tmp/fuzz_ziptree.XXXXXX");
        CHECK(mkdtemp(root) != NULL);
        snprintf(zip_path, sizeof zip_path, "%s/in.zip", root);
        snprintf(dest, sizeof dest, "%s/d", root);
        dest_len = strlen(dest);
        atexit(remove_root);
    }
    int fd = open(zip_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(fd >= 0);
    CHECK(size == 0 || write(fd, data, size) == (ssize_t)size);
    CHECK(close(fd) == 0);

    char err[256] = "";
    int rc = wb_ziptree_extract(zip_path, dest, MAX_BYTES, MAX_FILES, err, sizeof err);
    CHECK(rc == 0 || rc == WB_ECORRUPT || rc == WB_EPROTO || rc == WB_ETOOBIG || rc == WB_EIO);

    seen_bytes = seen_entries = 0;
    CHECK(nftw(root, check_one, 16, FTW_PHYS) == 0);
    struct stat st;
    if (rc == 0) {
        CHECK(lstat(dest, &st) == 0 && S_ISDIR(st.st_mode));
        CHECK(seen_bytes <= MAX_BYTES);
        CHECK(seen_entries <= MAX_FILES * (uint64_t)WB_ZIPTREE_MAX_DEPTH);
        CHECK(nftw(dest, remove_one, 16, FTW_PHYS | FTW_DEPTH) == 0);
    } else {
        CHECK(err[0] != '\0');
        CHECK(lstat(dest, &st) != 0);
    }
    CHECK(unlink(zip_path) == 0);
    return 0;
}
