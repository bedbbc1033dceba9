/* Load generator for the benchmark suite: C and epoll, so the client is never the bottleneck.
 *
 *   loadgen echo  PORT CONNS MSGSIZE SECONDS   ping-pong: each connection sends MSGSIZE bytes,
 *                                              waits for all of them back, repeats
 *   loadgen sink  PORT CONNS CHUNK SECONDS     bulk: each connection writes CHUNK-byte writes
 *   loadgen churn PORT CONNS MSGSIZE SECONDS   connect, one round trip, close, repeat
 *   loadgen idle  PORT CONNS 0 SECONDS         open CONNS connections, hold them, close
 *
 * Always connects to 127.0.0.1. Prints one JSON object: counts, seconds, latency percentiles.
 * Runs are bounded by SECONDS; every loop also stops at a hard cap of samples.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SAMPLES (8u << 20)

struct conn {
    int fd;
    size_t done;        /* bytes of the current message sent (phase 0) or received (phase 1) */
    int phase;
    uint64_t t0;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int dial(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        perror("connect");
        exit(2);
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(uint32_t *s, size_t n, double p)
{
    if (!n)
        return 0;
    size_t i = (size_t)(p * (double)(n - 1));
    return s[i] / 1000.0;
}

/* One round trip on a blocking socket (churn mode). */
static void roundtrip(int fd, char *buf, size_t size)
{
    size_t off = 0;
    while (off < size) {
        ssize_t k = send(fd, buf + off, size - off, MSG_NOSIGNAL);
        if (k <= 0) { perror("send"); exit(3); }
        off += (size_t)k;
    }
    off = 0;
    while (off < size) {
        ssize_t k = recv(fd, buf + off, size - off, 0);
        if (k <= 0) { perror("recv"); exit(3); }
        off += (size_t)k;
    }
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s echo|sink|churn|idle PORT CONNS SIZE SECONDS\n", argv[0]);
        return 1;
    }
    const char *mode = argv[1];
    int port = atoi(argv[2]), nconn = atoi(argv[3]);
    size_t size = (size_t)atol(argv[4]);
    double seconds = atof(argv[5]);
    uint64_t deadline;
    char *buf = calloc(1, size > 65536 ? size : 65536);
    uint32_t *samples = malloc(MAX_SAMPLES * sizeof(uint32_t));
    size_t nsamples = 0;
    unsigned long long count = 0, bytes = 0;

    if (!strcmp(mode, "churn")) {
        deadline = now_ns() + (uint64_t)(seconds * 1e9);
        while (now_ns() < deadline && nsamples < MAX_SAMPLES) {
            uint64_t t0 = now_ns();
            int fd = dial(port);
            roundtrip(fd, buf, size ? size : 1);
            close(fd);
            samples[nsamples++] = (uint32_t)((now_ns() - t0));
            count++;
        }
    } else if (!strcmp(mode, "idle")) {
        int *fds = calloc((size_t)(nconn > 0 ? nconn : 1), sizeof(int));
        for (int i = 0; i < nconn; i++)
            fds[i] = dial(port);
        roundtrip(fds[0], buf, 1);  /* the server is alive and has accepted */
        usleep((useconds_t)(seconds * 1e6));
        for (int i = 0; i < nconn; i++)
            close(fds[i]);
        count = (unsigned long long)nconn;
    } else {
        int sink = !strcmp(mode, "sink");
        int ep = epoll_create1(0);
        struct conn *cs = calloc((size_t)nconn, sizeof(*cs));
        for (int i = 0; i < nconn; i++) {
            struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)i};
            cs[i].fd = dial(port);
            cs[i].t0 = now_ns();
            epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
        }
        struct epoll_event evs[1024];
        deadline = now_ns() + (uint64_t)(seconds * 1e9);
        while (now_ns() < deadline && nsamples < MAX_SAMPLES) {
            int n = epoll_wait(ep, evs, 1024, 100);
            for (int e = 0; e < n; e++) {
                struct conn *c = &cs[evs[e].data.u32];
                if (sink) {
                    ssize_t k = send(c->fd, buf, size, MSG_NOSIGNAL | MSG_DONTWAIT);
                    if (k > 0)
                        bytes += (unsigned long long)k;
                    continue;
                }
                if (c->phase == 0) {
                    ssize_t k = send(c->fd, buf + c->done, size - c->done, MSG_NOSIGNAL | MSG_DONTWAIT);
                    if (k > 0)
                        c->done += (size_t)k;
                    if (c->done == size) {
                        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = evs[e].data.u32};
                        c->phase = 1;
                        c->done = 0;
                        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                    }
                } else {
                    ssize_t k = recv(c->fd, buf, size - c->done, MSG_DONTWAIT);
                    if (k == 0) { fprintf(stderr, "server closed\n"); exit(3); }
                    if (k > 0)
                        c->done += (size_t)k;
                    if (c->done == size) {
                        uint64_t t = now_ns();
                        struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = evs[e].data.u32};
                        samples[nsamples++] = (uint32_t)(t - c->t0 > 0xffffffffu ? 0xffffffffu : t - c->t0);
                        count++;
                        c->t0 = t;
                        c->phase = 0;
                        c->done = 0;
                        /* try the next send right away; epoll only if the socket is full */
                        ssize_t k2 = send(c->fd, buf, size, MSG_NOSIGNAL | MSG_DONTWAIT);
                        if (k2 > 0)
                            c->done = (size_t)k2;
                        if (c->done == size) {
                            c->phase = 1;
                            c->done = 0;
                        } else {
                            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                        }
                    }
                }
            }
        }
        for (int i = 0; i < nconn; i++)
            close(cs[i].fd);
    }
    double elapsed = seconds;
    qsort(samples, nsamples, sizeof(uint32_t), cmp_u32);
    printf("{\"mode\": \"%s\", \"count\": %llu, \"bytes\": %llu, \"seconds\": %.3f, "
           "\"p50_us\": %.1f, \"p99_us\": %.1f}\n",
           mode, count, bytes, elapsed, pct(samples, nsamples, 0.5), pct(samples, nsamples, 0.99));
    return 0;
}
