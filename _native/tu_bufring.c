/* Provided buffer rings: the kernel picks a buffer per receive, we give it back in batches. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "tu.h"

int tu_bufring_new(tu_ring *r, uint16_t bgid, unsigned entries, unsigned buf_size,
                   char *slab, unsigned flags, tu_bufring **out)
{
    struct tu_buf_reg reg;
    struct tu_bufring *b;
    int ret;

    *out = NULL;
    if (entries == 0 || entries > TU_MAX_RING_ENTRIES || (entries & (entries - 1)) || buf_size == 0 || !slab)
        return -EINVAL;
    b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    b->br_bytes = tu_page_round(entries * sizeof(struct io_uring_buf));
    b->br = tu_map(b->br_bytes);
    if (!b->br) {
        free(b);
        return -ENOMEM;
    }
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)b->br;
    reg.ring_entries = entries;
    reg.bgid = bgid;
    reg.flags = (flags & 1) ? TU_IOU_PBUF_RING_INC : 0;
    ret = io_uring_register(r->ring.ring_fd, IORING_REGISTER_PBUF_RING, &reg, 1);
    if (ret < 0) {
        munmap(b->br, b->br_bytes);
        free(b);
        return ret;
    }
    b->slab = slab;
    b->buf_size = buf_size;
    b->entries = entries;
    b->mask = entries - 1;
    b->bgid = bgid;
    io_uring_buf_ring_init(b->br);
    for (unsigned i = 0; i < entries; i++)
        io_uring_buf_ring_add(b->br, slab + (size_t)i * buf_size, buf_size, (unsigned short)i, (int)b->mask, (int)i);
    b->tail = (uint16_t)entries;
    /* Ensure the kernel sees the buffer entries before the tail that publishes them. */
    io_uring_smp_store_release(&b->br->tail, b->tail);
    b->next = r->bufrings;
    r->bufrings = b;
    *out = b;
    return 0;
}

void tu_bufring_recycle(tu_bufring *b, const uint16_t *bids, unsigned n)
{
    unsigned k = 0;
    for (unsigned i = 0; i < n; i++) {
        uint16_t bid = bids[i];
        if (bid >= b->entries)
            continue;           /* the Python layer validates; never hand the kernel junk */
        struct io_uring_buf *buf = &b->br->bufs[(uint16_t)(b->tail + k) & b->mask];
        buf->addr = (uint64_t)(uintptr_t)(b->slab + (size_t)bid * b->buf_size);
        buf->len = b->buf_size;
        buf->bid = bid;
        k++;
    }
    b->tail = (uint16_t)(b->tail + k);
    /* As io_uring_buf_ring_advance: the entries above before the new tail. */
    io_uring_smp_store_release(&b->br->tail, b->tail);
}

int tu_bufring_free(tu_ring *r, tu_bufring *b)
{
    struct tu_buf_reg reg;
    struct tu_bufring **pp;
    int ret;

    memset(&reg, 0, sizeof(reg));
    reg.bgid = b->bgid;
    ret = io_uring_register(r->ring.ring_fd, IORING_UNREGISTER_PBUF_RING, &reg, 1);
    for (pp = &r->bufrings; *pp; pp = &(*pp)->next) {
        if (*pp == b) {
            *pp = b->next;
            break;
        }
    }
    munmap(b->br, b->br_bytes);
    free(b);
    return ret;
}
