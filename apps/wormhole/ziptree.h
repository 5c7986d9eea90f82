/*
 * ziptree.h - the directory archive of the wormhole file protocol (mode
 * "zipfile/deflated", shared notes wormhole.md 4.4): build one from files
 * and directories on disk, and extract one received from a peer. On libzip.
 *
 * Building does what magic-wormhole 0.12.0's sender does (cmd_send.py):
 * every regular file, DEFLATE, ZIP64 when needed (a file over 4 GiB, more
 * than 65535 entries), '/' separators, names as the bytes on disk (marked
 * UTF-8 when they are valid non-ASCII UTF-8), the file's mtime, and
 * external attributes (S_IFREG | mode & 0777) << 16 with the UNIX host
 * system. Directories get no entries of their own, so EMPTY DIRECTORIES ARE
 * NOT SENT (neither Python nor Go sends them). Symbolic links are followed:
 * a link to a file sends the file's contents under the link's name, a link
 * to a directory is descended into (Python's os.walk does not descend into
 * directory links; we do, and a link back to a directory on the current
 * path is skipped with a warning instead of looping). The zip archive is
 * written to a file of our own (O_EXCL, 0600), never through a temporary
 * name. A file is read twice (checked while walking, copied when the archive
 * is written); a file that is replaced in between is an error, and a file
 * that grows is sent with the size it had when walked, so numbytes is exact.
 *
 * Extracting trusts nothing in the archive: see wb_ziptree_extract.
 *
 * Blocking calls (file system, compression): run them off the event loop.
 * Any thread; no global state.
 */
#ifndef WB_WORMHOLE_ZIPTREE_H
#define WB_WORMHOLE_ZIPTREE_H

#include <stddef.h>
#include <stdint.h>

/* Deepest entry name extraction accepts (components, file name included).
 * Bounds the directory descriptors held while cleaning up. */
#define WB_ZIPTREE_MAX_DEPTH 256

typedef struct {
    uint64_t numbytes; /* sum of the sizes of the files in the archive */
    uint64_t numfiles; /* regular files in it */
    uint64_t zipsize;  /* size of the archive file */
} wb_ziptree_info_t;

typedef void (*wb_ziptree_warn_cb)(const char *msg, void *user);
typedef void (*wb_ziptree_progress_cb)(uint64_t done, uint64_t total, void *user);

/* Build a zip archive at zip_path (created with mode 0600; must not exist)
 * holding paths[0..n).
 *
 * n == 1 and paths[0] a directory: the files under it, named relative to it
 * (no top-level folder), as the Python sender does. Otherwise (several
 * paths, or one file): each path under its basename at the top ("a.txt",
 * "b/x/y", "c.pdf"), so stock receivers unpack them into one directory; a
 * path given as "." or ending in ".." is named by its real basename. Two
 * paths with the same basename: WB_EINVAL naming it.
 *
 * Anything met while walking that is not a regular file or a directory
 * (socket, fifo, device, dangling link) or cannot be read: an error naming
 * the path, unless ignore_unsendable, then it is skipped and reported to
 * warn. The paths given themselves must always be sendable. A directory
 * link back to a directory on the current path is always skipped with a
 * warning. The archive file itself, if inside the tree, is skipped silently.
 * An empty tree gives a valid empty archive (22 bytes, like Python).
 *
 * warn (may be NULL): one line, no newline. progress (may be NULL): bytes of
 * file data compressed so far out of numbytes, about every MiB and at the
 * end. Both are called on the caller's thread, before this returns.
 *
 * Returns 0 and fills info. Else WB_EINVAL (bad argument, unsendable path,
 * duplicate basename), WB_EEXIST (zip_path exists), WB_EIO (read or write
 * failed, file changed under us), WB_EFULL (disk full), WB_ENOMEM, with a
 * one-line reason in err (may be NULL), and zip_path removed. */
int wb_ziptree_build(const char *const *paths, size_t n, const char *zip_path,
                     int ignore_unsendable, wb_ziptree_warn_cb warn,
                     wb_ziptree_progress_cb progress, void *user, wb_ziptree_info_t *info,
                     char *err, size_t errlen);

/* Extract zip_path (from an untrusted peer) into dest_dir, which this
 * creates (mode 0777 & ~umask) and which must not exist.
 *
 * Entry names must be relative paths of plain components: an empty name, a
 * leading '/', an empty, "." or ".." component, a backslash anywhere (a
 * separator to Windows tools: "a\..\x" must not mean anything), or more than
 * WB_ZIPTREE_MAX_DEPTH components is refused. A name with a NUL byte is cut
 * there by libzip, as by Python's zipfile; the cut name is what is checked
 * and used. Names are read as libzip gives them: UTF-8, converted from
 * CP437 when not flagged UTF-8 and not valid UTF-8. Everything is created
 * through descriptors relative to dest_dir, components opened with
 * O_NOFOLLOW, so nothing can lead outside it.
 *
 * A name ending in '/' makes a directory; parents are made as needed
 * (0777 & ~umask; directory modes in the archive are ignored). Symlink
 * entries (S_IFLNK in the upper external attributes, whatever host system)
 * and encrypted entries are refused. Files are created O_CREAT | O_EXCL |
 * O_NOFOLLOW, so a second entry of one name is an error. A file's mode is
 * (external_attr >> 16) & 0777 when made on UNIX with S_IFREG or no type
 * bits and a non-zero mode, else 0666; either filtered by the umask (as Go's
 * receiver and unzip do; Python's chmod ignores it). Never setuid, setgid or
 * sticky.
 *
 * Bounds: more than max_files entries (directory entries count), or more
 * than max_bytes of file data written in total (counted while writing, the
 * header's sizes are not trusted), is an error.
 *
 * Returns 0. Else WB_EEXIST (dest_dir exists; it is left alone), WB_ECORRUPT
 * (not a zip archive, bad data or CRC), WB_EPROTO (an entry refused as
 * above), WB_ETOOBIG (over a bound), WB_EIO, WB_EFULL, WB_ENOMEM, WB_EINVAL,
 * with a one-line reason in err (may be NULL), and dest_dir removed with
 * everything in it. */
int wb_ziptree_extract(const char *zip_path, const char *dest_dir, uint64_t max_bytes,
                       uint64_t max_files, char *err, size_t errlen);

#endif
