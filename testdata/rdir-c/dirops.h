/* dirops.h: opendir/readdir/closedir on a remote directory served by
 * `rdird --mode rpc`, over the stubs rpcgen makes from rdir.x. The server is
 * $SERVIDOR (default localhost), found through its rpcbind; the program
 * number is NUMPROG from rdir.x, or $RDIR_PROG. The client keeps the cookie:
 * every call to the server is self-contained. */
#ifndef DIROPS_H
#define DIROPS_H

struct r_dirent {
    char d_name[256];
};

typedef struct r_dir R_DIR;

/* Opens a remote directory; NULL with a message on stderr on failure
 * (r_errno() then gives the server's status, or -1 for an RPC failure). */
R_DIR *r_opendir(const char *name);

/* The next entry, valid until the next call; NULL at the end or on error
 * (r_errno() tells which: 0 at the end). */
struct r_dirent *r_readdir(R_DIR *dir);

/* Frees the directory; 0 on success. */
int r_closedir(R_DIR *dir);

/* The last status: 0, an errno value from the server, 10003 for a stale
 * cookie, -1 for an RPC failure. */
int r_errno(void);

#endif
