/* stateful.c: dirops.h over rdird's stateful design. r_opendir opens the
 * directory on the server (one connection per RDIR) and keeps the opaque
 * handle it returns; r_readdir asks for the next batch through the handle;
 * r_closedir releases it. The server remembers where each listing is, so
 * after a server restart the handle is gone: the library reconnects once,
 * the server refuses the old handle, and r_readdir says so and returns
 * NULL with errno EBADF. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "dirops.h"

#define PROTOCOL "rdir-stateful"

/* StatefulRequest and StatefulResponse variants, in declaration order. */
enum { REQ_OPEN, REQ_READ, REQ_CLOSE };
enum { RESP_OPENED, RESP_ENTRIES, RESP_CLOSED, RESP_ERROR };

struct rdir {
    struct dirops_dir dir;
    int fd;
    uint64_t handle;
    struct dirops_names names;
};

/* Sends `req`, receives the answer into *payload with *r after its
 * variant number *variant; reconnects and resends once if the connection
 * is gone. 0, or -1 with a message. */
static int exchange(RDIR *d, const struct dirops_buf *req, unsigned char **payload,
                    struct dirops_rd *r, uint64_t *variant)
{
    size_t len;
    int attempt;

    for (attempt = 0; attempt < 2; attempt++) {
        if (d->fd < 0 && (d->fd = dirops_open(PROTOCOL, 0)) < 0)
            return -1;
        if (dirops_send(d->fd, req) == 0 && dirops_recv(d->fd, payload, &len) == 0) {
            r->p = *payload;
            r->end = *payload + len;
            if (dirops_get_varint(r, variant) == 0)
                return 0;
            free(*payload);
            dirops_warn("%s: %s: a reply that is not a stateful response", dirops_server(),
                        d->dir.path);
            errno = EPROTO;
            return -1;
        }
        if (attempt == 0)
            dirops_warn("%s: %s: connection lost (%s); reconnecting", dirops_server(),
                        d->dir.path, strerror(errno));
        close(d->fd);
        d->fd = -1;
    }
    dirops_warn("%s: %s: %s", dirops_server(), d->dir.path, strerror(errno));
    return -1;
}

/* Reads Error { status, message } after its variant: warns, sets errno. */
static void refused(RDIR *d, struct dirops_rd *r)
{
    uint64_t status = 5;
    const unsigned char *msg = (const unsigned char *)"";
    size_t n = 0;

    if (dirops_get_varint(r, &status) != 0 || dirops_get_bytes(r, &msg, &n) != 0)
        msg = (const unsigned char *)"(unreadable refusal)", n = strlen((const char *)msg);
    dirops_warn("%s: %s: %.*s", dirops_server(), d->dir.path, (int)n, (const char *)msg);
    errno = dirops_errno_of((uint32_t)status);
}

static void free_dir(struct dirops_dir *dir)
{
    RDIR *d = (RDIR *)dir;

    dirops_free_socket(dir, d->fd, &d->names);
}

/* One Read through the handle; 0 or -1 (failed set). */
static int fetch(struct dirops_dir *dir)
{
    RDIR *d = (RDIR *)dir;
    struct dirops_buf req = {0};
    struct dirops_rd r;
    unsigned char *payload;
    uint64_t variant;

    dirops_put_varint(&req, REQ_READ);
    dirops_put_varint(&req, d->handle);
    dirops_put_varint(&req, dirops_batch());
    if (exchange(d, &req, &payload, &r, &variant) != 0) {
        dirops_buf_free(&req);
        d->dir.failed = errno ? errno : EIO;
        return -1;
    }
    dirops_buf_free(&req);
    if (variant == RESP_ENTRIES && dirops_names_take(&d->names, payload, &r) == 0 &&
        r.p + 1 == r.end && *r.p <= 1) {
        d->dir.eof = *r.p;
        return 0;
    }
    if (variant == RESP_ERROR)
        refused(d, &r);
    else {
        dirops_warn("%s: %s: unexpected answer to read", dirops_server(), d->dir.path);
        errno = EPROTO;
    }
    if (d->names.payload != payload)
        free(payload);
    dirops_names_free(&d->names);
    d->dir.failed = errno;
    return -1;
}

static char *next(struct dirops_dir *dir)
{
    return dirops_names_next(&((RDIR *)dir)->names);
}

/* Releases the handle on this connection (closing the connection would
 * too); no reconnecting: a new connection cannot close it, nor can a
 * handle the server already refused be closed. */
static int release(struct dirops_dir *dir)
{
    RDIR *d = (RDIR *)dir;
    struct dirops_buf req = {0};
    unsigned char *payload = NULL;
    size_t len;
    int rc = 0;

    if (d->fd >= 0 && !d->dir.failed) {
        dirops_put_varint(&req, REQ_CLOSE);
        dirops_put_varint(&req, d->handle);
        if (dirops_send(d->fd, &req) != 0 || dirops_recv(d->fd, &payload, &len) != 0 ||
            len != 1 || payload[0] != RESP_CLOSED)
            rc = -1;
        free(payload);
        dirops_buf_free(&req);
    }
    return rc;
}

static const struct dirops_design design = {next, fetch, free_dir, release};

RDIR *r_opendir(char *dirname)
{
    struct dirops_buf req = {0};
    struct dirops_rd r;
    unsigned char *payload;
    uint64_t variant;
    RDIR *d = (RDIR *)dirops_new(dirname, sizeof(RDIR));

    if (d == NULL)
        return NULL;
    d->fd = -1;
    dirops_put_varint(&req, REQ_OPEN);
    dirops_put_varint(&req, strlen(dirname));
    dirops_put_bytes(&req, dirname, strlen(dirname));
    if (exchange(d, &req, &payload, &r, &variant) != 0) {
        dirops_buf_free(&req);
        return dirops_abandon(&d->dir, &design);
    }
    dirops_buf_free(&req);
    if (variant == RESP_OPENED && dirops_get_varint(&r, &d->handle) == 0 && r.p == r.end) {
        free(payload);
        return d;
    }
    if (variant == RESP_ERROR)
        refused(d, &r);
    else {
        dirops_warn("%s: %s: unexpected answer to open", dirops_server(), dirname);
        errno = EPROTO;
    }
    free(payload);
    return dirops_abandon(&d->dir, &design);
}

char *r_readdir(RDIR *d)
{
    return dirops_read(d, &design);
}

int r_closedir(RDIR *d)
{
    return dirops_close(d, &design);
}
