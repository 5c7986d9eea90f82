/*
 * ziptree.c - the directory archive of the wormhole file protocol (see
 * ziptree.h for the contract).
 *
 * Building: libzip writes nothing until zip_close, so the walk only checks
 * each file and registers a source for it; the sources (filesrc_cb) open
 * and stream the files during zip_close, one at a time, counting bytes for
 * the progress callback and refusing a file that was replaced or shrank.
 * The archive itself goes through a write source of our own (outsrc_cb) on
 * a descriptor we created O_EXCL 0600: libzip's own file source would write
 * a temporary file and rename it over the name, with another mode.
 *
 * Extracting: every path is made with *at() calls relative to a descriptor
 * of dest_dir, each directory component opened O_DIRECTORY | O_NOFOLLOW, so
 * neither a hostile name nor a link planted meanwhile can lead outside.
 */
#include "apps/wormhole/ziptree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zip.h>

#include "runtime/error.h"

#define COPY_BUF      (1u << 20)
#define PROGRESS_STEP (1u << 20)
#define ZIP_NAME_MAX  0xffffu /* the name length field is 16 bits */

/* The end of central directory record of an archive with no entries: what
 * Python writes for an empty directory (libzip would write nothing). */
static const unsigned char empty_zip[22] = {'P', 'K', 5, 6};

static int errno_code(int e)
{
    switch (e) {
    case ENOMEM:
        return WB_ENOMEM;
    case ENOSPC:
    case EDQUOT:
        return WB_EFULL;
    case EEXIST:
        return WB_EEXIST;
    default:
        return WB_EIO;
    }
}

static int write_all(int fd, const void *p, size_t len)
{
    const char *c = p;
    while (len > 0) {
        ssize_t w = write(fd, c, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        c += w;
        len -= (size_t)w;
    }
    return 0;
}

/* ---- building ---------------------------------------------------------- */

typedef struct {
    dev_t dev;
    ino_t ino;
} devino_t;

typedef struct {
    zip_t *za;
    int ignore;
    wb_ziptree_warn_cb warn;
    wb_ziptree_progress_cb progress;
    void *user;
    devino_t self;   /* the archive being written */
    devino_t *stack; /* directories on the current walk path */
    size_t depth, cap;
    uint64_t numbytes, numfiles, done, next_progress;
    int fail_code; /* first failure in a file source during zip_close */
    char fail[512];
} build_t;

typedef struct {
    build_t *b;
    char *path;
    devino_t id;
    uint64_t size, pos;
    time_t mtime;
    int fd;
    zip_error_t error;
} filesrc_t;

typedef struct {
    int fd;
    zip_error_t error;
} outsrc_t;

static void warnf(build_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warnf(build_t *b, const char *fmt, ...)
{
    if (!b->warn)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    b->warn(msg, b->user);
}

static zip_int64_t filesrc_fail(filesrc_t *s, int zer, int sys, int code, const char *what)
{
    zip_error_set(&s->error, zer, sys);
    if (!s->b->fail_code) {
        s->b->fail_code = code;
        snprintf(s->b->fail, sizeof s->b->fail, "%s: %s", s->path, what);
    }
    return -1;
}

static zip_int64_t filesrc_cb(void *ud, void *data, zip_uint64_t len, zip_source_cmd_t cmd)
{
    filesrc_t *s = ud;
    switch (cmd) {
    case ZIP_SOURCE_OPEN: {
        /* O_NONBLOCK: a fifo put in the file's place must not hang us. */
        s->fd = open(s->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (s->fd < 0) {
            int e = errno;
            return filesrc_fail(s, ZIP_ER_OPEN, e, errno_code(e), strerror(e));
        }
        struct stat st;
        if (fstat(s->fd, &st) != 0) {
            int e = errno;
            return filesrc_fail(s, ZIP_ER_READ, e, WB_EIO, strerror(e));
        }
        if (!S_ISREG(st.st_mode) || st.st_dev != s->id.dev || st.st_ino != s->id.ino)
            return filesrc_fail(s, ZIP_ER_CHANGED, 0, WB_EIO, "replaced while being archived");
        s->pos = 0;
        return 0;
    }
    case ZIP_SOURCE_READ: {
        /* Never more than the size walked: numbytes and the entry's header
         * were computed from it. */
        uint64_t left = s->size - s->pos;
        if (len > left)
            len = left;
        if (len == 0)
            return 0;
        ssize_t r;
        do
            r = read(s->fd, data, len);
        while (r < 0 && errno == EINTR);
        if (r < 0) {
            int e = errno;
            return filesrc_fail(s, ZIP_ER_READ, e, WB_EIO, strerror(e));
        }
        if (r == 0)
            return filesrc_fail(s, ZIP_ER_CHANGED, 0, WB_EIO, "shrank while being archived");
        s->pos += (uint64_t)r;
        build_t *b = s->b;
        b->done += (uint64_t)r;
        if (b->progress && b->done >= b->next_progress) {
            b->progress(b->done, b->numbytes, b->user);
            b->next_progress = b->done + PROGRESS_STEP;
        }
        return r;
    }
    case ZIP_SOURCE_CLOSE:
        if (s->fd >= 0)
            close(s->fd);
        s->fd = -1;
        return 0;
    case ZIP_SOURCE_STAT: {
        zip_stat_t *st = ZIP_SOURCE_GET_ARGS(zip_stat_t, data, len, &s->error);
        if (!st)
            return -1;
        zip_stat_init(st);
        st->valid = ZIP_STAT_SIZE | ZIP_STAT_MTIME;
        st->size = s->size;
        st->mtime = s->mtime;
        return sizeof(*st);
    }
    case ZIP_SOURCE_ERROR:
        return zip_error_to_data(&s->error, data, len);
    case ZIP_SOURCE_FREE:
        if (s->fd >= 0)
            close(s->fd);
        zip_error_fini(&s->error);
        free(s->path);
        free(s);
        return 0;
    case ZIP_SOURCE_SUPPORTS:
        return zip_source_make_command_bitmap(ZIP_SOURCE_OPEN, ZIP_SOURCE_READ, ZIP_SOURCE_CLOSE,
                                              ZIP_SOURCE_STAT, ZIP_SOURCE_ERROR, ZIP_SOURCE_FREE,
                                              -1);
    default:
        zip_error_set(&s->error, ZIP_ER_OPNOTSUPP, 0);
        return -1;
    }
}

/* The archive: an empty, seekable, writable source on our descriptor. */
static zip_int64_t outsrc_cb(void *ud, void *data, zip_uint64_t len, zip_source_cmd_t cmd)
{
    outsrc_t *o = ud;
    switch (cmd) {
    case ZIP_SOURCE_OPEN:
    case ZIP_SOURCE_CLOSE:
    case ZIP_SOURCE_READ:
    case ZIP_SOURCE_TELL:
    case ZIP_SOURCE_COMMIT_WRITE:
    case ZIP_SOURCE_ROLLBACK_WRITE:
    case ZIP_SOURCE_FREE:
        return 0;
    case ZIP_SOURCE_SEEK: {
        zip_source_args_seek_t *a =
            ZIP_SOURCE_GET_ARGS(zip_source_args_seek_t, data, len, &o->error);
        if (!a)
            return -1;
        if (a->offset != 0) {
            zip_error_set(&o->error, ZIP_ER_INVAL, 0);
            return -1;
        }
        return 0;
    }
    case ZIP_SOURCE_STAT: {
        zip_stat_t *st = ZIP_SOURCE_GET_ARGS(zip_stat_t, data, len, &o->error);
        if (!st)
            return -1;
        zip_stat_init(st);
        st->valid = ZIP_STAT_SIZE;
        st->size = 0;
        return sizeof(*st);
    }
    case ZIP_SOURCE_BEGIN_WRITE:
    case ZIP_SOURCE_REMOVE: /* no entries: the caller writes an empty archive */
        if (ftruncate(o->fd, 0) != 0 || lseek(o->fd, 0, SEEK_SET) < 0) {
            zip_error_set(&o->error, ZIP_ER_WRITE, errno);
            return -1;
        }
        return 0;
    case ZIP_SOURCE_WRITE:
        if (len > INT64_MAX || write_all(o->fd, data, (size_t)len) != 0) {
            zip_error_set(&o->error, ZIP_ER_WRITE, errno);
            return -1;
        }
        return (zip_int64_t)len;
    case ZIP_SOURCE_SEEK_WRITE: {
        zip_source_args_seek_t *a =
            ZIP_SOURCE_GET_ARGS(zip_source_args_seek_t, data, len, &o->error);
        if (!a)
            return -1;
        if (lseek(o->fd, (off_t)a->offset, a->whence) < 0) {
            zip_error_set(&o->error, ZIP_ER_SEEK, errno);
            return -1;
        }
        return 0;
    }
    case ZIP_SOURCE_TELL_WRITE: {
        off_t off = lseek(o->fd, 0, SEEK_CUR);
        if (off < 0) {
            zip_error_set(&o->error, ZIP_ER_TELL, errno);
            return -1;
        }
        return (zip_int64_t)off;
    }
    case ZIP_SOURCE_ERROR:
        return zip_error_to_data(&o->error, data, len);
    case ZIP_SOURCE_SUPPORTS:
        return zip_source_make_command_bitmap(
            ZIP_SOURCE_OPEN, ZIP_SOURCE_READ, ZIP_SOURCE_CLOSE, ZIP_SOURCE_STAT, ZIP_SOURCE_ERROR,
            ZIP_SOURCE_FREE, ZIP_SOURCE_SEEK, ZIP_SOURCE_TELL, ZIP_SOURCE_BEGIN_WRITE,
            ZIP_SOURCE_COMMIT_WRITE, ZIP_SOURCE_ROLLBACK_WRITE, ZIP_SOURCE_WRITE,
            ZIP_SOURCE_SEEK_WRITE, ZIP_SOURCE_TELL_WRITE, ZIP_SOURCE_REMOVE, ZIP_SOURCE_SUPPORTS,
            -1);
    default:
        zip_error_set(&o->error, ZIP_ER_OPNOTSUPP, 0);
        return -1;
    }
}

/* Something that cannot be sent: an error, or a warning when the caller
 * said to skip such things (never for the paths it named itself). */
static int unsendable(build_t *b, const char *path, const char *why, int top, int code, char *err,
                      size_t errlen)
{
    if (b->ignore && !top) {
        warnf(b, "%s: %s (skipped)", path, why);
        return 0;
    }
    wb_errf(err, errlen, "%s: %s", path, why);
    return code;
}

static char *join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    int slash = la > 0 && a[la - 1] != '/';
    char *s = malloc(la + slash + lb + 1);
    if (!s)
        return NULL;
    memcpy(s, a, la);
    if (slash)
        s[la] = '/';
    memcpy(s + la + slash, b, lb + 1);
    return s;
}

static int add_file(build_t *b, const char *fs, const char *arc, const struct stat *st, int top,
                    char *err, size_t errlen)
{
    if (st->st_dev == b->self.dev && st->st_ino == b->self.ino)
        return 0;
    if (strlen(arc) > ZIP_NAME_MAX)
        return unsendable(b, fs, "name too long for a zip archive", top, WB_EINVAL, err, errlen);
    /* Unreadable files are found now, where they can be skipped; during
     * zip_close it is too late for that. */
    int fd = open(fs, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        return unsendable(b, fs, strerror(e), top, e == ENOMEM ? WB_ENOMEM : WB_EIO, err, errlen);
    }
    close(fd);

    filesrc_t *s = calloc(1, sizeof *s);
    char *path = strdup(fs);
    if (!s || !path) {
        free(s);
        free(path);
        wb_errf(err, errlen, "out of memory");
        return WB_ENOMEM;
    }
    s->b = b;
    s->path = path;
    s->id.dev = st->st_dev;
    s->id.ino = st->st_ino;
    s->size = (uint64_t)st->st_size;
    s->mtime = st->st_mtime;
    s->fd = -1;
    zip_error_init(&s->error);
    zip_source_t *src = zip_source_function(b->za, filesrc_cb, s);
    if (!src) {
        zip_error_fini(&s->error);
        free(path);
        free(s);
        wb_errf(err, errlen, "%s: %s", fs, zip_strerror(b->za));
        return WB_ENOMEM;
    }
    zip_int64_t idx = zip_file_add(b->za, arc, src, ZIP_FL_ENC_GUESS);
    if (idx < 0) {
        zip_source_free(src);
        wb_errf(err, errlen, "%s: cannot add as '%s': %s", fs, arc, zip_strerror(b->za));
        return WB_EINVAL;
    }
    /* Like Python's zipfile: the permission bits and the type, nothing the
     * receiver should not apply (setuid, setgid, sticky). */
    zip_uint32_t attr = (zip_uint32_t)(S_IFREG | (st->st_mode & 0777)) << 16;
    if (zip_set_file_compression(b->za, (zip_uint64_t)idx, ZIP_CM_DEFLATE, 0) != 0 ||
        zip_file_set_external_attributes(b->za, (zip_uint64_t)idx, 0, ZIP_OPSYS_UNIX, attr) != 0) {
        wb_errf(err, errlen, "%s: %s", fs, zip_strerror(b->za));
        return WB_EIO;
    }
    b->numbytes += (uint64_t)st->st_size;
    b->numfiles++;
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int walk(build_t *b, const char *fs, const char *arc, int top, char *err, size_t errlen);

static int add_dir(build_t *b, const char *fs, const char *arc, const struct stat *st, int top,
                   char *err, size_t errlen)
{
    for (size_t i = 0; i < b->depth; i++) {
        if (b->stack[i].dev == st->st_dev && b->stack[i].ino == st->st_ino) {
            warnf(b, "%s: links back to a directory being archived (a loop), skipped", fs);
            return 0;
        }
    }
    /* Read the names first and close the directory before descending, so
     * a deep tree does not hold one descriptor per level. */
    DIR *d = opendir(fs);
    if (!d) {
        int e = errno;
        return unsendable(b, fs, strerror(e), top, e == ENOMEM ? WB_ENOMEM : WB_EIO, err, errlen);
    }
    char **names = NULL;
    size_t count = 0, cap = 0;
    int rc = 0, skip = 0;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            if (errno) {
                int en = errno;
                rc = unsendable(b, fs, strerror(en), top, WB_EIO, err, errlen);
                skip = rc == 0; /* send none of it rather than part */
            }
            break;
        }
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (count == cap) {
            size_t ncap = cap ? 2 * cap : 16;
            char **nn = realloc(names, ncap * sizeof *nn);
            if (!nn) {
                rc = WB_ENOMEM;
                break;
            }
            names = nn;
            cap = ncap;
        }
        if (!(names[count] = strdup(e->d_name))) {
            rc = WB_ENOMEM;
            break;
        }
        count++;
    }
    closedir(d);
    if (rc == WB_ENOMEM)
        wb_errf(err, errlen, "out of memory");
    if (rc == 0 && !skip) {
        if (b->depth == b->cap) {
            size_t ncap = b->cap ? 2 * b->cap : 16;
            devino_t *ns = realloc(b->stack, ncap * sizeof *ns);
            if (!ns) {
                wb_errf(err, errlen, "out of memory");
                rc = WB_ENOMEM;
            } else {
                b->stack = ns;
                b->cap = ncap;
            }
        }
    }
    if (rc == 0 && !skip && count > 0) {
        qsort(names, count, sizeof *names, cmp_names);
        b->stack[b->depth].dev = st->st_dev;
        b->stack[b->depth].ino = st->st_ino;
        b->depth++;
        for (size_t i = 0; i < count && rc == 0; i++) {
            char *cfs = join(fs, names[i]);
            char *carc = arc[0] ? join(arc, names[i]) : strdup(names[i]);
            if (!cfs || !carc) {
                wb_errf(err, errlen, "out of memory");
                rc = WB_ENOMEM;
            } else {
                rc = walk(b, cfs, carc, 0, err, errlen);
            }
            free(cfs);
            free(carc);
        }
        b->depth--;
    }
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
    return rc;
}

static int walk(build_t *b, const char *fs, const char *arc, int top, char *err, size_t errlen)
{
    struct stat st;
    if (stat(fs, &st) != 0) {
        int e = errno;
        return unsendable(b, fs, strerror(e), top, e == ENOENT ? WB_EINVAL : WB_EIO, err, errlen);
    }
    if (S_ISREG(st.st_mode))
        return add_file(b, fs, arc, &st, top, err, errlen);
    if (S_ISDIR(st.st_mode))
        return add_dir(b, fs, arc, &st, top, err, errlen);
    return unsendable(b, fs, "not a regular file or directory", top, WB_EINVAL, err, errlen);
}

/* The name a path given on the command line gets at the top of the
 * archive: its last component, or the real one for ".", ".." and the like. */
static int top_name(const char *path, char **out, char *err, size_t errlen)
{
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    size_t start = len;
    while (start > 0 && path[start - 1] != '/')
        start--;
    const char *name = path + start;
    size_t nlen = len - start;
    if (nlen == 0 || (nlen == 1 && name[0] == '.') || (nlen == 2 && !strncmp(name, "..", 2)) ||
        (nlen == 1 && name[0] == '/')) {
        char *real = realpath(path, NULL);
        if (!real) {
            int e = errno;
            wb_errf(err, errlen, "%s: %s", path, strerror(e));
            return e == ENOMEM ? WB_ENOMEM : WB_EINVAL;
        }
        char *slash = strrchr(real, '/');
        if (!slash || !slash[1]) {
            free(real);
            wb_errf(err, errlen, "%s: has no name to be sent under", path);
            return WB_EINVAL;
        }
        *out = strdup(slash + 1);
        free(real);
    } else {
        *out = strndup(name, nlen);
    }
    if (!*out) {
        wb_errf(err, errlen, "out of memory");
        return WB_ENOMEM;
    }
    return 0;
}

static int add_paths(build_t *b, const char *const *paths, size_t n, char *err, size_t errlen)
{
    struct stat st;
    if (n == 1 && stat(paths[0], &st) == 0 && S_ISDIR(st.st_mode))
        return walk(b, paths[0], "", 1, err, errlen);

    char **names = calloc(n, sizeof *names);
    if (!names) {
        wb_errf(err, errlen, "out of memory");
        return WB_ENOMEM;
    }
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if ((rc = top_name(paths[i], &names[i], err, errlen)) != 0)
            break;
        for (size_t j = 0; j < i; j++) {
            if (!strcmp(names[i], names[j])) {
                wb_errf(err, errlen, "'%s' and '%s' would both be sent as '%s'", paths[j], paths[i],
                        names[i]);
                rc = WB_EINVAL;
                break;
            }
        }
    }
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = walk(b, paths[i], names[i], 1, err, errlen);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

int wb_ziptree_build(const char *const *paths, size_t n, const char *zip_path,
                     int ignore_unsendable, wb_ziptree_warn_cb warn,
                     wb_ziptree_progress_cb progress, void *user, wb_ziptree_info_t *info,
                     char *err, size_t errlen)
{
    if (!paths || n == 0 || !zip_path || !info) {
        wb_errf(err, errlen, "wb_ziptree_build: nothing to archive or nowhere to put it");
        return WB_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!paths[i] || !paths[i][0]) {
            wb_errf(err, errlen, "wb_ziptree_build: empty path");
            return WB_EINVAL;
        }
    }
    memset(info, 0, sizeof *info);

    int fd = open(zip_path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        wb_errf(err, errlen, "%s: %s", zip_path, strerror(e));
        return errno_code(e);
    }
    build_t b = {.ignore = ignore_unsendable,
                 .warn = warn,
                 .progress = progress,
                 .user = user,
                 .next_progress = PROGRESS_STEP};
    outsrc_t out = {.fd = fd};
    zip_error_init(&out.error);
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *zs = NULL;
    int rc = 0;
    struct stat st;

    /* open() applied the umask to 0600; make it exactly 0600 regardless. */
    if (fchmod(fd, 0600) != 0 || fstat(fd, &st) != 0) {
        int e = errno;
        wb_errf(err, errlen, "%s: %s", zip_path, strerror(e));
        rc = errno_code(e);
        goto fail;
    }
    b.self.dev = st.st_dev;
    b.self.ino = st.st_ino;

    if (!(zs = zip_source_function_create(outsrc_cb, &out, &ze)) ||
        !(b.za = zip_open_from_source(zs, ZIP_CREATE | ZIP_TRUNCATE, &ze))) {
        wb_errf(err, errlen, "%s: %s", zip_path, zip_error_strerror(&ze));
        rc = zip_error_code_zip(&ze) == ZIP_ER_MEMORY ? WB_ENOMEM : WB_EIO;
        if (zs)
            zip_source_free(zs);
        goto fail;
    }
    if ((rc = add_paths(&b, paths, n, err, errlen)) != 0) {
        zip_discard(b.za);
        goto fail;
    }
    if (zip_close(b.za) != 0) {
        if (b.fail_code) {
            wb_errf(err, errlen, "%s", b.fail);
            rc = b.fail_code;
        } else if (zip_error_code_zip(&out.error) == ZIP_ER_WRITE) {
            int e = zip_error_code_system(&out.error);
            wb_errf(err, errlen, "%s: write: %s", zip_path, strerror(e));
            rc = errno_code(e);
        } else {
            wb_errf(err, errlen, "%s: %s", zip_path, zip_strerror(b.za));
            rc = zip_error_code_zip(zip_get_error(b.za)) == ZIP_ER_MEMORY ? WB_ENOMEM : WB_EIO;
        }
        zip_discard(b.za);
        goto fail;
    }
    if (b.numfiles == 0 && write_all(fd, empty_zip, sizeof empty_zip) != 0) {
        int e = errno;
        wb_errf(err, errlen, "%s: write: %s", zip_path, strerror(e));
        rc = errno_code(e);
        goto fail;
    }
    if (fstat(fd, &st) != 0) {
        int e = errno;
        wb_errf(err, errlen, "%s: %s", zip_path, strerror(e));
        rc = errno_code(e);
        goto fail;
    }
    if (close(fd) != 0) {
        int e = errno;
        fd = -1;
        wb_errf(err, errlen, "%s: close: %s", zip_path, strerror(e));
        rc = errno_code(e);
        goto fail;
    }
    if (b.progress)
        b.progress(b.done, b.numbytes, b.user);
    info->numbytes = b.numbytes;
    info->numfiles = b.numfiles;
    info->zipsize = (uint64_t)st.st_size;
    free(b.stack);
    zip_error_fini(&ze);
    zip_error_fini(&out.error);
    return 0;

fail:
    if (fd >= 0)
        close(fd);
    unlink(zip_path);
    free(b.stack);
    zip_error_fini(&ze);
    zip_error_fini(&out.error);
    return rc;
}

/* ---- extracting -------------------------------------------------------- */

typedef struct {
    zip_t *za;
    int dfd;
    uint64_t max_bytes, written;
    char *buf;
    char *err;
    size_t errlen;
} extract_t;

/* A name fit for a one-line message: control bytes escaped, cut short. */
static void quote(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    for (; *s && o + 8 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f)
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
        else
            out[o++] = (char)c;
    }
    if (*s && cap > 4) {
        o = o + 4 > cap ? cap - 4 : o;
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

static int check_name(const char *name, const char *q, int *isdir, char *err, size_t errlen)
{
    size_t len = strlen(name);
    const char *why = NULL;
    if (len == 0)
        why = "empty name";
    else if (name[0] == '/')
        why = "absolute path";
    else if (strchr(name, '\\'))
        why = "backslash in name";
    if (why) {
        wb_errf(err, errlen, "refusing entry '%s': %s", q, why);
        return WB_EPROTO;
    }
    *isdir = name[len - 1] == '/';
    size_t end = *isdir ? len - 1 : len, depth = 0;
    for (size_t i = 0; i <= end;) {
        size_t j = i;
        while (j < end && name[j] != '/')
            j++;
        size_t cl = j - i;
        if (cl == 0)
            why = "empty path component";
        else if ((cl == 1 && name[i] == '.') || (cl == 2 && name[i] == '.' && name[i + 1] == '.'))
            why = "'.' or '..' in path";
        else if (++depth > WB_ZIPTREE_MAX_DEPTH)
            why = "too deep";
        if (why) {
            wb_errf(err, errlen, "refusing entry '%s': %s", q, why);
            return WB_EPROTO;
        }
        i = j + 1;
    }
    return 0;
}

static int copy_entry(extract_t *x, zip_uint64_t i, int fd, const char *q)
{
    zip_file_t *zf = zip_fopen_index(x->za, i, 0);
    if (!zf) {
        wb_errf(x->err, x->errlen, "entry '%s': %s", q, zip_strerror(x->za));
        return WB_ECORRUPT;
    }
    int rc = 0;
    for (;;) {
        zip_int64_t r = zip_fread(zf, x->buf, COPY_BUF);
        if (r < 0) {
            wb_errf(x->err, x->errlen, "entry '%s': %s", q, zip_file_strerror(zf));
            rc = WB_ECORRUPT;
            break;
        }
        if (r == 0)
            break;
        if ((uint64_t)r > x->max_bytes - x->written) {
            wb_errf(x->err, x->errlen, "entry '%s': the files unpack to more than %llu bytes", q,
                    (unsigned long long)x->max_bytes);
            rc = WB_ETOOBIG;
            break;
        }
        x->written += (uint64_t)r;
        if (write_all(fd, x->buf, (size_t)r) != 0) {
            int e = errno;
            wb_errf(x->err, x->errlen, "entry '%s': write: %s", q, strerror(e));
            rc = errno_code(e);
            break;
        }
    }
    int zr = zip_fclose(zf);
    if (rc == 0 && zr != 0) {
        zip_error_t ze;
        zip_error_init_with_code(&ze, zr);
        wb_errf(x->err, x->errlen, "entry '%s': %s", q, zip_error_strerror(&ze));
        zip_error_fini(&ze);
        rc = WB_ECORRUPT;
    }
    return rc;
}

static int extract_entry(extract_t *x, zip_uint64_t i)
{
    char q[200];
    zip_stat_t st;
    if (zip_stat_index(x->za, i, 0, &st) != 0 || !(st.valid & ZIP_STAT_NAME) || !st.name) {
        wb_errf(x->err, x->errlen, "entry %llu: %s", (unsigned long long)i, zip_strerror(x->za));
        return WB_ECORRUPT;
    }
    quote(st.name, q, sizeof q);
    int isdir, rc;
    if ((rc = check_name(st.name, q, &isdir, x->err, x->errlen)) != 0)
        return rc;
    if ((st.valid & ZIP_STAT_ENCRYPTION_METHOD) && st.encryption_method != ZIP_EM_NONE) {
        wb_errf(x->err, x->errlen, "refusing entry '%s': encrypted", q);
        return WB_EPROTO;
    }
    zip_uint8_t opsys;
    zip_uint32_t attr;
    if (zip_file_get_external_attributes(x->za, i, 0, &opsys, &attr) != 0) {
        wb_errf(x->err, x->errlen, "entry '%s': %s", q, zip_strerror(x->za));
        return WB_ECORRUPT;
    }
    mode_t type = (attr >> 16) & S_IFMT, mode = 0666;
    if (type == S_IFLNK) {
        wb_errf(x->err, x->errlen, "refusing entry '%s': a symbolic link", q);
        return WB_EPROTO;
    }
    if (opsys == ZIP_OPSYS_UNIX && (type == S_IFREG || type == 0) && ((attr >> 16) & 0777) != 0)
        mode = (attr >> 16) & 0777;
    if (!isdir && (st.valid & ZIP_STAT_SIZE) && st.size > x->max_bytes - x->written) {
        wb_errf(x->err, x->errlen, "entry '%s': the files unpack to more than %llu bytes", q,
                (unsigned long long)x->max_bytes);
        return WB_ETOOBIG;
    }

    char *name = strdup(st.name);
    if (!name) {
        wb_errf(x->err, x->errlen, "out of memory");
        return WB_ENOMEM;
    }
    size_t len = strlen(name);
    if (isdir)
        name[--len] = '\0';
    int cur = x->dfd;
    char *comp = name;
    for (char *slash; (slash = strchr(comp, '/')) != NULL; comp = slash + 1) {
        *slash = '\0';
        if (mkdirat(cur, comp, 0777) != 0 && errno != EEXIST) {
            int e = errno;
            wb_errf(x->err, x->errlen, "entry '%s': mkdir: %s", q, strerror(e));
            rc = errno_code(e);
            goto out;
        }
        int nfd = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (nfd < 0) {
            int e = errno;
            if (e == ENOTDIR || e == ELOOP) {
                wb_errf(x->err, x->errlen, "refusing entry '%s': a file is in the way", q);
                rc = WB_EPROTO;
            } else {
                wb_errf(x->err, x->errlen, "entry '%s': %s", q, strerror(e));
                rc = errno_code(e);
            }
            goto out;
        }
        if (cur != x->dfd)
            close(cur);
        cur = nfd;
    }
    if (isdir) {
        struct stat ds;
        if (mkdirat(cur, comp, 0777) != 0 &&
            (errno != EEXIST || fstatat(cur, comp, &ds, AT_SYMLINK_NOFOLLOW) != 0 ||
             !S_ISDIR(ds.st_mode))) {
            int e = errno;
            if (e == EEXIST) {
                wb_errf(x->err, x->errlen, "refusing entry '%s': a file is in the way", q);
                rc = WB_EPROTO;
            } else {
                wb_errf(x->err, x->errlen, "entry '%s': mkdir: %s", q, strerror(e));
                rc = errno_code(e);
            }
        }
        goto out;
    }
    int fd =
        openat(cur, comp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, mode);
    if (fd < 0) {
        int e = errno;
        if (e == EEXIST) {
            wb_errf(x->err, x->errlen, "refusing entry '%s': a second entry of that name", q);
            rc = WB_EPROTO;
        } else {
            wb_errf(x->err, x->errlen, "entry '%s': %s", q, strerror(e));
            rc = errno_code(e);
        }
        goto out;
    }
    rc = copy_entry(x, i, fd, q);
    if (close(fd) != 0 && rc == 0) {
        int e = errno;
        wb_errf(x->err, x->errlen, "entry '%s': close: %s", q, strerror(e));
        rc = errno_code(e);
    }
out:
    if (cur != x->dfd)
        close(cur);
    free(name);
    return rc;
}

/* Empty the directory fd (which we made, so it holds no links to follow
 * out of it). Best effort: what cannot be removed stays. */
static void remove_contents(int fd, int depth)
{
    int dup_fd = dup(fd);
    if (dup_fd < 0)
        return;
    DIR *d = fdopendir(dup_fd);
    if (!d) {
        close(dup_fd);
        return;
    }
    /* Removing entries while reading a directory may hide others from
     * readdir: read again until a pass removes nothing. */
    for (int removed = 1; removed;) {
        removed = 0;
        rewinddir(d);
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            if (unlinkat(fd, e->d_name, 0) == 0) {
                removed = 1;
                continue;
            }
            if ((errno != EISDIR && errno != EPERM) || depth > WB_ZIPTREE_MAX_DEPTH)
                continue;
            int sub = openat(fd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0) {
                remove_contents(sub, depth + 1);
                close(sub);
            }
            if (unlinkat(fd, e->d_name, AT_REMOVEDIR) == 0)
                removed = 1;
        }
    }
    closedir(d);
}

/* libzip could not get at the file, as opposed to finding no zip in it. */
static int open_failed(int zerr)
{
    return zerr == ZIP_ER_OPEN || zerr == ZIP_ER_NOENT || zerr == ZIP_ER_READ;
}

int wb_ziptree_extract(const char *zip_path, const char *dest_dir, uint64_t max_bytes,
                       uint64_t max_files, char *err, size_t errlen)
{
    if (!zip_path || !dest_dir || !dest_dir[0]) {
        wb_errf(err, errlen, "wb_ziptree_extract: no archive or no destination");
        return WB_EINVAL;
    }
    if (mkdir(dest_dir, 0777) != 0) {
        int e = errno;
        wb_errf(err, errlen, "%s: %s", dest_dir, strerror(e));
        return errno_code(e);
    }
    extract_t x = {.dfd = -1, .max_bytes = max_bytes, .err = err, .errlen = errlen};
    int rc = 0;
    x.dfd = open(dest_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (x.dfd < 0) {
        int e = errno;
        wb_errf(err, errlen, "%s: %s", dest_dir, strerror(e));
        rc = errno_code(e);
        goto done;
    }
    int zerr = 0;
    x.za = zip_open(zip_path, ZIP_RDONLY, &zerr);
    if (!x.za) {
        zip_error_t ze;
        zip_error_init_with_code(&ze, zerr);
        wb_errf(err, errlen, "%s: %s", zip_path, zip_error_strerror(&ze));
        zip_error_fini(&ze);
        rc = zerr == ZIP_ER_MEMORY ? WB_ENOMEM : open_failed(zerr) ? WB_EIO : WB_ECORRUPT;
        goto done;
    }
    zip_int64_t n = zip_get_num_entries(x.za, 0);
    if (n < 0) {
        wb_errf(err, errlen, "%s: %s", zip_path, zip_strerror(x.za));
        rc = WB_ECORRUPT;
        goto done;
    }
    if ((uint64_t)n > max_files) {
        wb_errf(err, errlen, "%s: %lld entries, more than the %llu allowed", zip_path, (long long)n,
                (unsigned long long)max_files);
        rc = WB_ETOOBIG;
        goto done;
    }
    if (!(x.buf = malloc(COPY_BUF))) {
        wb_errf(err, errlen, "out of memory");
        rc = WB_ENOMEM;
        goto done;
    }
    for (zip_uint64_t i = 0; i < (zip_uint64_t)n && rc == 0; i++)
        rc = extract_entry(&x, i);

done:
    if (x.za)
        zip_discard(x.za);
    free(x.buf);
    if (rc != 0) {
        if (x.dfd >= 0)
            remove_contents(x.dfd, 0);
        rmdir(dest_dir);
    }
    if (x.dfd >= 0)
        close(x.dfd);
    return rc;
}
