/* rls_mix.c: the course's second example: two remote directories open at
 * once, their entries interleaved (one of the first, one of the second,
 * ...), to show that each RDIR keeps its own place. */
#include <stdio.h>
#include <stdlib.h>

#include "dirops.h"

int main(int argc, char *argv[])
{
    RDIR *a, *b;
    char *ea, *eb;

    if (argc != 3) {
        fprintf(stderr, "usage: SERVIDOR=host PUERTO=port %s dir1 dir2\n", argv[0]);
        return 2;
    }
    a = r_opendir(argv[1]);
    if (a == NULL) {
        perror(argv[1]);
        return 1;
    }
    b = r_opendir(argv[2]);
    if (b == NULL) {
        perror(argv[2]);
        r_closedir(a);
        return 1;
    }
    do {
        ea = r_readdir(a);
        if (ea != NULL)
            printf("%s: %s\n", argv[1], ea);
        eb = r_readdir(b);
        if (eb != NULL)
            printf("%s: %s\n", argv[2], eb);
    } while (ea != NULL || eb != NULL);
    r_closedir(a);
    r_closedir(b);
    return 0;
}
