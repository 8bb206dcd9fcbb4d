/* rls-c: the course's rls in C, over dirops.h. Lists each directory, one
 * entry per line; exit 1 if one cannot be listed. */
#include <stdio.h>
#include <string.h>

#include "dirops.h"

int main(int argc, char **argv)
{
    int i, status = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: SERVIDOR=host %s DIR...\n", argv[0]);
        return 2;
    }
    for (i = 1; i < argc; i++) {
        R_DIR *d = r_opendir(argv[i]);
        struct r_dirent *e;

        if (d == NULL) {
            status = 1;
            continue;
        }
        while ((e = r_readdir(d)) != NULL) {
            fwrite(e->d_name, 1, strlen(e->d_name), stdout);
            putchar('\n');
        }
        if (r_errno() != 0)
            status = 1;
        r_closedir(d);
    }
    return status;
}
