/* Ring ownership, submission and batched completion reaping. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "tu.h"

int tu_ring_new(unsigned entries, unsigned cq_entries, unsigned flags, tu_ring **out)
{
    struct io_uring_params p;
    tu_ring *r;
    int ret;

    *out = NULL;
    r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    memset(&p, 0, sizeof(p));
    p.flags = flags;
    if (flags & IORING_SETUP_CQSIZE)
        p.cq_entries = cq_entries;
    ret = io_uring_queue_init_params(entries, &r->ring, &p);
    if (ret < 0) {
        free(r);
        return ret;
    }
    /* liburing 2.3 fills the SQ index array lazily in some paths; we publish SQEs
     * ourselves, so make it the identity mapping once. */
    for (unsigned i = 0; i < r->ring.sq.ring_entries; i++)
        r->ring.sq.array[i] = i;
    /* A forked child must never share the parent's ring memory. */
    io_uring_ring_dontfork(&r->ring);
    *out = r;
    return 0;
}

void tu_ring_free(tu_ring *r)
{
    if (!r)
        return;
    io_uring_queue_exit(&r->ring);
    /* The kernel has dropped its references with the ring; now the shared memory. */
    while (r->bufrings) {
        struct tu_bufring *b = r->bufrings;
        r->bufrings = b->next;
        munmap(b->br, b->br_bytes);
        free(b);
    }
    while (r->zcrxs) {
        struct tu_zcrx *z = r->zcrxs;
        r->zcrxs = z->next;
        munmap(z->rq, z->rq_bytes);
        free(z);
    }
    free(r);
}

int tu_ring_fd(tu_ring *r) { return r->ring.ring_fd; }
unsigned tu_ring_flags(tu_ring *r) { return r->ring.flags; }
unsigned tu_ring_features(tu_ring *r) { return r->ring.features; }
unsigned tu_ring_sq_entries(tu_ring *r) { return r->ring.sq.ring_entries; }
unsigned tu_ring_cq_entries(tu_ring *r) { return r->ring.cq.ring_entries; }
unsigned tu_ring_sq_pending(tu_ring *r) { return r->ring.sq.sqe_tail - r->ring.sq.sqe_head; }
unsigned tu_ring_sq_flags(tu_ring *r) { return IO_URING_READ_ONCE(*r->ring.sq.kflags); }
unsigned long long tu_ring_enter_calls(tu_ring *r) { return r->enter_calls; }

/* Waits for completions ask for `nr` of them, but give up waiting for more than one
 * after `usec` (IORING_FEAT_MIN_TIMEOUT, Linux 6.12): fewer wake-ups while completions
 * stream in, at most `usec` of added latency. 0 turns it off. */
void tu_ring_set_coalesce(tu_ring *r, unsigned usec, unsigned nr)
{
    r->coalesce_usec = nr > 1 ? usec : 0;
    r->coalesce_nr = nr;
}

/* Publish locally prepared SQEs (liburing's __io_uring_flush_sq); returns how many the
 * kernel has not consumed yet. */
static unsigned flush_sq(struct io_uring *ring)
{
    struct io_uring_sq *sq = &ring->sq;
    unsigned tail = sq->sqe_tail;

    if (sq->sqe_head != tail) {
        sq->sqe_head = tail;
        /*
         * Ensure the kernel sees the SQE updates before the tail update. (Without
         * SQPOLL liburing makes a plain store, the io_uring_enter that follows being
         * the barrier; the release store costs nothing on x86 and is right either way.)
         */
        io_uring_smp_store_release(sq->ktail, tail);
    }
    /*
     * This load needs to be atomic, since sq->khead is written concurrently by the
     * kernel, but it doesn't need to be load_acquire, since the kernel doesn't store to
     * the submission queue; it advances khead just to indicate that it's finished reading
     * the submission queue entries so they're available for us to write to.
     */
    return tail - IO_URING_READ_ONCE(*sq->khead);
}

static int sys_enter(tu_ring *r, unsigned to_submit, unsigned min, long long timeout_ns)
{
    unsigned flags = IORING_ENTER_GETEVENTS;
    struct tu_getevents_arg arg;
    struct __kernel_timespec ts;
    void *argp = NULL;
    size_t argsz = 0;

    if (min && timeout_ns > 0) {
        memset(&arg, 0, sizeof(arg));
        ts.tv_sec = timeout_ns / 1000000000LL;
        ts.tv_nsec = timeout_ns % 1000000000LL;
        arg.ts = (uint64_t)(uintptr_t)&ts;
        /* Only under a finite timeout: with none, the kernel ends the wait when the
         * minimum wait expires, even with nothing to show for it (measured on 6.18). */
        if (r->coalesce_usec && timeout_ns > r->coalesce_usec * 1000LL) {
            arg.min_wait_usec = r->coalesce_usec;
            min = r->coalesce_nr;
        }
        flags |= IORING_ENTER_EXT_ARG;
        argp = &arg;
        argsz = sizeof(arg);
    }
    r->enter_calls++;
    return io_uring_enter2(r->ring.ring_fd, to_submit, min, flags, argp, argsz);
}

static unsigned reap(struct io_uring *ring, unsigned n, unsigned max, uint64_t *ud,
                     int32_t *res, uint32_t *fl, uint64_t *big_cqe)
{
    struct io_uring_cq *cq = &ring->cq;
    unsigned shift = (ring->flags & IORING_SETUP_CQE32) ? 1 : 0;
    /* Only we write the head: a plain load. */
    unsigned head = *cq->khead;
    /* Ensure the CQEs are read only after the tail that publishes them. */
    unsigned tail = io_uring_smp_load_acquire(cq->ktail);

    while (head != tail && n < max) {
        struct io_uring_cqe *cqe = &cq->cqes[(head & cq->ring_mask) << shift];
        ud[n] = cqe->user_data;
        res[n] = cqe->res;
        fl[n] = cqe->flags;
        if (big_cqe) {
            if (shift) {
                memcpy(&big_cqe[2 * n], cqe->big_cqe, 16);
            } else {
                big_cqe[2 * n] = 0;
                big_cqe[2 * n + 1] = 0;
            }
        }
        head++;
        n++;
    }
    /*
     * Ensure that the kernel only sees the new value of the head index after the CQEs
     * have been read.
     */
    io_uring_smp_store_release(cq->khead, head);
    return n;
}

int tu_enter(tu_ring *r, unsigned wait_nr, long long timeout_ns, unsigned max,
             uint64_t *ud, int32_t *res, uint32_t *fl, uint64_t *big_cqe)
{
    struct io_uring *ring = &r->ring;
    unsigned to_submit = flush_sq(ring);
    int wait = wait_nr > 0 && io_uring_cq_ready(ring) < wait_nr && timeout_ns != 0;
    int interrupted = 0;
    unsigned n;

    if (to_submit || wait || cq_ring_needs_flush(ring)) {
        int ret = sys_enter(r, to_submit, wait ? wait_nr : 0, timeout_ns);
        if (ret == -EINTR)
            interrupted = 1;
        else if (ret < 0 && ret != -ETIME && !enter_busy(ret))
            return ret;
    }
    n = reap(ring, 0, max, ud, res, fl, big_cqe);
    /* Completions the kernel parked on its overflow list (or deferred task work that
     * became due while we copied) only reach the CQ through another enter. */
    for (int rounds = 0; n < max && rounds < 4 && cq_ring_needs_flush(ring); rounds++) {
        int ret = sys_enter(r, 0, 0, 0);
        if (ret < 0 && ret != -EINTR && !enter_busy(ret))
            break;
        n = reap(ring, n, max, ud, res, fl, big_cqe);
    }
    if (n == 0 && interrupted)
        return -EINTR;
    return (int)n;
}

int tu_submit(tu_ring *r)
{
    unsigned to_submit = flush_sq(&r->ring);
    if (!to_submit)
        return 0;
    int ret = sys_enter(r, to_submit, 0, 0);
    return enter_busy(ret) ? 0 : ret;
}

int tu_sqe_to_nop(tu_ring *r, int slot, uint64_t ud)
{
    struct io_uring_sq *sq = &r->ring.sq;
    unsigned pending = sq->sqe_tail - sq->sqe_head;
    unsigned off = ((unsigned)slot - (sq->sqe_head & TU_SLOT_MASK)) & TU_SLOT_MASK;

    if (slot < 0 || off >= pending)
        return -ENOENT;
    struct io_uring_sqe *sqe = &sq->sqes[(unsigned)slot & sq->ring_mask];
    io_uring_prep_nop(sqe);
    sqe->flags = 0;
    sqe->user_data = ud;
    return 0;
}

char *tu_slab_alloc(size_t len)
{
    size_t page = tu_page_size();
    size_t total;
    char *base;

    /* A length no mapping could hold fails as mmap would, instead of wrapping round. */
    if (len == 0 || len > SIZE_MAX - 2 * page)
        return NULL;
    total = page + tu_page_round(len);
    base = tu_map(total);
    if (!base)
        return NULL;
    *(size_t *)base = total;
    return base + page;
}

void tu_slab_free(char *p)
{
    if (!p)
        return;
    char *base = p - tu_page_size();
    munmap(base, *(size_t *)base);
}

int tu_try_setup(unsigned flags)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = flags;
    if (flags & IORING_SETUP_CQSIZE)
        p.cq_entries = 8;
    int fd = io_uring_setup(4, &p);
    if (fd < 0)
        return fd;
    close(fd);
    return 0;
}

int tu_probe_opcodes(tu_ring *r, uint8_t *out, unsigned n)
{
    struct io_uring_probe *p = io_uring_get_probe_ring(&r->ring);
    if (!p)
        return -EINVAL;
    memset(out, 0, n);
    for (unsigned i = 0; i < p->ops_len && i < n; i++)
        out[i] = (p->ops[i].flags & IO_URING_OP_SUPPORTED) ? 1 : 0;
    int last = p->last_op + 1;
    io_uring_free_probe(p);
    return last;
}

int tu_register_eventfd(tu_ring *r, int fd)
{
    return io_uring_register_eventfd(&r->ring, fd);
}

int tu_ring_has_work(tu_ring *r)
{
    return io_uring_cq_ready(&r->ring) > 0 || cq_ring_needs_flush(&r->ring);
}

int tu_ring_cq_undelivered(tu_ring *r)
{
    return io_uring_cq_ready(&r->ring) > 0 ||
           (IO_URING_READ_ONCE(*r->ring.sq.kflags) & IORING_SQ_CQ_OVERFLOW) != 0;
}
