/* Kernel io_uring UAPI newer than the system liburing (Debian bookworm ships 2.3).
 *
 * Values and layouts are the kernel's (include/uapi/linux/io_uring.h and, from 7.1,
 * include/uapi/linux/io_uring/zcrx.h), each written once, and only what the native layer
 * or the Python layer uses. Where liburing 2.3 has a constant, its definition is used
 * (the IORING_SETUP_* guards below serve older liburings only). What it lacks carries a
 * TU_ prefix: the UAPI declares opcodes and register codes as enum members, which #ifndef
 * cannot see, and a newer liburing must not clash. The TU_ names of three CQE flags the
 * Python layer reads alias liburing's. The structs carry a tu_ prefix for the same reason
 * and their sizes are checked at compile time.
 */
#ifndef TU_UAPI_H
#define TU_UAPI_H

#include <stdint.h>
#include <linux/types.h>

#define TU_IORING_OP_RECV_ZC 58

#ifndef IORING_SETUP_TASKRUN_FLAG
#define IORING_SETUP_TASKRUN_FLAG (1U << 9)
#endif
#ifndef IORING_SETUP_CQE32
#define IORING_SETUP_CQE32 (1U << 11)
#endif
#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif
#define TU_IORING_SETUP_CQE_MIXED (1U << 18)

#define TU_IORING_RECVSEND_BUNDLE (1U << 4)
#define TU_IORING_FEAT_RECVSEND_BUNDLE (1U << 14)
#define TU_IORING_FEAT_MIN_TIMEOUT (1U << 15)

/* struct io_uring_getevents_arg as of Linux 6.12 (older headers call min_wait_usec "pad"). */
struct tu_getevents_arg {
    uint64_t sigmask;
    uint32_t sigmask_sz;
    uint32_t min_wait_usec;
    uint64_t ts;
};

#define TU_IORING_CQE_F_BUFFER IORING_CQE_F_BUFFER
#define TU_IORING_CQE_F_MORE IORING_CQE_F_MORE
#define TU_IORING_CQE_F_NOTIF IORING_CQE_F_NOTIF
#define TU_IORING_CQE_F_BUF_MORE (1U << 4)

#define TU_IORING_REGISTER_ZCRX_IFQ 32
#define TU_IORING_REGISTER_ZCRX_CTRL 36

#define TU_IOU_PBUF_RING_INC 2

#define TU_IORING_ZCRX_AREA_SHIFT 48
#define TU_IORING_ZCRX_AREA_MASK (~(((uint64_t)1 << TU_IORING_ZCRX_AREA_SHIFT) - 1))
#define TU_IORING_MEM_REGION_TYPE_USER 1
#define TU_ZCRX_REG_NODEV 2
#define TU_ZCRX_CTRL_FLUSH_RQ 0

struct tu_buf_reg {            /* struct io_uring_buf_reg */
    uint64_t ring_addr;
    uint32_t ring_entries;
    uint16_t bgid;
    uint16_t flags;            /* "pad" in liburing 2.3 */
    uint64_t resv[3];
};

/* struct io_uring_zcrx_rqe is declared in tu_api.h as struct tu_zcrx_rqe (cffi needs it). */

struct tu_zcrx_cqe {           /* struct io_uring_zcrx_cqe: bytes 16..31 of a CQE32 */
    uint64_t off;
    uint64_t __pad;
};

struct tu_zcrx_offsets {
    uint32_t head;
    uint32_t tail;
    uint32_t rqes;
    uint32_t __resv2;
    uint64_t __resv[2];
};

struct tu_zcrx_area_reg {
    uint64_t addr;
    uint64_t len;
    uint64_t rq_area_token;
    uint32_t flags;
    uint32_t dmabuf_fd;
    uint64_t __resv2[2];
};

struct tu_region_desc {
    uint64_t user_addr;
    uint64_t size;
    uint32_t flags;
    uint32_t id;
    uint64_t mmap_offset;
    uint64_t __resv[4];
};

struct tu_zcrx_ifq_reg {
    uint32_t if_idx;
    uint32_t if_rxq;
    uint32_t rq_entries;
    uint32_t flags;
    uint64_t area_ptr;
    uint64_t region_ptr;
    struct tu_zcrx_offsets offsets;
    uint32_t zcrx_id;
    uint32_t rx_buf_len;       /* __resv2 before 7.0: must be 0 */
    uint64_t __resv[3];
};

struct tu_zcrx_ctrl {
    uint32_t zcrx_id;
    uint32_t op;
    uint64_t __resv[2];
    uint64_t __union[6];       /* zc_export / zc_flush payloads; all zero for FLUSH_RQ */
};

_Static_assert(sizeof(struct tu_buf_reg) == 40, "io_uring_buf_reg");
_Static_assert(sizeof(struct tu_zcrx_cqe) == 16, "io_uring_zcrx_cqe");
_Static_assert(sizeof(struct tu_zcrx_offsets) == 32, "io_uring_zcrx_offsets");
_Static_assert(sizeof(struct tu_zcrx_area_reg) == 48, "io_uring_zcrx_area_reg");
_Static_assert(sizeof(struct tu_region_desc) == 64, "io_uring_region_desc");
_Static_assert(sizeof(struct tu_zcrx_ifq_reg) == 96, "io_uring_zcrx_ifq_reg");
_Static_assert(sizeof(struct tu_zcrx_ctrl) == 72, "zcrx_ctrl");

#endif
