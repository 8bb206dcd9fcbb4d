/* rpc.c: dirops.h over rdird's RPC design, the rpcgen stubs of rdir.x.
 * Stateless like the socket design of that name: the RDIR keeps the path
 * and the cookie, and every RDIR_READDIR call carries both. The server is
 * $SERVIDOR; with $PUERTO it is called at that port, without it the
 * server's rpcbind is asked where program RDIRPROG (or $RDIR_PROG) is.
 * A lost server is tried again (for up to RETRY_SECS, asking rpcbind
 * anew, as a restarted server may have another port), and the listing
 * goes on from the kept cookie. */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "dirops.h"
#include "rdir.h"

#define RETRY_SECS 20

struct rdir {
    CLIENT *clnt;
    char *path;
    u_quad_t cookie; /* where the next batch starts */
    rdir_res res;    /* the current batch, owned here */
    int have_res;
    u_int next;
    int eof;
    int failed;
    int started; /* a batch came: a lost server is tried again */
};

static unsigned long program(void)
{
    const char *s = getenv("RDIR_PROG");
    return s != NULL && *s != '\0' ? strtoul(s, NULL, 0) : RDIRPROG;
}

/* A client for the server, or NULL with *why set. */
static CLIENT *connect_server(char *why, size_t whylen)
{
    const char *host = dirops_host();
    int port = dirops_port();
    CLIENT *c;

    if (port < 0) {
        snprintf(why, whylen, "PUERTO is not a port");
        return NULL;
    }
    if (port == 0) {
        c = clnt_create(host, program(), RDIRVERS, "tcp");
        if (c == NULL)
            snprintf(why, whylen, "%s", clnt_spcreateerror("rpcbind"));
    } else {
        struct addrinfo hints, *res;
        struct sockaddr_in sin;
        int sock = RPC_ANYSOCK, rc;

        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_INET;
        hints.ai_socktype = SOCK_STREAM;
        rc = getaddrinfo(host, NULL, &hints, &res);
        if (rc != 0) {
            snprintf(why, whylen, "%s", gai_strerror(rc));
            return NULL;
        }
        memcpy(&sin, res->ai_addr, sizeof sin);
        freeaddrinfo(res);
        sin.sin_port = htons((unsigned short)port);
        c = clnttcp_create(&sin, program(), RDIRVERS, &sock, 0, 0);
        if (c == NULL)
            snprintf(why, whylen, "%s", clnt_spcreateerror("connect"));
    }
    if (c != NULL) {
        struct timeval tv = {30, 0};
        clnt_control(c, CLSET_TIMEOUT, (char *)&tv);
    }
    return c;
}

static void drop_batch(RDIR *d)
{
    if (d->have_res)
        xdr_free((xdrproc_t)xdr_rdir_res, (char *)&d->res);
    d->have_res = 0;
    d->next = 0;
}

static void pause_a_little(void)
{
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

/* One RDIR_READDIR from the kept cookie, retried while the server is
 * lost; 0 or -1 (d->failed set). */
static int fetch(RDIR *d)
{
    rdir_args args;
    rdir_res *res = NULL;
    char why[512] = "";
    time_t deadline = 0;
    int told = 0;

    drop_batch(d);
    args.dirname = d->path;
    args.cookie = d->cookie;
    args.max_entries = dirops_batch();
    for (;;) {
        if (d->clnt == NULL)
            d->clnt = connect_server(why, sizeof why);
        if (d->clnt != NULL) {
            res = rdir_readdir_1(&args, d->clnt);
            if (res != NULL)
                break;
            snprintf(why, sizeof why, "%s", clnt_sperror(d->clnt, "call"));
            clnt_destroy(d->clnt);
            d->clnt = NULL;
        }
        if (!d->started) {
            dirops_warn("%s: %s: %s", dirops_host(), d->path, why);
            /* The system's reason when there is one (connection refused). */
            d->failed = rpc_createerr.cf_error.re_errno ? rpc_createerr.cf_error.re_errno : EIO;
            errno = d->failed;
            return -1;
        }
        if (deadline == 0)
            deadline = time(NULL) + RETRY_SECS;
        if (time(NULL) >= deadline) {
            dirops_warn("%s: %s: server lost for %d s; giving up (%s)", dirops_host(), d->path,
                        RETRY_SECS, why);
            d->failed = EIO;
            errno = EIO;
            return -1;
        }
        if (!told) {
            dirops_warn("%s: %s: %s; asking again from cookie %#llx", dirops_host(), d->path,
                        why, (unsigned long long)d->cookie);
            told = 1;
        }
        pause_a_little();
    }
    if (told)
        dirops_warn("%s: %s: going on from cookie %#llx", dirops_host(), d->path,
                    (unsigned long long)d->cookie);
    /* The stub's result is static and cleared, not freed, by the next
     * call: take it over. */
    d->res = *res;
    d->have_res = 1;
    if (d->res.status != RDIR_OK) {
        d->failed = dirops_errno_of((uint32_t)d->res.status);
        dirops_warn("%s: %s: server status %d (%s)", dirops_host(), d->path, d->res.status,
                    d->res.status == RDIR_EBADCOOKIE ? "stale cookie" : strerror(d->failed));
        drop_batch(d);
        errno = d->failed;
        return -1;
    }
    d->cookie = d->res.rdir_res_u.batch.cookie;
    d->eof = d->res.rdir_res_u.batch.eof;
    d->started = 1;
    return 0;
}

static void free_dir(RDIR *d)
{
    drop_batch(d);
    if (d->clnt != NULL)
        clnt_destroy(d->clnt);
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
        if (d->have_res && d->next < d->res.rdir_res_u.batch.entries.entries_len)
            return d->res.rdir_res_u.batch.entries.entries_val[d->next++];
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
