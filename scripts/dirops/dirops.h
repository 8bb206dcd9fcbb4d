/* dirops.h: the course's remote opendir/readdir/closedir. The same three
 * functions for every design; link with the library of the design the
 * server runs (scripts/build-dirops.sh builds one per design). The server
 * is $SERVIDOR (default localhost) at port $PUERTO (default 7654; for the
 * RPC design, unset means "ask the server's rpcbind"). */
#ifndef DIROPS_H
#define DIROPS_H

typedef struct rdir RDIR;

RDIR *r_opendir(char *dirname);
char *r_readdir(RDIR *dir);
int r_closedir(RDIR *dir);

#endif
