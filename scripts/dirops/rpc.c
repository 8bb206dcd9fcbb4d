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
    struct dirops_dir dir;
    CLIENT *clnt;
    u_quad_t cookie; /* where the next batch starts */
    rdir_res res;    /* the current batch, owned here */
    int have_res;
    u_int next;
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
 * lost; 0 or -1 (failed set). */
static int fetch(struct dirops_dir *dir)
{
    RDIR *d = (RDIR *)dir;
    rdir_args args;
    rdir_res *res = NULL;
    char why[512] = "";
    time_t deadline = 0;
    int told = 0;

    drop_batch(d);
    args.dirname = d->dir.path;
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
            dirops_warn("%s: %s: %s", dirops_host(), d->dir.path, why);
            /* The system's reason when there is one (connection refused). */
            d->dir.failed =
                rpc_createerr.cf_error.re_errno ? rpc_createerr.cf_error.re_errno : EIO;
            errno = d->dir.failed;
            return -1;
        }
        if (deadline == 0)
            deadline = time(NULL) + RETRY_SECS;
        if (time(NULL) >= deadline) {
            dirops_warn("%s: %s: server lost for %d s; giving up (%s)", dirops_host(),
                        d->dir.path, RETRY_SECS, why);
            d->dir.failed = EIO;
            errno = EIO;
            return -1;
        }
        if (!told) {
            dirops_warn("%s: %s: %s; asking again from cookie %#llx", dirops_host(),
                        d->dir.path, why, (unsigned long long)d->cookie);
            told = 1;
        }
        pause_a_little();
    }
    if (told)
        dirops_warn("%s: %s: going on from cookie %#llx", dirops_host(), d->dir.path,
                    (unsigned long long)d->cookie);
    /* The stub's result is static and cleared, not freed, by the next
     * call: take it over. */
    d->res = *res;
    d->have_res = 1;
    if (d->res.status != RDIR_OK) {
        d->dir.failed = dirops_errno_of((uint32_t)d->res.status);
        dirops_warn("%s: %s: server status %d (%s)", dirops_host(), d->dir.path,
                    d->res.status,
                    d->res.status == RDIR_EBADCOOKIE ? "stale cookie"
                                                     : strerror(d->dir.failed));
        drop_batch(d);
        errno = d->dir.failed;
        return -1;
    }
    d->cookie = d->res.rdir_res_u.batch.cookie;
    d->dir.eof = d->res.rdir_res_u.batch.eof;
    d->started = 1;
    return 0;
}

static void free_dir(struct dirops_dir *dir)
{
    RDIR *d = (RDIR *)dir;

    drop_batch(d);
    if (d->clnt != NULL)
        clnt_destroy(d->clnt);
    free(d->dir.path);
    free(d);
}

static char *next(struct dirops_dir *dir)
{
    RDIR *d = (RDIR *)dir;

    if (d->have_res && d->next < d->res.rdir_res_u.batch.entries.entries_len)
        return d->res.rdir_res_u.batch.entries.entries_val[d->next++];
    return NULL;
}

static const struct dirops_design design = {next, fetch, free_dir, NULL};

RDIR *r_opendir(char *dirname)
{
    RDIR *d = (RDIR *)dirops_new(dirname, sizeof(RDIR));

    return d == NULL ? NULL : dirops_first(&d->dir, &design);
}

char *r_readdir(RDIR *d)
{
    return dirops_read(d, &design);
}

int r_closedir(RDIR *d)
{
    return dirops_close(d, &design);
}
