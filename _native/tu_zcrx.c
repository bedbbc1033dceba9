/* Zero-copy receive: interface-queue registration and the refill (RQ) ring protocol. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "tu.h"

int tu_zcrx_register(tu_ring *r, uint32_t if_idx, uint32_t if_rxq, uint32_t rq_entries,
                     uint32_t flags, char *area, uint64_t area_len, tu_zcrx **out,
                     struct tu_zcrx_info *info)
{
    struct tu_zcrx_area_reg area_reg;
    struct tu_region_desc rd;
    struct tu_zcrx_ifq_reg reg;
    struct tu_zcrx *z;
    uint32_t rounded = 1;
    int ret;

    *out = NULL;
    if (rq_entries == 0 || rq_entries > TU_MAX_RING_ENTRIES)
        return -EINVAL;
    while (rounded < rq_entries)
        rounded <<= 1;
    z = calloc(1, sizeof(*z));
    if (!z)
        return -ENOMEM;
    /* Header page plus the entries, as the kernel documentation sizes it. */
    z->rq_bytes = tu_page_round(tu_page_size() + (size_t)rounded * sizeof(struct tu_zcrx_rqe));
    z->rq = tu_map(z->rq_bytes);
    if (!z->rq) {
        free(z);
        return -ENOMEM;
    }
    memset(&area_reg, 0, sizeof(area_reg));
    area_reg.addr = (uint64_t)(uintptr_t)area;
    area_reg.len = area_len;
    memset(&rd, 0, sizeof(rd));
    rd.user_addr = (uint64_t)(uintptr_t)z->rq;
    rd.size = z->rq_bytes;
    rd.flags = TU_IORING_MEM_REGION_TYPE_USER;
    memset(&reg, 0, sizeof(reg));
    reg.if_idx = if_idx;
    reg.if_rxq = if_rxq;
    reg.rq_entries = rounded;
    reg.flags = flags;
    reg.area_ptr = (uint64_t)(uintptr_t)&area_reg;
    reg.region_ptr = (uint64_t)(uintptr_t)&rd;
    ret = io_uring_register(r->ring.ring_fd, TU_IORING_REGISTER_ZCRX_IFQ, &reg, 1);
    if (ret < 0) {
        munmap(z->rq, z->rq_bytes);
        free(z);
        return ret;
    }
    z->khead = (uint32_t *)(z->rq + reg.offsets.head);
    z->ktail = (uint32_t *)(z->rq + reg.offsets.tail);
    z->rqes = (struct tu_zcrx_rqe *)(z->rq + reg.offsets.rqes);
    z->rq_entries = reg.rq_entries;
    z->rq_mask = reg.rq_entries - 1;
    z->rq_tail = 0;
    z->zcrx_id = reg.zcrx_id;
    z->area_token = area_reg.rq_area_token;
    z->area_len = area_len;
    z->next = r->zcrxs;
    r->zcrxs = z;
    info->zcrx_id = z->zcrx_id;
    info->rq_entries = z->rq_entries;
    info->area_token = z->area_token;
    info->off_head = reg.offsets.head;
    info->off_tail = reg.offsets.tail;
    info->off_rqes = reg.offsets.rqes;
    *out = z;
    return 0;
}

int tu_zcrx_fill_rqes(struct tu_zcrx_rqe *rqes, uint32_t mask, uint32_t tail, uint64_t area_token,
                      uint64_t area_len, const uint64_t *offs, const uint32_t *lens, unsigned n)
{
    /* Validate everything first: the kernel silently skips bad entries, which would leak
     * the buffer, so a bad entry is refused here before any is written. */
    for (unsigned i = 0; i < n; i++) {
        uint64_t in_area = offs[i] & ~TU_IORING_ZCRX_AREA_MASK;
        if ((offs[i] & TU_IORING_ZCRX_AREA_MASK) != area_token || lens[i] == 0 ||
            in_area >= area_len || lens[i] > area_len - in_area)
            return -EINVAL;
    }
    for (unsigned i = 0; i < n; i++) {
        struct tu_zcrx_rqe *rqe = &rqes[(tail + i) & mask];
        rqe->off = (offs[i] & ~TU_IORING_ZCRX_AREA_MASK) | area_token;
        rqe->len = lens[i];
        rqe->__pad = 0;
    }
    return (int)n;
}

unsigned tu_zcrx_rq_space(tu_zcrx *z)
{
    /*
     * Acquire: the kernel advances the head once it has read the entries behind it, and
     * they may be rewritten only after that read.
     */
    uint32_t head = io_uring_smp_load_acquire(z->khead);
    return z->rq_entries - (z->rq_tail - head);
}

int tu_zcrx_refill(tu_zcrx *z, const uint64_t *offs, const uint32_t *lens, unsigned n)
{
    unsigned space = tu_zcrx_rq_space(z);
    unsigned k = n < space ? n : space;
    int ret = tu_zcrx_fill_rqes(z->rqes, z->rq_mask, z->rq_tail, z->area_token, z->area_len, offs, lens, k);

    if (ret < 0)
        return ret;
    if (k) {
        z->rq_tail += k;
        /* Ensure the kernel sees the refill entries before the tail update. */
        io_uring_smp_store_release(z->ktail, z->rq_tail);
    }
    return (int)k;
}

int tu_zcrx_flush_rq(tu_ring *r, tu_zcrx *z)
{
    struct tu_zcrx_ctrl ctrl;
    memset(&ctrl, 0, sizeof(ctrl));
    ctrl.zcrx_id = z->zcrx_id;
    ctrl.op = TU_ZCRX_CTRL_FLUSH_RQ;
    return io_uring_register(r->ring.ring_fd, TU_IORING_REGISTER_ZCRX_CTRL, &ctrl, 0);
}

int tu_abi_layout(uint32_t *out, unsigned n)
{
    const uint32_t v[] = {
        sizeof(struct tu_zcrx_ifq_reg), offsetof(struct tu_zcrx_ifq_reg, rq_entries),
        offsetof(struct tu_zcrx_ifq_reg, flags), offsetof(struct tu_zcrx_ifq_reg, area_ptr),
        offsetof(struct tu_zcrx_ifq_reg, region_ptr), offsetof(struct tu_zcrx_ifq_reg, offsets),
        offsetof(struct tu_zcrx_ifq_reg, zcrx_id), offsetof(struct tu_zcrx_ifq_reg, rx_buf_len),
        sizeof(struct tu_zcrx_area_reg), offsetof(struct tu_zcrx_area_reg, rq_area_token),
        offsetof(struct tu_zcrx_area_reg, flags), offsetof(struct tu_zcrx_area_reg, dmabuf_fd),
        sizeof(struct tu_region_desc), offsetof(struct tu_region_desc, flags),
        offsetof(struct tu_region_desc, mmap_offset), sizeof(struct tu_zcrx_rqe),
        offsetof(struct tu_zcrx_rqe, len), offsetof(struct tu_zcrx_rqe, __pad),
        sizeof(struct tu_zcrx_cqe), sizeof(struct tu_zcrx_offsets), sizeof(struct tu_zcrx_ctrl),
        sizeof(struct tu_buf_reg), offsetof(struct tu_buf_reg, flags),
        sizeof(struct io_uring_sqe), offsetof(struct io_uring_sqe, file_index),
        sizeof(struct io_uring_cqe),
    };
    unsigned k = sizeof(v) / sizeof(v[0]);
    for (unsigned i = 0; i < n && i < k; i++)
        out[i] = v[i];
    return (int)k;
}
