/* rls.c: the course's example: lists a remote directory through dirops.h,
 * one entry per line. The server is $SERVIDOR at $PUERTO. Links unchanged
 * against the library of any design. */
#include <stdio.h>
#include <stdlib.h>

#include "dirops.h"

int main(int argc, char *argv[])
{
    RDIR *dir;
    char *entry;

    if (argc != 2) {
        fprintf(stderr, "usage: SERVIDOR=host PUERTO=port %s directory\n", argv[0]);
        return 2;
    }
    dir = r_opendir(argv[1]);
    if (dir == NULL) {
        perror("r_opendir");
        return 1;
    }
    while ((entry = r_readdir(dir)) != NULL)
        printf("%s\n", entry);
    r_closedir(dir);
    return 0;
}
