/* The native ceiling: an echo / sink server in C on liburing.
 *
 *   uring_server echo|sink      listens on 127.0.0.1 (port printed on stdout), serves forever
 *
 * Multishot accept, multishot recv into one provided buffer ring, sends of the received
 * buffer (the buffer is recycled when its send completes), one io_uring_enter per batch:
 * what an application written directly against io_uring does.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define NBUFS 4096
#define BUFSZ 16384
#define BGID 7

enum { OP_ACCEPT = 1, OP_RECV = 2, OP_SEND = 3 };
#define UD(op, fd, bid) (((uint64_t)(op) << 56) | ((uint64_t)(uint32_t)(fd) << 16) | (uint64_t)(bid))

static struct io_uring ring;
static struct io_uring_buf_ring *br;
static char *slab;
static int sink;

static struct io_uring_sqe *sqe_get(void)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    if (!sqe) {
        io_uring_submit(&ring);
        sqe = io_uring_get_sqe(&ring);
    }
    return sqe;
}

static void arm_recv(int fd)
{
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    sqe->user_data = UD(OP_RECV, fd, 0);
}

static void recycle(int bid)
{
    io_uring_buf_ring_add(br, slab + (size_t)bid * BUFSZ, BUFSZ, (unsigned short)bid,
                          io_uring_buf_ring_mask(NBUFS), 0);
    io_uring_buf_ring_advance(br, 1);
}

int main(int argc, char **argv)
{
    struct io_uring_params p = {0};
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t salen = sizeof(sa);
    int one = 1, lfd, ret;

    sink = argc > 1 && !strcmp(argv[1], "sink");
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL |
              IORING_SETUP_CQSIZE;
    p.cq_entries = 16384;
    if ((ret = io_uring_queue_init_params(1024, &ring, &p)) < 0) {
        fprintf(stderr, "io_uring_queue_init: %s\n", strerror(-ret));
        return 1;
    }
    br = mmap(NULL, NBUFS * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE,
              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    slab = mmap(NULL, (size_t)NBUFS * BUFSZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct io_uring_buf_reg reg = {.ring_addr = (uint64_t)(uintptr_t)br, .ring_entries = NBUFS, .bgid = BGID};
    if ((ret = io_uring_register_buf_ring(&ring, &reg, 0)) < 0) {
        fprintf(stderr, "register_buf_ring: %s\n", strerror(-ret));
        return 1;
    }
    io_uring_buf_ring_init(br);
    for (int i = 0; i < NBUFS; i++)
        io_uring_buf_ring_add(br, slab + (size_t)i * BUFSZ, BUFSZ, (unsigned short)i, io_uring_buf_ring_mask(NBUFS), i);
    io_uring_buf_ring_advance(br, NBUFS);

    lfd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 4096)) {
        perror("bind/listen");
        return 1;
    }
    getsockname(lfd, (struct sockaddr *)&sa, &salen);
    printf("%d\n", ntohs(sa.sin_port));
    fflush(stdout);

    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, 0);
    sqe->user_data = UD(OP_ACCEPT, lfd, 0);

    for (;;) {
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        io_uring_submit_and_wait(&ring, 1);
        io_uring_for_each_cqe(&ring, head, cqe) {
            int op = (int)(cqe->user_data >> 56);
            int fd = (int)((cqe->user_data >> 16) & 0xffffffffu);
            n++;
            if (op == OP_ACCEPT) {
                if (cqe->res >= 0) {
                    setsockopt(cqe->res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    arm_recv(cqe->res);
                }
                if (!(cqe->flags & IORING_CQE_F_MORE)) {
                    sqe = sqe_get();
                    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, 0);
                    sqe->user_data = UD(OP_ACCEPT, lfd, 0);
                }
            } else if (op == OP_RECV) {
                if (cqe->res > 0) {
                    int bid = (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
                    if (sink) {
                        recycle(bid);
                    } else {
                        sqe = sqe_get();
                        io_uring_prep_send(sqe, fd, slab + (size_t)bid * BUFSZ, (size_t)cqe->res, MSG_NOSIGNAL);
                        sqe->user_data = UD(OP_SEND, fd, bid);
                    }
                    if (!(cqe->flags & IORING_CQE_F_MORE))
                        arm_recv(fd);
                } else if (cqe->res == -ENOBUFS) {
                    arm_recv(fd);
                } else {
                    close(fd);
                }
            } else if (op == OP_SEND) {
                recycle((int)(cqe->user_data & 0xffff));
            }
        }
        io_uring_cq_advance(&ring, n);
    }
}
