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
    int fd;
    char *path;
    uint64_t cookie; /* where the next batch starts */
    struct dirops_names names;
    int eof;
    int failed;
    int started; /* a batch came: a lost server is tried again */
};

static void pause_a_little(void)
{
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

/* ReadDir { path, cookie, max } until an answer arrives; 0 or -1. */
static int fetch(RDIR *d)
{
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
    dirops_put_varint(&req, strlen(d->path));
    dirops_put_bytes(&req, d->path, strlen(d->path));
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
                dirops_warn("%s: %s: %s", dirops_server(), d->path, strerror(errno));
            close(d->fd);
            d->fd = -1;
        }
        if (!d->started) {
            dirops_buf_free(&req);
            d->failed = errno ? errno : EIO;
            return -1;
        }
        if (deadline == 0)
            deadline = time(NULL) + RETRY_SECS;
        if (time(NULL) >= deadline) {
            dirops_warn("%s: %s: server lost for %d s; giving up", dirops_server(), d->path,
                        RETRY_SECS);
            dirops_buf_free(&req);
            d->failed = EIO;
            return -1;
        }
        if (!told) {
            dirops_warn("%s: %s: connection lost; asking again from cookie %#llx",
                        dirops_server(), d->path, (unsigned long long)d->cookie);
            told = 1;
        }
        pause_a_little();
    }
    dirops_buf_free(&req);
    if (told)
        dirops_warn("%s: %s: going on from cookie %#llx", dirops_server(), d->path,
                    (unsigned long long)d->cookie);
    r.p = payload;
    r.end = payload + len;
    if (dirops_get_varint(&r, &variant) != 0)
        variant = 99;
    if (variant == RESP_BATCH) {
        if (dirops_names_take(&d->names, payload, &r) == 0) {
            if (dirops_get_varint(&r, &cookie) == 0 && r.p + 1 == r.end && *r.p <= 1) {
                d->cookie = cookie;
                d->eof = *r.p;
                d->started = 1;
                return 0;
            }
            dirops_names_free(&d->names); /* frees payload */
        } else {
            free(payload);
        }
        d->failed = EPROTO;
    } else if (variant == RESP_ERROR && dirops_get_varint(&r, &status) == 0 &&
               dirops_get_bytes(&r, &msg, &n) == 0) {
        dirops_warn("%s: %s: %.*s", dirops_server(), d->path, (int)n, (const char *)msg);
        d->failed = dirops_errno_of((uint32_t)status);
        free(payload);
    } else {
        d->failed = EPROTO;
        free(payload);
    }
    if (d->failed == EPROTO)
        dirops_warn("%s: %s: a reply that is not a stateless response", dirops_server(),
                    d->path);
    errno = d->failed;
    return -1;
}

static void free_dir(RDIR *d)
{
    if (d->fd >= 0)
        close(d->fd);
    dirops_names_free(&d->names);
    free(d->names.name);
    free(d->path);
    free(d);
}

RDIR *r_opendir(char *dirname)
{
    RDIR *d;

    if (dirname == NULL) {
        errno = EINVAL;
        return NULL;
    }
    d = calloc(1, sizeof *d);
    if (d == NULL)
        return NULL;
    d->fd = -1;
    d->path = strdup(dirname);
    if (d->path == NULL || dirops_register(d) != 0) {
        free_dir(d);
        errno = ENOMEM;
        return NULL;
    }
    /* opendir's errors belong to opendir: the first batch is read now. */
    if (fetch(d) != 0) {
        int e = errno;
        dirops_forget(d);
        free_dir(d);
        errno = e;
        return NULL;
    }
    return d;
}

char *r_readdir(RDIR *d)
{
    char *name;

    if (!dirops_known(d)) {
        dirops_warn("r_readdir: %p is not an open directory", (void *)d);
        errno = EBADF;
        return NULL;
    }
    for (;;) {
        if (d->failed) {
            errno = d->failed;
            return NULL;
        }
        name = dirops_names_next(&d->names);
        if (name != NULL)
            return name;
        if (d->eof)
            return NULL;
        if (fetch(d) != 0)
            return NULL;
    }
}

int r_closedir(RDIR *d)
{
    if (!dirops_known(d)) {
        dirops_warn("r_closedir: %p is not an open directory", (void *)d);
        errno = EBADF;
        return -1;
    }
    dirops_forget(d);
    free_dir(d);
    return 0;
}
