/* Internal header of trio_uring's native layer. */
#ifndef TU_H
#define TU_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
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

#endif
