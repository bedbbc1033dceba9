/* SQE preparation: one small function per operation the Python layer issues. */
#include <string.h>
#include "tu.h"

/* Take an SQE; the slot returned is its absolute SQ index (31 bits), usable with
 * tu_sqe_to_nop while the SQE has not been submitted. */
#define GET_SQE(r, sqe, slot)                                       \
    struct io_uring_sqe *sqe;                                       \
    int slot = (int)((r)->ring.sq.sqe_tail & TU_SLOT_MASK);         \
    sqe = io_uring_get_sqe(&(r)->ring);                             \
    if (!sqe)                                                       \
        return -EBUSY;

static inline int finish(struct io_uring_sqe *sqe, uint64_t ud, int slot)
{
    sqe->user_data = ud;
    return slot;
}

int tu_prep_nop(tu_ring *r, uint64_t ud)
{
    GET_SQE(r, sqe, slot);
    io_uring_prep_nop(sqe);
    return finish(sqe, ud, slot);
}

int tu_prep_accept(tu_ring *r, int fd, void *addr, uint32_t *addrlen, int flags, int multishot, uint64_t ud)
{
    GET_SQE(r, sqe, slot);
    if (multishot)
        io_uring_prep_multishot_accept(sqe, fd, addr, (socklen_t *)addrlen, flags);
    else
        io_uring_prep_accept(sqe, fd, addr, (socklen_t *)addrlen, flags);
    return finish(sqe, ud, slot);
}

int tu_prep_connect(tu_ring *r, int fd, const void *addr, uint32_t addrlen, uint64_t ud)
{
    GET_SQE(r, sqe, slot);
    io_uring_prep_connect(sqe, fd, addr, addrlen);
    return finish(sqe, ud, slot);
}

int tu_prep_recv(tu_ring *r, int fd, void *buf, uint32_t len, int msg_flags, uint64_t ud)
{
    GET_SQE(r, sqe, slot);
    io_uring_prep_recv(sqe, fd, buf, len, msg_flags);
    return finish(sqe, ud, slot);
}

int tu_prep_recv_select(tu_ring *r, int fd, uint16_t bgid, uint32_t len, int msg_flags,
                        int multishot, int bundle, uint64_t ud)
{
    GET_SQE(r, sqe, slot);
    io_uring_prep_recv(sqe, fd, NULL, len, msg_flags);
    if (multishot)
        sqe->ioprio |= IORING_RECV_MULTISHOT;
    if (bundle)
        sqe->ioprio |= TU_IORING_RECVSEND_BUNDLE;
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = bgid;
    return finish(sqe, ud, slot);
}

int tu_prep_recv_zc(tu_ring *r, int fd, uint32_t zcrx_id, uint32_t len, uint64_t ud)
{
    GET_SQE(r, sqe, slot);
    memset(sqe, 0, sizeof(*sqe));
    sqe->opcode = TU_IORING_OP_RECV_ZC;
    sqe->fd = fd;
    sqe->len = len;
    sqe->ioprio = IORING_RECV_MULTISHOT;
    /* zcrx_ifq_idx shares bytes 44..47 with file_index / splice_fd_in. */
    sqe->file_index = zcrx_id;
    return finish(sqe, ud, slot);
}

int tu_prep_send(tu_ring *r, int fd, const void *buf, uint32_t len, int msg_flags, uint64_t ud)
{
    GET_SQE(r, sqe, slot);
    io_uring_prep_send(sqe, fd, buf, len, msg_flags);
    return finish(sqe, ud, slot);
}

int tu_prep_send_zc(tu_ring *r, int fd, const void *buf, uint32_t len, int msg_flags, uint64_t ud)
{
    GET_SQE(r, sqe, slot);
    io_uring_prep_send_zc(sqe, fd, buf, len, msg_flags, 0);
    return finish(sqe, ud, slot);
}

int tu_prep_sendmsg(tu_ring *r, int fd, const void *msghdr, int msg_flags, uint64_t ud)
{
    GET_SQE(r, sqe, slot);
    io_uring_prep_sendmsg(sqe, fd, (const struct msghdr *)msghdr, msg_flags);
    return finish(sqe, ud, slot);
}

int tu_prep_shutdown(tu_ring *r, int fd, int how, uint64_t ud)
{
    GET_SQE(r, sqe, slot);
    io_uring_prep_shutdown(sqe, fd, how);
    return finish(sqe, ud, slot);
}

int tu_prep_close(tu_ring *r, int fd, uint64_t ud)
{
    GET_SQE(r, sqe, slot);
    io_uring_prep_close(sqe, fd);
    return finish(sqe, ud, slot);
}

int tu_prep_poll(tu_ring *r, int fd, uint32_t events, int multishot, uint64_t ud)
{
    GET_SQE(r, sqe, slot);
    if (multishot)
        io_uring_prep_poll_multishot(sqe, fd, events);
    else
        io_uring_prep_poll_add(sqe, fd, events);
    return finish(sqe, ud, slot);
}

int tu_prep_timeout(tu_ring *r, const void *kernel_timespec, unsigned count, unsigned flags, uint64_t ud)
{
    GET_SQE(r, sqe, slot);
    io_uring_prep_timeout(sqe, (struct __kernel_timespec *)kernel_timespec, count, flags);
    return finish(sqe, ud, slot);
}

int tu_prep_cancel(tu_ring *r, uint64_t target, uint64_t ud)
{
    GET_SQE(r, sqe, slot);
    io_uring_prep_cancel64(sqe, target, 0);
    return finish(sqe, ud, slot);
}

int tu_prep_cancel_fd(tu_ring *r, int fd, uint64_t ud)
{
    GET_SQE(r, sqe, slot);
    io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
    return finish(sqe, ud, slot);
}
