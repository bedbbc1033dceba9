/* Internal header of trio_uring's native layer. */
#ifndef TU_H
#define TU_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <liburing.h>

#include "tu_uapi.h"
#include "tu_api.h"

_Static_assert(sizeof(struct tu_zcrx_rqe) == 16, "io_uring_zcrx_rqe");

struct tu_bufring {
    struct tu_bufring *next;       /* ring's list of registered buffer rings */
    struct io_uring_buf_ring *br;  /* kernel-shared ring memory, owned here */
    size_t br_bytes;
    char *slab;                    /* caller owned */
    unsigned buf_size;
    unsigned entries;
    unsigned mask;
    uint16_t bgid;
    uint16_t tail;                 /* private copy of the tail we published */
};

struct tu_zcrx {
    struct tu_zcrx *next;
    char *rq;                      /* refill ring region, owned here */
    size_t rq_bytes;
    uint32_t *khead;
    uint32_t *ktail;
    struct tu_zcrx_rqe *rqes;
    uint32_t rq_mask;
    uint32_t rq_entries;
    uint32_t rq_tail;
    uint32_t zcrx_id;
    uint64_t area_token;
    uint64_t area_len;
};

struct tu_ring {
    struct io_uring ring;
    struct tu_bufring *bufrings;
    struct tu_zcrx *zcrxs;
    unsigned long long enter_calls;
    unsigned coalesce_usec;        /* see tu_ring_set_coalesce */
    unsigned coalesce_nr;
};

/* ---- helpers shared by the .c files ------------------------------------------------------
 * Memory shared with the kernel is only touched through liburing's barrier.h family:
 * IO_URING_READ_ONCE for a value the kernel writes concurrently, io_uring_smp_load_acquire
 * before reading what the kernel published up to an index, io_uring_smp_store_release
 * after writing what an index publishes to the kernel. */

/* SQ slots given to the caller are absolute SQ indexes folded to 31 bits: never negative. */
#define TU_SLOT_MASK 0x7fffffffu

/* The most entries a buffer ring or a zcrx refill ring is given: the kernel's zcrx limit
 * (IO_RQ_MAX_ENTRIES) and the largest power of two under its buffer-ring limit (65536). */
#define TU_MAX_RING_ENTRIES 32768u

/* Completions wait outside the CQ ring, on the kernel's overflow list or as deferred task
 * work (COOP_TASKRUN / DEFER_TASKRUN): only an io_uring_enter brings them in. */
static inline int cq_ring_needs_flush(const struct io_uring *ring)
{
    return (IO_URING_READ_ONCE(*ring->sq.kflags) & (IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN)) != 0;
}

/* io_uring_enter took less than asked, for now (-EBUSY: the CQ overflow backlog is full;
 * -EAGAIN: no memory for a request). Not an error: reaping makes room, the next enter
 * submits the rest. */
static inline int enter_busy(int ret)
{
    return ret == -EBUSY || ret == -EAGAIN;
}

static inline size_t tu_page_size(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

/* `len` rounded up to whole pages (no overflow check: callers bound `len`). */
static inline size_t tu_page_round(size_t len)
{
    size_t page = tu_page_size();
    return (len + page - 1) / page * page;
}

/* Zeroed, page-aligned anonymous memory of `bytes` (a page multiple); NULL on failure. */
static inline void *tu_map(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

#endif
