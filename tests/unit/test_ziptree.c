/*
 * test_ziptree.c - the directory archive (apps/wormhole/ziptree.h): a tree
 * with nested folders, an empty file, a non-ASCII name, an executable, a
 * link to a file (followed), a directory link loop (skipped) and an empty
 * directory (lost) goes through build and extract with the same bytes and
 * modes; a fifo is an error, or skipped when told; several paths go under
 * their basenames, two of one basename are refused; a hostile archive
 * (escaping names, backslashes, a symlink, a duplicate, a NUL-cut name, a
 * deflate bomb, a lying size, too many entries) is refused with nothing
 * left behind; ZIP64 past 65535 entries. Interop: Python's zipfile reads our
 * archives with the right names and modes, and we extract one made the way
 * the Python sender makes it (skipped when /usr/bin/python3 is missing).
 * A file over 4 GiB is tried only with WB_ZIPTREE_BIG=1 (slow, 8 GiB disk).
 */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include "apps/wormhole/ziptree.h"
#include "runtime/error.h"

#define PYTHON "/usr/bin/python3"

typedef struct {
    int count;
    char all[4096];
    uint64_t last_done, last_total;
    int progress_calls;
} sink_t;

static void on_warn(const char *msg, void *user)
{
    sink_t *s = user;
    s->count++;
    size_t l = strlen(s->all);
    snprintf(s->all + l, sizeof s->all - l, "%s\n", msg);
}

static void on_progress(uint64_t done, uint64_t total, void *user)
{
    sink_t *s = user;
    assert_true(done <= total);
    assert_true(done >= s->last_done);
    s->last_done = done;
    s->last_total = total;
    s->progress_calls++;
}

static char *mkroot(void)
{
    char tmpl[] = "/tmp/wb_ziptree.XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    return strdup(tmpl);
}

static void rm_rf(char *root)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "chmod -R u+rwx '%s' 2>/dev/null; rm -rf '%s'", root, root);
    assert_int_equal(system(cmd), 0);
    free(root);
}

/* A path under root, in one of 64 rotating buffers. */
static const char *P(const char *root, const char *fmt, ...)
{
    static char bufs[64][1024];
    static int next;
    char *b = bufs[next++ % 64];
    int n = snprintf(b, sizeof bufs[0], "%s/", root);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b + n, sizeof bufs[0] - (size_t)n, fmt, ap);
    va_end(ap);
    return b;
}

static void put(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(close(fd), 0);
}

static void mk(const char *path)
{
    assert_int_equal(mkdir(path, 0755), 0);
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t cap = 4096, n = 0;
    char *b = malloc(cap + 1);
    size_t r;
    while ((r = fread(b + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap)
            b = realloc(b, (cap *= 2) + 1);
    }
    fclose(f);
    b[n] = '\0';
    *len = n;
    return b;
}

/* path holds exactly data, as a regular file (not a link) with mode. */
static void check_file(const char *path, const void *data, size_t len, mode_t mode)
{
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, mode);
    size_t n;
    char *b = slurp(path, &n);
    assert_int_equal(n, len);
    assert_memory_equal(b, data, len);
    free(b);
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (uint64_t)st.st_size;
}

/* ---- the sample tree ---------------------------------------------------- */

#define UNI_NAME                                                                                   \
    "\xc3\xbc"                                                                                     \
    "n"                                                                                            \
    "\xc3\xaf"                                                                                     \
    "code \xe2\x98\x83.txt" /* "ünïcode ☃.txt" */

static const char run_sh[] = "#!/bin/sh\necho hi\n";
static char big[300 * 1024];

static void make_tree(const char *root)
{
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < sizeof big; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        big[i] = i < sizeof big / 2 ? (char)x : "compressible "[i % 13];
    }
    mk(P(root, "src"));
    put(P(root, "src/a.txt"), "hello\n", 6, 0644);
    put(P(root, "src/empty"), "", 0, 0644);
    put(P(root, "src/run.sh"), run_sh, strlen(run_sh), 0755);
    put(P(root, "src/secret"), "s3cret", 6, 0600);
    put(P(root, "src/" UNI_NAME), "snow", 4, 0640);
    mk(P(root, "src/sub"));
    mk(P(root, "src/sub/deeper"));
    put(P(root, "src/sub/deeper/data.bin"), big, sizeof big, 0644);
    mk(P(root, "src/emptydir"));
    assert_int_equal(symlink("a.txt", P(root, "src/link")), 0);
    assert_int_equal(symlink("..", P(root, "src/sub/loop")), 0);
}

static const uint64_t tree_files = 7;
#define TREE_BYTES (6 + 0 + 6 + strlen(run_sh) + 6 + 4 + sizeof big)

/* dir holds the sample tree's files as extracted: links became files,
 * the loop and the empty directory are gone. */
static void check_tree(const char *dir)
{
    char p[1024];
#define F(rel) (snprintf(p, sizeof p, "%s/%s", dir, rel), p)
    check_file(F("a.txt"), "hello\n", 6, 0644);
    check_file(F("empty"), "", 0, 0644);
    check_file(F("run.sh"), run_sh, strlen(run_sh), 0755);
    check_file(F("secret"), "s3cret", 6, 0600);
    check_file(F(UNI_NAME), "snow", 4, 0640);
    check_file(F("link"), "hello\n", 6, 0644);
    check_file(F("sub/deeper/data.bin"), big, sizeof big, 0644);
    assert_false(exists(F("sub/loop")));
    assert_false(exists(F("emptydir")));
#undef F
}

static const char *tree_names[] = {
    "a.txt", "empty", "link", "run.sh", "secret", "sub/deeper/data.bin", UNI_NAME,
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_build_extract_tree(void **state)
{
    (void)state;
    char *root = mkroot();
    make_tree(root);
    const char *paths[] = {P(root, "src")};
    const char *zip = strdup(P(root, "t.zip"));
    sink_t s = {0};
    wb_ziptree_info_t info;
    char err[256] = "";
    int rc = wb_ziptree_build(paths, 1, zip, 0, on_warn, on_progress, &s, &info, err, sizeof err);
    assert_int_equal(rc, 0);
    assert_int_equal(info.numfiles, tree_files);
    assert_int_equal(info.numbytes, TREE_BYTES);
    assert_int_equal(info.zipsize, file_size(zip));
    struct stat st;
    assert_int_equal(stat(zip, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    /* The loop was skipped, loudly. */
    assert_int_equal(s.count, 1);
    assert_non_null(strstr(s.all, "sub/loop"));
    assert_true(s.progress_calls >= 1);
    assert_int_equal(s.last_done, TREE_BYTES);
    assert_int_equal(s.last_total, TREE_BYTES);

    /* What is in it, as libzip reads it: the names, DEFLATE, UNIX modes. */
    int zerr;
    zip_t *za = zip_open(zip, ZIP_RDONLY, &zerr);
    assert_non_null(za);
    assert_int_equal(zip_get_num_entries(za, 0), tree_files);
    const char *names[16];
    for (zip_uint64_t i = 0; i < tree_files; i++) {
        zip_stat_t zs;
        assert_int_equal(zip_stat_index(za, i, 0, &zs), 0);
        names[i] = strdup(zs.name);
        assert_int_equal(zs.comp_method, ZIP_CM_DEFLATE);
        zip_uint8_t opsys;
        zip_uint32_t attr;
        assert_int_equal(zip_file_get_external_attributes(za, i, 0, &opsys, &attr), 0);
        assert_int_equal(opsys, ZIP_OPSYS_UNIX);
        mode_t want = !strcmp(zs.name, "run.sh")   ? 0755
                      : !strcmp(zs.name, "secret") ? 0600
                      : !strcmp(zs.name, UNI_NAME) ? 0640
                                                   : 0644;
        assert_int_equal(attr >> 16, S_IFREG | want);
    }
    zip_discard(za);
    qsort(names, tree_files, sizeof names[0], cmp_str);
    for (size_t i = 0; i < tree_files; i++) {
        assert_string_equal(names[i], tree_names[i]);
        free((char *)names[i]);
    }

    rc = wb_ziptree_extract(zip, P(root, "out"), 1 << 20, 100, err, sizeof err);
    assert_int_equal(rc, 0);
    check_tree(P(root, "out"));
    free((char *)zip);
    rm_rf(root);
}

static void test_fifo_unsendable(void **state)
{
    (void)state;
    char *root = mkroot();
    mk(P(root, "src"));
    put(P(root, "src/a.txt"), "hello\n", 6, 0644);
    assert_int_equal(mkfifo(P(root, "src/pipe"), 0644), 0);
    const char *paths[] = {P(root, "src")};
    const char *zip = strdup(P(root, "t.zip"));
    sink_t s = {0};
    wb_ziptree_info_t info;
    char err[256] = "";

    int rc = wb_ziptree_build(paths, 1, zip, 0, on_warn, NULL, &s, &info, err, sizeof err);
    assert_int_equal(rc, WB_EINVAL);
    assert_non_null(strstr(err, "src/pipe"));
    assert_false(exists(zip));

    rc = wb_ziptree_build(paths, 1, zip, 1, on_warn, NULL, &s, &info, err, sizeof err);
    assert_int_equal(rc, 0);
    assert_int_equal(info.numfiles, 1);
    assert_int_equal(info.numbytes, 6);
    assert_int_equal(s.count, 1);
    assert_non_null(strstr(s.all, "src/pipe"));
    assert_int_equal(unlink(zip), 0);

    /* A fifo named on the command line is never skipped. */
    const char *two[] = {P(root, "src/a.txt"), P(root, "src/pipe")};
    rc = wb_ziptree_build(two, 2, zip, 1, on_warn, NULL, &s, &info, err, sizeof err);
    assert_int_equal(rc, WB_EINVAL);
    assert_false(exists(zip));

    /* An unreadable file (root reads everything: nothing to test then). */
    if (geteuid() != 0) {
        assert_int_equal(unlink(P(root, "src/pipe")), 0);
        put(P(root, "src/locked"), "x", 1, 0000);
        rc = wb_ziptree_build(paths, 1, zip, 0, on_warn, NULL, &s, &info, err, sizeof err);
        assert_int_equal(rc, WB_EIO);
        assert_non_null(strstr(err, "src/locked"));
        assert_false(exists(zip));
        rc = wb_ziptree_build(paths, 1, zip, 1, on_warn, NULL, &s, &info, err, sizeof err);
        assert_int_equal(rc, 0);
        assert_int_equal(info.numfiles, 1);
    }
    free((char *)zip);
    rm_rf(root);
}

static void test_several_paths(void **state)
{
    (void)state;
    char *root = mkroot();
    mk(P(root, "m"));
    put(P(root, "m/a.txt"), "A", 1, 0644);
    mk(P(root, "m/b"));
    mk(P(root, "m/b/x"));
    put(P(root, "m/b/x/y"), "Y", 1, 0755);
    put(P(root, "m/c.pdf"), "C", 1, 0644);
    mk(P(root, "m/d"));
    put(P(root, "m/d/a.txt"), "other", 5, 0644);
    const char *zip = strdup(P(root, "t.zip"));
    wb_ziptree_info_t info;
    char err[256] = "";

    const char *paths[] = {P(root, "m/a.txt"), P(root, "m/b/"), P(root, "m/c.pdf")};
    int rc = wb_ziptree_build(paths, 3, zip, 0, NULL, NULL, NULL, &info, err, sizeof err);
    assert_int_equal(rc, 0);
    assert_int_equal(info.numfiles, 3);
    assert_int_equal(info.numbytes, 3);
    rc = wb_ziptree_extract(zip, P(root, "out"), 1000, 10, err, sizeof err);
    assert_int_equal(rc, 0);
    check_file(P(root, "out/a.txt"), "A", 1, 0644);
    check_file(P(root, "out/b/x/y"), "Y", 1, 0755);
    check_file(P(root, "out/c.pdf"), "C", 1, 0644);
    assert_int_equal(unlink(zip), 0);

    /* One file alone goes under its name too. */
    const char *one[] = {P(root, "m/c.pdf")};
    rc = wb_ziptree_build(one, 1, zip, 0, NULL, NULL, NULL, &info, err, sizeof err);
    assert_int_equal(rc, 0);
    rc = wb_ziptree_extract(zip, P(root, "out1"), 1000, 10, err, sizeof err);
    assert_int_equal(rc, 0);
    check_file(P(root, "out1/c.pdf"), "C", 1, 0644);
    assert_int_equal(unlink(zip), 0);

    /* "." is named by what it really is. */
    const char *dot[] = {P(root, "m/b/x/."), P(root, "m/a.txt")};
    rc = wb_ziptree_build(dot, 2, zip, 0, NULL, NULL, NULL, &info, err, sizeof err);
    assert_int_equal(rc, 0);
    rc = wb_ziptree_extract(zip, P(root, "out2"), 1000, 10, err, sizeof err);
    assert_int_equal(rc, 0);
    check_file(P(root, "out2/x/y"), "Y", 1, 0755);
    assert_int_equal(unlink(zip), 0);

    const char *dup[] = {P(root, "m/a.txt"), P(root, "m/d/a.txt")};
    rc = wb_ziptree_build(dup, 2, zip, 0, NULL, NULL, NULL, &info, err, sizeof err);
    assert_int_equal(rc, WB_EINVAL);
    assert_non_null(strstr(err, "'a.txt'"));
    assert_false(exists(zip));

    /* The archive must not exist; one that does is left alone. */
    put(zip, "keep", 4, 0644);
    rc = wb_ziptree_build(paths, 3, zip, 0, NULL, NULL, NULL, &info, err, sizeof err);
    assert_int_equal(rc, WB_EEXIST);
    check_file(zip, "keep", 4, 0644);
    free((char *)zip);
    rm_rf(root);
}

static void test_empty_tree(void **state)
{
    (void)state;
    char *root = mkroot();
    mk(P(root, "src"));
    mk(P(root, "src/nothing"));
    const char *paths[] = {P(root, "src")};
    const char *zip = strdup(P(root, "t.zip"));
    wb_ziptree_info_t info;
    char err[256] = "";
    int rc = wb_ziptree_build(paths, 1, zip, 0, NULL, NULL, NULL, &info, err, sizeof err);
    assert_int_equal(rc, 0);
    assert_int_equal(info.numfiles, 0);
    assert_int_equal(info.numbytes, 0);
    assert_int_equal(info.zipsize, 22);
    assert_int_equal(file_size(zip), 22);
    rc = wb_ziptree_extract(zip, P(root, "out"), 1000, 10, err, sizeof err);
    assert_int_equal(rc, 0);
    struct stat st;
    assert_int_equal(stat(P(root, "out"), &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    free((char *)zip);
    rm_rf(root);
}

/* ---- hostile archives --------------------------------------------------- */

typedef struct {
    const char *name;
    const void *data;
    size_t len;
    int attrs; /* set opsys/attr */
    zip_uint8_t opsys;
    zip_uint32_t attr;
} zent_t;

static void make_zip(const char *path, const zent_t *e, size_t n)
{
    int zerr;
    zip_t *za = zip_open(path, ZIP_CREATE | ZIP_EXCL, &zerr);
    assert_non_null(za);
    for (size_t i = 0; i < n; i++) {
        zip_source_t *src = zip_source_buffer(za, e[i].data, e[i].len, 0);
        assert_non_null(src);
        zip_int64_t idx = zip_file_add(za, e[i].name, src, ZIP_FL_ENC_GUESS);
        assert_true(idx >= 0);
        assert_int_equal(zip_set_file_compression(za, (zip_uint64_t)idx, ZIP_CM_DEFLATE, 0), 0);
        if (e[i].attrs)
            assert_int_equal(
                zip_file_set_external_attributes(za, (zip_uint64_t)idx, 0, e[i].opsys, e[i].attr),
                0);
    }
    assert_int_equal(zip_close(za), 0);
}

/* Replace every occurrence of from by to (same length) in the file. */
static void patch(const char *path, const void *from, const void *to, size_t len)
{
    size_t n;
    char *b = slurp(path, &n);
    int hits = 0;
    for (size_t i = 0; i + len <= n; i++) {
        if (!memcmp(b + i, from, len)) {
            memcpy(b + i, to, len);
            hits++;
        }
    }
    assert_true(hits > 0);
    put(path, b, n, 0644);
    free(b);
}

static void put_u32(char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (char)(v >> (8 * i));
}

/* The archive is refused with code, and out is gone. */
static void refused(const char *root, const zent_t *e, size_t n, uint64_t max_bytes,
                    uint64_t max_files, int code, const char *why)
{
    const char *zip = P(root, "evil.zip");
    unlink(zip);
    make_zip(zip, e, n);
    char err[256] = "";
    int rc = wb_ziptree_extract(zip, P(root, "out"), max_bytes, max_files, err, sizeof err);
    if (rc != code)
        fail_msg("%s: got %s (%s), want %s", why, wb_err_name(rc), err, wb_err_name(code));
    print_message("refused (%s): %s\n", why, err);
    assert_true(err[0] != '\0');
    assert_false(exists(P(root, "out")));
    assert_false(exists(P(root, "x")));
}

#define Z(n, d)                                                                                    \
    {                                                                                              \
        n, d, sizeof(d) - 1, 0, 0, 0                                                               \
    }

static void test_extract_refuses(void **state)
{
    (void)state;
    char *root = mkroot();
    mk(P(root, "sibling"));
    const zent_t up[] = {Z("../x", "evil")};
    refused(root, up, 1, 1000, 10, WB_EPROTO, "../x");
    const zent_t abs[] = {Z("/tmp/x", "evil")};
    refused(root, abs, 1, 1000, 10, WB_EPROTO, "/abs");
    const zent_t upup[] = {Z("ok.txt", "fine"), Z("a/../../x", "evil")};
    refused(root, upup, 2, 1000, 10, WB_EPROTO, "a/../../x");
    const zent_t bs[] = {Z("a\\..\\x", "evil")};
    refused(root, bs, 1, 1000, 10, WB_EPROTO, "backslash");
    const zent_t empty[] = {Z("a//x", "evil")};
    refused(root, empty, 1, 1000, 10, WB_EPROTO, "empty component");
    const zent_t dot[] = {Z("./x", "evil")};
    refused(root, dot, 1, 1000, 10, WB_EPROTO, "dot");
    const zent_t sib[] = {Z("d/../../sibling/x", "evil")};
    refused(root, sib, 1, 1000, 10, WB_EPROTO, "sibling");
    assert_false(exists(P(root, "sibling/x")));
    const zent_t link[] = {
        {"link", "/etc/passwd", 11, 1, ZIP_OPSYS_UNIX, (zip_uint32_t)(S_IFLNK | 0777) << 16}};
    refused(root, link, 1, 1000, 10, WB_EPROTO, "symlink");
    const zent_t in_way[] = {Z("a", "file"), Z("a/b", "under a file")};
    refused(root, in_way, 2, 1000, 10, WB_EPROTO, "file in the way");
    const zent_t many[] = {Z("1", "1"), Z("2", "2"), Z("3", "3")};
    refused(root, many, 3, 1000, 2, WB_ETOOBIG, "max_files");
    const zent_t bytes[] = {Z("1", "0123456789"), Z("2", "0123456789")};
    refused(root, bytes, 2, 15, 10, WB_ETOOBIG, "max_bytes");

    char deep[WB_ZIPTREE_MAX_DEPTH * 2 + 8];
    size_t o = 0;
    for (int i = 0; i < WB_ZIPTREE_MAX_DEPTH; i++)
        deep[o++] = 'a', deep[o++] = '/';
    memcpy(deep + o, "f", 2);
    const zent_t toodeep[] = {{deep, "x", 1, 0, 0, 0}};
    refused(root, toodeep, 1, 1000, 10, WB_EPROTO, "too deep");

    /* A deflate bomb: 8 MiB of zeros in a few KiB. */
    size_t bomb_len = 8u << 20;
    char *bomb = calloc(1, bomb_len);
    const zent_t b1[] = {{"bomb", bomb, bomb_len, 0, 0, 0}};
    refused(root, b1, 1, 1u << 20, 10, WB_ETOOBIG, "bomb");
    assert_true(file_size(P(root, "evil.zip")) < 64 * 1024);

    /* The same bomb lying about its size (100 bytes, in the local header at
     * 22 and the central directory entry at 24): counted while written. */
    const char *zip = P(root, "evil.zip");
    size_t n;
    char *b = slurp(zip, &n);
    put_u32(b + 22, 100);
    char *cd = memmem(b, n, "PK\1\2", 4);
    assert_non_null(cd);
    put_u32(cd + 24, 100);
    put(zip, b, n, 0644);
    free(b);
    char err[256] = "";
    int rc = wb_ziptree_extract(zip, P(root, "out"), 1u << 20, 10, err, sizeof err);
    print_message("refused (lying bomb): %s\n", err);
    assert_true(rc == WB_ETOOBIG || rc == WB_ECORRUPT);
    assert_false(exists(P(root, "out")));
    free(bomb);

    /* A second entry of one name (libzip will not write one: patch it). */
    unlink(zip);
    const zent_t dup[] = {Z("dup", "first"), Z("dvp", "second")};
    make_zip(zip, dup, 2);
    patch(zip, "dvp", "dup", 3);
    rc = wb_ziptree_extract(zip, P(root, "out"), 1000, 10, err, sizeof err);
    assert_int_equal(rc, WB_EPROTO);
    assert_false(exists(P(root, "out")));

    /* A NUL cuts the name, as in Python: "a\0../../x" is "a", a duplicate. */
    unlink(zip);
    const zent_t nul[] = {Z("a", "first"), Z("a#../../x", "second")};
    make_zip(zip, nul, 2);
    patch(zip, "a#", "a\0", 2);
    rc = wb_ziptree_extract(zip, P(root, "out"), 1000, 10, err, sizeof err);
    assert_int_equal(rc, WB_EPROTO);
    assert_false(exists(P(root, "out")));
    assert_false(exists(P(root, "x")));

    /* Not a zip archive. */
    put(zip, "this is not a zip archive", 25, 0644);
    rc = wb_ziptree_extract(zip, P(root, "out"), 1000, 10, err, sizeof err);
    assert_int_equal(rc, WB_ECORRUPT);
    assert_false(exists(P(root, "out")));

    /* An existing destination is refused and left alone. */
    unlink(zip);
    make_zip(zip, many, 3);
    mk(P(root, "out"));
    put(P(root, "out/mine"), "mine", 4, 0644);
    rc = wb_ziptree_extract(zip, P(root, "out"), 1000, 10, err, sizeof err);
    assert_int_equal(rc, WB_EEXIST);
    check_file(P(root, "out/mine"), "mine", 4, 0644);
    rm_rf(root);
}

/* Modes: UNIX entries keep theirs but never setuid/setgid/sticky; entries
 * from elsewhere, or with no mode, get 0666 & ~umask; directory entries
 * make directories; the umask applies. */
static void test_extract_modes(void **state)
{
    (void)state;
    char *root = mkroot();
    const zent_t e[] = {
        {"d/", "", 0, 1, ZIP_OPSYS_UNIX, (zip_uint32_t)(S_IFDIR | 0700) << 16},
        {"d/e/", "", 0, 0, 0, 0},
        {"d/e/suid", "x", 1, 1, ZIP_OPSYS_UNIX, (zip_uint32_t)(S_IFREG | 06755) << 16},
        {"d/dos", "x", 1, 1, ZIP_OPSYS_DOS, 0x20},
        {"d/zero", "x", 1, 1, ZIP_OPSYS_UNIX, 0},
        {"d/notype", "x", 1, 1, ZIP_OPSYS_UNIX, 0750u << 16},
        {"d/open", "x", 1, 1, ZIP_OPSYS_UNIX, (zip_uint32_t)(S_IFREG | 0666) << 16},
        {"d/fifo", "x", 1, 1, ZIP_OPSYS_UNIX, (zip_uint32_t)(S_IFIFO | 0600) << 16},
        {"d/f/", "", 0, 0, 0, 0},
    };
    const char *zip = P(root, "m.zip");
    make_zip(zip, e, 9);
    /* A directory may be named twice; libzip will not write that: patch. */
    patch(zip, "d/f/", "d/e/", 4);
    char err[256] = "";
    int rc = wb_ziptree_extract(zip, P(root, "out"), 1000, 10, err, sizeof err);
    assert_int_equal(rc, 0);
    struct stat st;
    assert_int_equal(stat(P(root, "out/d/e"), &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0755);
    check_file(P(root, "out/d/e/suid"), "x", 1, 0755);
    check_file(P(root, "out/d/dos"), "x", 1, 0644);
    check_file(P(root, "out/d/zero"), "x", 1, 0644);
    check_file(P(root, "out/d/notype"), "x", 1, 0750);
    check_file(P(root, "out/d/open"), "x", 1, 0644);
    check_file(P(root, "out/d/fifo"), "x", 1, 0644);
    rm_rf(root);
}

/* ---- ZIP64 -------------------------------------------------------------- */

static int python_ok(void)
{
    return access(PYTHON, X_OK) == 0;
}

static void run_python(const char *root, const char *script, const char *args, const char *out)
{
    const char *py = P(root, "check.py");
    put(py, script, strlen(script), 0644);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s '%s' %s > '%s' 2>&1", PYTHON, py, args, out);
    int rc = system(cmd);
    if (rc != 0) {
        size_t n;
        char *o = slurp(out, &n);
        fail_msg("python failed (%d): %s", rc, o);
    }
}

static const char py_list[] =
    "import sys, zipfile\n"
    "with zipfile.ZipFile(sys.argv[1]) as zf:\n"
    "    assert zf.testzip() is None\n"
    "    infos = sorted(zf.infolist(), key=lambda i: i.filename)\n"
    "    if len(sys.argv) > 2:\n"
    "        print(len(infos), sum(i.file_size for i in infos))\n"
    "        sys.exit(0)\n"
    "    for i in infos:\n"
    "        line = '%s\\t%o\\t%d\\t%d\\t%d\\n' % (i.filename, i.external_attr >> 16, "
    "i.file_size, i.create_system, i.compress_type)\n"
    "        sys.stdout.buffer.write(line.encode('utf-8', 'surrogateescape'))\n";

static void test_zip64_many_entries(void **state)
{
    (void)state;
    char *root = mkroot();
    const unsigned nfiles = 65536 + 10;
    mk(P(root, "src"));
    for (unsigned d = 0; d < 64; d++)
        mk(P(root, "src/%02u", d));
    for (unsigned i = 0; i < nfiles; i++) {
        int fd = open(P(root, "src/%02u/%u", i % 64, i), O_WRONLY | O_CREAT | O_EXCL, 0644);
        assert_true(fd >= 0);
        if (i % 1000 == 0)
            assert_int_equal(write(fd, "k", 1), 1);
        close(fd);
    }
    const char *paths[] = {P(root, "src")};
    const char *zip = strdup(P(root, "t.zip"));
    wb_ziptree_info_t info;
    char err[256] = "";
    int rc = wb_ziptree_build(paths, 1, zip, 0, NULL, NULL, NULL, &info, err, sizeof err);
    assert_int_equal(rc, 0);
    assert_int_equal(info.numfiles, nfiles);
    assert_int_equal(info.numbytes, (nfiles + 999) / 1000);
    /* A ZIP64 end of central directory record, for the entry count. */
    size_t n;
    char *b = slurp(zip, &n);
    assert_non_null(memmem(b + n - 200, 200, "PK\6\6", 4));
    free(b);
    if (python_ok()) {
        run_python(root, py_list, P(root, "t.zip count"), P(root, "py.out"));
        char *o = slurp(P(root, "py.out"), &n);
        char want[64];
        snprintf(want, sizeof want, "%u %u\n", nfiles, (nfiles + 999) / 1000);
        assert_string_equal(o, want);
        free(o);
    }
    rc = wb_ziptree_extract(zip, P(root, "out"), 1000, nfiles - 1, err, sizeof err);
    assert_int_equal(rc, WB_ETOOBIG);
    assert_false(exists(P(root, "out")));
    rc = wb_ziptree_extract(zip, P(root, "out"), 1000, nfiles, err, sizeof err);
    assert_int_equal(rc, 0);
    check_file(P(root, "out/00/64000"), "k", 1, 0644);
    check_file(P(root, "out/63/63"), "", 0, 0644);
    free((char *)zip);
    rm_rf(root);
}

static void test_zip64_big_file(void **state)
{
    (void)state;
    const char *env = getenv("WB_ZIPTREE_BIG");
    if (!env || strcmp(env, "1") != 0)
        skip();
    char *root = mkroot();
    mk(P(root, "src"));
    const uint64_t size = (4ull << 30) + 12345;
    int fd = open(P(root, "src/big"), O_WRONLY | O_CREAT | O_EXCL, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)size), 0);
    assert_int_equal(pwrite(fd, "tail", 4, (off_t)size - 4), 4);
    close(fd);
    const char *paths[] = {P(root, "src")};
    const char *zip = strdup(P(root, "t.zip"));
    wb_ziptree_info_t info;
    sink_t s = {0};
    char err[256] = "";
    int rc = wb_ziptree_build(paths, 1, zip, 0, NULL, on_progress, &s, &info, err, sizeof err);
    assert_int_equal(rc, 0);
    assert_int_equal(info.numbytes, size);
    assert_true(s.progress_calls > 1000);
    if (python_ok()) {
        run_python(root, py_list, P(root, "t.zip count"), P(root, "py.out"));
        size_t n;
        char *o = slurp(P(root, "py.out"), &n);
        char want[64];
        snprintf(want, sizeof want, "1 %llu\n", (unsigned long long)size);
        assert_string_equal(o, want);
        free(o);
    }
    rc = wb_ziptree_extract(zip, P(root, "out"), size, 10, err, sizeof err);
    assert_int_equal(rc, 0);
    assert_int_equal(file_size(P(root, "out/big")), size);
    free((char *)zip);
    rm_rf(root);
}

/* ---- interop with Python's zipfile ------------------------------------- */

/* What the Python sender does (wormhole/cli/cmd_send.py, 0.12.0). */
static const char py_build[] =
    "import os, sys, zipfile\n"
    "what, out = sys.argv[1], sys.argv[2]\n"
    "tostrip = len(what.split(os.sep))\n"
    "with zipfile.ZipFile(out, 'w', compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:\n"
    "    for path, dirs, files in os.walk(what):\n"
    "        localpath = list(path.split(os.sep)[tostrip:])\n"
    "        for fn in files:\n"
    "            zf.write(os.path.join(path, fn), os.path.join(*tuple(localpath + [fn])))\n";

static void test_python_interop(void **state)
{
    (void)state;
    if (!python_ok())
        skip();
    char *root = mkroot();
    make_tree(root);
    const char *paths[] = {P(root, "src")};
    const char *zip = strdup(P(root, "t.zip"));
    wb_ziptree_info_t info;
    char err[256] = "";
    int rc = wb_ziptree_build(paths, 1, zip, 0, NULL, NULL, NULL, &info, err, sizeof err);
    assert_int_equal(rc, 0);

    /* Python reads ours: names, modes, sizes, UNIX (3), DEFLATE (8). */
    run_python(root, py_list, P(root, "t.zip"), P(root, "py.out"));
    char want[1024] = "";
    for (size_t i = 0; i < tree_files; i++) {
        const char *nm = tree_names[i];
        unsigned mode = !strcmp(nm, "run.sh")   ? 0755
                        : !strcmp(nm, "secret") ? 0600
                        : !strcmp(nm, UNI_NAME) ? 0640
                                                : 0644;
        size_t sz = !strcmp(nm, "a.txt") || !strcmp(nm, "link") ? 6
                    : !strcmp(nm, "empty")                      ? 0
                    : !strcmp(nm, "run.sh")                     ? strlen(run_sh)
                    : !strcmp(nm, "secret")                     ? 6
                    : !strcmp(nm, UNI_NAME)                     ? 4
                                                                : sizeof big;
        size_t l = strlen(want);
        snprintf(want + l, sizeof want - l, "%s\t%o\t%zu\t3\t8\n", nm, S_IFREG | mode, sz);
    }
    size_t n;
    char *o = slurp(P(root, "py.out"), &n);
    assert_string_equal(o, want);
    free(o);

    /* We read Python's, made as its sender makes them. */
    run_python(root, py_build, P(root, "src %s", P(root, "py.zip")), P(root, "py.out"));
    rc = wb_ziptree_extract(P(root, "py.zip"), P(root, "out"), 1 << 20, 100, err, sizeof err);
    assert_int_equal(rc, 0);
    check_tree(P(root, "out"));
    free((char *)zip);
    rm_rf(root);
}

int main(void)
{
    umask(022);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_extract_tree), cmocka_unit_test(test_fifo_unsendable),
        cmocka_unit_test(test_several_paths),      cmocka_unit_test(test_empty_tree),
        cmocka_unit_test(test_extract_refuses),    cmocka_unit_test(test_extract_modes),
        cmocka_unit_test(test_python_interop),     cmocka_unit_test(test_zip64_many_entries),
        cmocka_unit_test(test_zip64_big_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
