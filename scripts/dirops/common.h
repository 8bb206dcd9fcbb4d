/* common.h: what the three designs of libdirops share (not installed):
 * the table of live RDIR handles, the server's address from the
 * environment, messages, r_opendir, r_readdir and r_closedir over each
 * design's own steps (struct dirops_design), and for the two socket
 * designs the postcard frames and the version handshake. */
#ifndef DIROPS_COMMON_H
#define DIROPS_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "dirops.h"

/* Entries asked for per request: $RDIR_BATCH (1 to 1024), default 128. */
unsigned dirops_batch(void);
/* $SERVIDOR, or "localhost". */
const char *dirops_host(void);
/* $PUERTO as a port; 0 when unset, -1 (with a message) when not a port. */
int dirops_port(void);
/* "dirops: " and the message on stderr. */
void dirops_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* errno for a status code from the server (an errno value, or 10003). */
int dirops_errno_of(uint32_t status);

/* Live handles: a pointer is only ever used after dirops_known() found it,
 * so a bogus or closed RDIR is refused without being dereferenced. */
int dirops_register(const void *dir);
int dirops_known(const void *dir);
void dirops_forget(const void *dir);

/* A growing byte buffer for one outgoing message. */
struct dirops_buf {
    unsigned char *p;
    size_t len, cap;
    int failed;
};
void dirops_put_varint(struct dirops_buf *b, uint64_t v);
void dirops_put_bytes(struct dirops_buf *b, const void *p, size_t n);
void dirops_buf_free(struct dirops_buf *b);

/* Reading a received payload; every get fails (returns -1) past its end. */
struct dirops_rd {
    const unsigned char *p, *end;
};
int dirops_get_varint(struct dirops_rd *r, uint64_t *v);
/* A length-prefixed byte string: points into the payload. */
int dirops_get_bytes(struct dirops_rd *r, const unsigned char **p, size_t *n);

/* Connects to $SERVIDOR:$PUERTO (default port 7654) with timeouts and
 * says hello for `protocol` (version 1); the socket, or -1 with a message
 * (none for a failed connect when `quiet`: a caller trying again). */
int dirops_open(const char *protocol, int quiet);
/* Sends `b` as one frame; 0 or -1. */
int dirops_send(int fd, const struct dirops_buf *b);
/* Receives one frame into *payload (malloc'd); 0, or -1 with errno. */
int dirops_recv(int fd, unsigned char **payload, size_t *len);
/* "host:port" of the server, for messages. */
const char *dirops_server(void);

/* One batch of names from the server: the payload it lives in, a cursor
 * and how many are left; `name` is the current one, NUL-terminated. */
struct dirops_names {
    unsigned char *payload;
    struct dirops_rd cur;
    uint64_t left;
    char *name;
    size_t namecap;
};
/* Takes `payload` (freed later) whose reader `r` is at a Vec<Vec<u8>>:
 * checks every name and leaves `r` after the list; 0 or -1. */
int dirops_names_take(struct dirops_names *n, unsigned char *payload, struct dirops_rd *r);
/* The next name, valid until the next call; NULL when none is left. */
char *dirops_names_next(struct dirops_names *n);
/* Frees the payload (the name buffer stays for reuse). */
void dirops_names_free(struct dirops_names *n);

/* The start of every design's RDIR: what the steps they share read. */
struct dirops_dir {
    char *path; /* as given to r_opendir */
    int eof;    /* no batch follows the one held */
    int failed; /* errno of a failure that ends the listing, or 0 */
};

/* A design's own steps over its RDIR, which starts with a struct dirops_dir. */
struct dirops_design {
    /* The next name of the batch held; NULL when it is used up. */
    char *(*next)(struct dirops_dir *dir);
    /* Asks the server for the next batch; 0, or -1 with `failed` set. */
    int (*fetch)(struct dirops_dir *dir);
    /* Closes and frees the RDIR and all it holds. */
    void (*free)(struct dirops_dir *dir);
    /* r_closedir's word to the server before the free; 0 or -1. NULL
     * where there is nothing to say. */
    int (*close)(struct dirops_dir *dir);
};

/* Frees the RDIR `dir` of a socket design: closes `fd` if open, frees
 * `names` (its buffer too), the path and `dir` itself. */
void dirops_free_socket(struct dirops_dir *dir, int fd, struct dirops_names *names);
/* r_opendir's first steps: a zeroed RDIR of `size` bytes holding a copy
 * of `dirname`, registered as live; NULL with errno EINVAL (no name) or
 * ENOMEM. */
struct dirops_dir *dirops_new(const char *dirname, size_t size);
/* r_opendir's last step where the first batch is read at once (opendir's
 * errors belong to opendir): `dir`, or NULL as dirops_abandon. */
RDIR *dirops_first(struct dirops_dir *dir, const struct dirops_design *design);
/* Forgets and frees a `dir` r_opendir gives up on; NULL, errno kept. */
RDIR *dirops_abandon(struct dirops_dir *dir, const struct dirops_design *design);
/* r_readdir: the names of the batch held, then of the next ones fetched;
 * NULL at the end, or with errno after a failure (EBADF for a `d` that is
 * not an open directory). */
char *dirops_read(RDIR *d, const struct dirops_design *design);
/* r_closedir: forgets and frees a live `d` after design->close; 0, or
 * -1 with errno EIO when that failed, EBADF (and a message) when `d` is
 * not an open directory. */
int dirops_close(RDIR *d, const struct dirops_design *design);

#endif
