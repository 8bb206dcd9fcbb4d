/* stateless.c: dirops.h over rdird's stateless design. The server keeps
 * nothing: the RDIR holds the path and the cookie where the next batch
 * starts, and every request carries both. So a listing goes on across a
 * server restart: when the connection is lost the library reconnects
 * (for up to RETRY_SECS) and asks again from the same cookie. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "dirops.h"

#define PROTOCOL "rdir-stateless"
/* How long a lost server is tried again before a listing fails. */
#define RETRY_SECS 20

enum { RESP_BATCH, RESP_ERROR };

struct rdir {
    struct dirops_dir dir;
    int fd;
    uint64_t cookie; /* where the next batch starts */
    struct dirops_names names;
    int started; /* a batch came: a lost server is tried again */
};

static void pause_a_little(void)
{
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

/* ReadDir { path, cookie, max } until an answer arrives; 0 or -1. */
static int fetch(struct dirops_dir *dir)
{
    RDIR *d = (RDIR *)dir;
    struct dirops_buf req = {0};
    struct dirops_rd r;
    unsigned char *payload = NULL;
    size_t len;
    uint64_t variant, status, cookie;
    const unsigned char *msg;
    size_t n;
    time_t deadline = 0;
    int told = 0;

    dirops_put_varint(&req, 0);
    dirops_put_varint(&req, strlen(d->dir.path));
    dirops_put_bytes(&req, d->dir.path, strlen(d->dir.path));
    dirops_put_varint(&req, d->cookie);
    dirops_put_varint(&req, dirops_batch());
    for (;;) {
        if (d->fd < 0)
            d->fd = dirops_open(PROTOCOL, d->started);
        if (d->fd >= 0 && dirops_send(d->fd, &req) == 0 &&
            dirops_recv(d->fd, &payload, &len) == 0)
            break;
        if (d->fd >= 0) {
            /* dirops_open said why it failed; this is the exchange. */
            if (!d->started)
                dirops_warn("%s: %s: %s", dirops_server(), d->dir.path, strerror(errno));
            close(d->fd);
            d->fd = -1;
        }
        if (!d->started) {
            dirops_buf_free(&req);
            d->dir.failed = errno ? errno : EIO;
            return -1;
        }
        if (deadline == 0)
            deadline = time(NULL) + RETRY_SECS;
        if (time(NULL) >= deadline) {
            dirops_warn("%s: %s: server lost for %d s; giving up", dirops_server(), d->dir.path,
                        RETRY_SECS);
            dirops_buf_free(&req);
            d->dir.failed = EIO;
            return -1;
        }
        if (!told) {
            dirops_warn("%s: %s: connection lost; asking again from cookie %#llx",
                        dirops_server(), d->dir.path, (unsigned long long)d->cookie);
            told = 1;
        }
        pause_a_little();
    }
    dirops_buf_free(&req);
    if (told)
        dirops_warn("%s: %s: going on from cookie %#llx", dirops_server(), d->dir.path,
                    (unsigned long long)d->cookie);
    r.p = payload;
    r.end = payload + len;
    if (dirops_get_varint(&r, &variant) != 0)
        variant = 99;
    if (variant == RESP_BATCH) {
        if (dirops_names_take(&d->names, payload, &r) == 0) {
            if (dirops_get_varint(&r, &cookie) == 0 && r.p + 1 == r.end && *r.p <= 1) {
                d->cookie = cookie;
                d->dir.eof = *r.p;
                d->started = 1;
                return 0;
            }
            dirops_names_free(&d->names); /* frees payload */
        } else {
            free(payload);
        }
        d->dir.failed = EPROTO;
    } else if (variant == RESP_ERROR && dirops_get_varint(&r, &status) == 0 &&
               dirops_get_bytes(&r, &msg, &n) == 0) {
        dirops_warn("%s: %s: %.*s", dirops_server(), d->dir.path, (int)n, (const char *)msg);
        d->dir.failed = dirops_errno_of((uint32_t)status);
        free(payload);
    } else {
        d->dir.failed = EPROTO;
        free(payload);
    }
    if (d->dir.failed == EPROTO)
        dirops_warn("%s: %s: a reply that is not a stateless response", dirops_server(),
                    d->dir.path);
    errno = d->dir.failed;
    return -1;
}

static void free_dir(struct dirops_dir *dir)
{
    RDIR *d = (RDIR *)dir;

    dirops_free_socket(dir, d->fd, &d->names);
}

static char *next(struct dirops_dir *dir)
{
    return dirops_names_next(&((RDIR *)dir)->names);
}

static const struct dirops_design design = {next, fetch, free_dir, NULL};

RDIR *r_opendir(char *dirname)
{
    RDIR *d = (RDIR *)dirops_new(dirname, sizeof(RDIR));

    if (d == NULL)
        return NULL;
    d->fd = -1;
    return dirops_first(&d->dir, &design);
}

char *r_readdir(RDIR *d)
{
    return dirops_read(d, &design);
}

int r_closedir(RDIR *d)
{
    return dirops_close(d, &design);
}
