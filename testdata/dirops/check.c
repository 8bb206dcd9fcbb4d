/* check.c: the integration test's client of dirops.h, using only the
 * course's three functions (and stdio):
 *
 *   check bogus DIR      every call on a handle that is not open (a pointer
 *                        to something else, NULL, a closed handle) is
 *                        refused with EBADF, and nothing crashes
 *   check pause DIR N    lists DIR; after N entries prints "paused" and
 *                        waits for a line on stdin (the test restarts the
 *                        server meanwhile), then lists the rest; exit 0
 *                        when the listing ended cleanly, 1 when it failed
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dirops.h"

static int bogus(char *dirname)
{
    char not_a_dir[64];
    RDIR *d;
    int bad = 0;

    memset(not_a_dir, 0x5a, sizeof not_a_dir);
    errno = 0;
    if (r_readdir((RDIR *)not_a_dir) != NULL || errno != EBADF)
        bad |= 1;
    errno = 0;
    if (r_closedir((RDIR *)not_a_dir) != -1 || errno != EBADF)
        bad |= 2;
    errno = 0;
    if (r_readdir(NULL) != NULL || errno != EBADF)
        bad |= 4;
    d = r_opendir(dirname);
    if (d == NULL || r_readdir(d) == NULL)
        bad |= 8;
    if (d != NULL && r_closedir(d) != 0)
        bad |= 16;
    /* The closed handle: refused, not read (no allocation in between). */
    errno = 0;
    if (r_readdir(d) != NULL || errno != EBADF)
        bad |= 32;
    errno = 0;
    if (r_closedir(d) != -1 || errno != EBADF)
        bad |= 64;
    printf(bad ? "bogus handles: FAILED (%d)\n" : "bogus handles: refused\n", bad);
    return bad ? 1 : 0;
}

static int pause_listing(char *dirname, long after)
{
    RDIR *d = r_opendir(dirname);
    char *e, line[16];
    long n = 0;

    if (d == NULL) {
        perror("r_opendir");
        return 1;
    }
    for (;;) {
        errno = 0;
        e = r_readdir(d);
        if (e == NULL)
            break;
        printf("%s\n", e);
        if (++n == after) {
            printf("paused\n");
            fflush(stdout);
            if (fgets(line, sizeof line, stdin) == NULL)
                return 1;
        }
    }
    if (errno != 0) {
        printf("listing failed after %ld entries: %s\n", n, strerror(errno));
        r_closedir(d);
        return 1;
    }
    printf("listed %ld entries\n", n);
    return r_closedir(d) == 0 ? 0 : 1;
}

int main(int argc, char *argv[])
{
    if (argc == 3 && strcmp(argv[1], "bogus") == 0)
        return bogus(argv[2]);
    if (argc == 4 && strcmp(argv[1], "pause") == 0)
        return pause_listing(argv[2], atol(argv[3]));
    fprintf(stderr, "usage: %s bogus DIR | pause DIR N\n", argv[0]);
    return 2;
}
