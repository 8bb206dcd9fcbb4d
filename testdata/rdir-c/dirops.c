/* dirops.c: dirops.h over the rpcgen client stubs of rdir.x. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rdir.h"
#include "dirops.h"

/* Entries asked for per call: a full batch of long names makes a reply
 * over 64 KiB, which the server sends in several fragments. */
#define BATCH RDIR_MAXBATCH

struct r_dir {
    CLIENT *clnt;
    char *path;
    u_quad_t cookie;     /* where the next call starts */
    int eof;             /* the server said the directory is finished */
    char **names;        /* the current batch */
    u_int count, next;
    struct r_dirent ent;
};

static int last_status;

int r_errno(void) { return last_status; }

static void free_batch(R_DIR *d)
{
    u_int i;
    for (i = 0; i < d->count; i++)
        free(d->names[i]);
    free(d->names);
    d->names = NULL;
    d->count = d->next = 0;
}

/* One RDIR_READDIR call from the kept cookie; 0 on success. */
static int fetch(R_DIR *d)
{
    rdir_args args;
    rdir_res *res;
    u_int i;

    free_batch(d);
    args.dirname = d->path;
    args.cookie = d->cookie;
    args.max_entries = BATCH;
    res = rdir_readdir_1(&args, d->clnt);
    if (res == NULL) {
        clnt_perror(d->clnt, d->path);
        last_status = -1;
        return -1;
    }
    if (res->status != RDIR_OK) {
        last_status = res->status;
        fprintf(stderr, "%s: server status %d%s\n", d->path, res->status,
                res->status == RDIR_EBADCOOKIE ? " (stale cookie)" : "");
        xdr_free((xdrproc_t)xdr_rdir_res, (char *)res);
        return -1;
    }
    d->count = res->rdir_res_u.batch.entries.entries_len;
    d->names = calloc(d->count ? d->count : 1, sizeof *d->names);
    for (i = 0; i < d->count; i++)
        d->names[i] = strdup(res->rdir_res_u.batch.entries.entries_val[i]);
    d->cookie = res->rdir_res_u.batch.cookie;
    d->eof = res->rdir_res_u.batch.eof;
    xdr_free((xdrproc_t)xdr_rdir_res, (char *)res);
    last_status = 0;
    return 0;
}

R_DIR *r_opendir(const char *name)
{
    const char *host = getenv("SERVIDOR");
    const char *prog_env = getenv("RDIR_PROG");
    unsigned long prog = prog_env ? strtoul(prog_env, NULL, 0) : RDIRPROG;
    R_DIR *d = calloc(1, sizeof *d);

    if (d == NULL)
        return NULL;
    if (host == NULL)
        host = "localhost";
    d->clnt = clnt_create(host, prog, RDIRVERS, "tcp");
    if (d->clnt == NULL) {
        clnt_pcreateerror(host);
        last_status = -1;
        free(d);
        return NULL;
    }
    d->path = strdup(name);
    /* opendir's errors belong to opendir: ask for the first batch now. */
    if (fetch(d) != 0) {
        r_closedir(d);
        return NULL;
    }
    return d;
}

struct r_dirent *r_readdir(R_DIR *d)
{
    while (d->next >= d->count) {
        if (d->eof) {
            last_status = 0;
            return NULL;
        }
        if (fetch(d) != 0)
            return NULL;
    }
    strncpy(d->ent.d_name, d->names[d->next++], sizeof d->ent.d_name - 1);
    d->ent.d_name[sizeof d->ent.d_name - 1] = '\0';
    return &d->ent;
}

int r_closedir(R_DIR *d)
{
    free_batch(d);
    if (d->clnt)
        clnt_destroy(d->clnt);
    free(d->path);
    free(d);
    return 0;
}
