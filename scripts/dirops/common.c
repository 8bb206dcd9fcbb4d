/* common.c: the parts of libdirops every design shares; see common.h. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "common.h"

/* Largest frame accepted from the server (the toolkit's MAX_FRAME_LEN). */
#define MAX_FRAME (1u << 20)
/* Seconds a connect, a send or a receive may take. */
#define IO_SECS 30
#define DEFAULT_PORT 7654

unsigned dirops_batch(void)
{
    const char *s = getenv("RDIR_BATCH");
    char *end;
    unsigned long n;

    if (s == NULL || *s == '\0')
        return 128;
    n = strtoul(s, &end, 10);
    if (*end != '\0' || n < 1 || n > 1024) {
        dirops_warn("RDIR_BATCH=%s is not 1 to 1024; using 128", s);
        return 128;
    }
    return (unsigned)n;
}

const char *dirops_host(void)
{
    const char *h = getenv("SERVIDOR");
    return h != NULL && *h != '\0' ? h : "localhost";
}

int dirops_port(void)
{
    const char *s = getenv("PUERTO");
    char *end;
    unsigned long n;

    if (s == NULL || *s == '\0')
        return 0;
    n = strtoul(s, &end, 10);
    if (*end != '\0' || n < 1 || n > 65535) {
        dirops_warn("PUERTO=%s is not a port (1 to 65535)", s);
        return -1;
    }
    return (int)n;
}

const char *dirops_server(void)
{
    static char text[300];
    int port = dirops_port();
    snprintf(text, sizeof text, "%s:%d", dirops_host(), port > 0 ? port : DEFAULT_PORT);
    return text;
}

void dirops_warn(const char *fmt, ...)
{
    va_list ap;
    int saved = errno;

    fputs("dirops: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    errno = saved;
}

int dirops_errno_of(uint32_t status)
{
    if (status == 10003)
        return ESTALE;
    if (status == 0 || status > 4095)
        return EIO;
    return (int)status;
}

/* The live handles. Not thread-safe, like the rest of the course's API. */
static const void **live;
static size_t nlive, caplive;

int dirops_register(const void *dir)
{
    if (nlive == caplive) {
        size_t cap = caplive ? caplive * 2 : 16;
        const void **p = realloc(live, cap * sizeof *p);
        if (p == NULL)
            return -1;
        live = p;
        caplive = cap;
    }
    live[nlive++] = dir;
    return 0;
}

int dirops_known(const void *dir)
{
    size_t i;
    if (dir == NULL)
        return 0;
    for (i = 0; i < nlive; i++)
        if (live[i] == dir)
            return 1;
    return 0;
}

void dirops_forget(const void *dir)
{
    size_t i;
    for (i = 0; i < nlive; i++)
        if (live[i] == dir) {
            live[i] = live[--nlive];
            return;
        }
}

static void reserve(struct dirops_buf *b, size_t more)
{
    unsigned char *p;
    size_t cap;

    if (b->failed || b->len + more <= b->cap)
        return;
    cap = b->cap ? b->cap : 64;
    while (cap < b->len + more)
        cap *= 2;
    p = realloc(b->p, cap);
    if (p == NULL) {
        b->failed = 1;
        return;
    }
    b->p = p;
    b->cap = cap;
}

/* postcard's varint: 7 bits a byte, least significant first. */
void dirops_put_varint(struct dirops_buf *b, uint64_t v)
{
    reserve(b, 10);
    if (b->failed)
        return;
    do {
        unsigned char c = v & 0x7f;
        v >>= 7;
        b->p[b->len++] = c | (v ? 0x80 : 0);
    } while (v);
}

void dirops_put_bytes(struct dirops_buf *b, const void *p, size_t n)
{
    reserve(b, n);
    if (b->failed)
        return;
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

void dirops_buf_free(struct dirops_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

int dirops_get_varint(struct dirops_rd *r, uint64_t *v)
{
    uint64_t out = 0;
    int shift;

    for (shift = 0; shift < 70; shift += 7) {
        unsigned char c;
        if (r->p >= r->end)
            return -1;
        c = *r->p++;
        if (shift == 63 && c > 1)
            return -1;
        out |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = out;
            return 0;
        }
    }
    return -1;
}

int dirops_get_bytes(struct dirops_rd *r, const unsigned char **p, size_t *n)
{
    uint64_t len;
    if (dirops_get_varint(r, &len) != 0 || len > (uint64_t)(r->end - r->p))
        return -1;
    *p = r->p;
    *n = (size_t)len;
    r->p += len;
    return 0;
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            errno = ECONNRESET;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

int dirops_send(int fd, const struct dirops_buf *b)
{
    unsigned char prefix[4];
    if (b->failed) {
        errno = ENOMEM;
        return -1;
    }
    prefix[0] = (unsigned char)(b->len >> 24);
    prefix[1] = (unsigned char)(b->len >> 16);
    prefix[2] = (unsigned char)(b->len >> 8);
    prefix[3] = (unsigned char)b->len;
    if (write_all(fd, prefix, 4) != 0 || write_all(fd, b->p, b->len) != 0)
        return -1;
    return 0;
}

int dirops_recv(int fd, unsigned char **payload, size_t *len)
{
    unsigned char prefix[4];
    uint32_t n;
    unsigned char *p;

    if (read_all(fd, prefix, 4) != 0)
        return -1;
    n = (uint32_t)prefix[0] << 24 | (uint32_t)prefix[1] << 16 | (uint32_t)prefix[2] << 8 | prefix[3];
    if (n > MAX_FRAME) {
        errno = EMSGSIZE;
        return -1;
    }
    p = malloc(n ? n : 1);
    if (p == NULL)
        return -1;
    if (read_all(fd, p, n) != 0) {
        free(p);
        return -1;
    }
    *payload = p;
    *len = n;
    return 0;
}

static int connect_to_server(int quiet)
{
    struct addrinfo hints, *res, *ai;
    struct timeval tv = {IO_SECS, 0};
    char port[16];
    int p = dirops_port(), fd = -1, rc, err = 0;

    if (p < 0) {
        errno = EINVAL;
        return -1;
    }
    snprintf(port, sizeof port, "%d", p ? p : DEFAULT_PORT);
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(dirops_host(), port, &hints, &res);
    if (rc != 0) {
        if (!quiet)
            dirops_warn("%s: %s", dirops_server(), gai_strerror(rc));
        errno = EHOSTUNREACH;
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        /* Linux applies the send timeout to connect as well. */
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        err = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        errno = err ? err : ECONNREFUSED;
    return fd;
}

int dirops_open(const char *protocol, int quiet)
{
    struct dirops_buf b = {0};
    struct dirops_rd r;
    unsigned char *payload = NULL;
    size_t len;
    uint64_t variant = 99, version = 0;
    const unsigned char *reason;
    size_t nreason;
    int fd = connect_to_server(quiet);

    if (fd < 0) {
        if (!quiet && errno != EINVAL && errno != EHOSTUNREACH)
            dirops_warn("%s: %s", dirops_server(), strerror(errno));
        return -1;
    }
    /* Hello { magic: *b"PKIT", protocol, version: 1 } */
    dirops_put_bytes(&b, "PKIT", 4);
    dirops_put_varint(&b, strlen(protocol));
    dirops_put_bytes(&b, protocol, strlen(protocol));
    dirops_put_varint(&b, 1);
    if (dirops_send(fd, &b) != 0 || dirops_recv(fd, &payload, &len) != 0) {
        dirops_warn("%s: hello: %s", dirops_server(), strerror(errno));
        dirops_buf_free(&b);
        close(fd);
        return -1;
    }
    dirops_buf_free(&b);
    r.p = payload;
    r.end = payload + len;
    /* HelloReply: 0 Welcome { version }, 1 Refused { reason } */
    if (dirops_get_varint(&r, &variant) == 0 && variant == 0 &&
        dirops_get_varint(&r, &version) == 0 && version == 1 && r.p == r.end) {
        free(payload);
        return fd;
    }
    if (variant == 1 && dirops_get_bytes(&r, &reason, &nreason) == 0)
        dirops_warn("%s refused %s: %.*s", dirops_server(), protocol, (int)nreason,
                    (const char *)reason);
    else
        dirops_warn("%s does not speak %s version 1", dirops_server(), protocol);
    free(payload);
    close(fd);
    errno = EPROTO;
    return -1;
}

int dirops_names_take(struct dirops_names *n, unsigned char *payload, struct dirops_rd *r)
{
    uint64_t count, i;
    const unsigned char *p;
    size_t len;

    dirops_names_free(n);
    if (dirops_get_varint(r, &count) != 0)
        return -1;
    n->cur = *r;
    for (i = 0; i < count; i++)
        if (dirops_get_bytes(r, &p, &len) != 0)
            return -1;
    n->payload = payload;
    n->left = count;
    return 0;
}

char *dirops_names_next(struct dirops_names *n)
{
    const unsigned char *p;
    size_t len;

    if (n->left == 0 || dirops_get_bytes(&n->cur, &p, &len) != 0)
        return NULL;
    n->left--;
    if (len + 1 > n->namecap) {
        char *name = realloc(n->name, len + 1);
        if (name == NULL)
            return NULL;
        n->name = name;
        n->namecap = len + 1;
    }
    memcpy(n->name, p, len);
    n->name[len] = '\0';
    return n->name;
}

void dirops_names_free(struct dirops_names *n)
{
    free(n->payload);
    n->payload = NULL;
    n->left = 0;
}

struct dirops_dir *dirops_new(const char *dirname, size_t size)
{
    struct dirops_dir *dir;

    if (dirname == NULL) {
        errno = EINVAL;
        return NULL;
    }
    dir = calloc(1, size);
    if (dir == NULL)
        return NULL;
    dir->path = strdup(dirname);
    if (dir->path == NULL || dirops_register(dir) != 0) {
        free(dir->path);
        free(dir);
        errno = ENOMEM;
        return NULL;
    }
    return dir;
}

void dirops_free_socket(struct dirops_dir *dir, int fd, struct dirops_names *names)
{
    if (fd >= 0)
        close(fd);
    dirops_names_free(names);
    free(names->name);
    free(dir->path);
    free(dir);
}

RDIR *dirops_first(struct dirops_dir *dir, const struct dirops_design *design)
{
    if (design->fetch(dir) != 0)
        return dirops_abandon(dir, design);
    return (RDIR *)dir;
}

RDIR *dirops_abandon(struct dirops_dir *dir, const struct dirops_design *design)
{
    int e = errno;

    dirops_forget(dir);
    design->free(dir);
    errno = e;
    return NULL;
}

char *dirops_read(RDIR *d, const struct dirops_design *design)
{
    struct dirops_dir *dir;
    char *name;

    if (!dirops_known(d)) {
        dirops_warn("r_readdir: %p is not an open directory", (void *)d);
        errno = EBADF;
        return NULL;
    }
    dir = (struct dirops_dir *)d;
    for (;;) {
        if (dir->failed) {
            errno = dir->failed;
            return NULL;
        }
        name = design->next(dir);
        if (name != NULL)
            return name;
        if (dir->eof)
            return NULL;
        if (design->fetch(dir) != 0)
            return NULL;
    }
}

int dirops_close(RDIR *d, const struct dirops_design *design)
{
    struct dirops_dir *dir;
    int rc;

    if (!dirops_known(d)) {
        dirops_warn("r_closedir: %p is not an open directory", (void *)d);
        errno = EBADF;
        return -1;
    }
    dirops_forget(d);
    dir = (struct dirops_dir *)d;
    rc = design->close != NULL ? design->close(dir) : 0;
    design->free(dir);
    if (rc != 0)
        errno = EIO;
    return rc;
}
