/* The C API of trio_uring._native.
 *
 * This file is read twice: by the C compiler (through tu.h) and by cffi as its cdef, so it
 * holds nothing but plain declarations. Conventions: functions return 0 / a count / a slot
 * on success and a negative errno on failure; SQE preparation returns the SQ slot it
 * wrote (so an op that was never submitted can be turned into a NOP) or -EBUSY when the
 * SQ is full, in which case the caller submits and tries again.
 */

typedef struct tu_ring tu_ring;
typedef struct tu_bufring tu_bufring;
typedef struct tu_zcrx tu_zcrx;

/* ---- ring -------------------------------------------------------------------------- */
int tu_ring_new(unsigned entries, unsigned cq_entries, unsigned flags, tu_ring **out);
void tu_ring_free(tu_ring *r);
int tu_ring_fd(tu_ring *r);
unsigned tu_ring_flags(tu_ring *r);
unsigned tu_ring_features(tu_ring *r);
unsigned tu_ring_sq_entries(tu_ring *r);
unsigned tu_ring_cq_entries(tu_ring *r);
unsigned tu_ring_sq_pending(tu_ring *r);
unsigned tu_ring_sq_flags(tu_ring *r);
unsigned long long tu_ring_enter_calls(tu_ring *r);
void tu_ring_set_coalesce(tu_ring *r, unsigned usec, unsigned nr);

/* Submit everything queued, wait for `wait_nr` completions (timeout_ns < 0: no limit),
 * and copy up to `max` CQEs into the arrays. `big_cqe` (2 x u64 per CQE) may be NULL; on
 * CQE32 rings it receives bytes 16..31 of each CQE (the kernel's `big_cqe`). With nothing queued, nothing to wait
 * for and no deferred work flagged by the kernel, no syscall is made.
 * Returns the number of CQEs copied, or -EINTR (signal, nothing copied), or -errno. */
int tu_enter(tu_ring *r, unsigned wait_nr, long long timeout_ns, unsigned max,
             uint64_t *ud, int32_t *res, uint32_t *flags, uint64_t *big_cqe);
int tu_submit(tu_ring *r);
/* Completions (or deferred work that will produce them) wait to be reaped. No syscall. */
int tu_ring_has_work(tu_ring *r);
/* Completions already posted (in the CQ ring or on the kernel's overflow list) that nobody
 * reaped yet; unlike tu_ring_has_work, deferred work that has not run does not count. */
int tu_ring_cq_undelivered(tu_ring *r);
/* The kernel signals `fd` when completions are posted and, with DEFER_TASKRUN, when
 * deferred work is queued: what a waiter outside io_uring_enter can poll. */
int tu_register_eventfd(tu_ring *r, int fd);
int tu_sqe_to_nop(tu_ring *r, int slot, uint64_t ud);

/* ---- SQE preparation --------------------------------------------------------------- */
int tu_prep_nop(tu_ring *r, uint64_t ud);
int tu_prep_accept(tu_ring *r, int fd, void *addr, uint32_t *addrlen, int flags, int multishot, uint64_t ud);
int tu_prep_connect(tu_ring *r, int fd, const void *addr, uint32_t addrlen, uint64_t ud);
int tu_prep_recv(tu_ring *r, int fd, void *buf, uint32_t len, int msg_flags, uint64_t ud);
int tu_prep_recv_select(tu_ring *r, int fd, uint16_t bgid, uint32_t len, int msg_flags,
                        int multishot, int bundle, uint64_t ud);
int tu_prep_recv_zc(tu_ring *r, int fd, uint32_t zcrx_id, uint32_t len, uint64_t ud);
int tu_prep_send(tu_ring *r, int fd, const void *buf, uint32_t len, int msg_flags, uint64_t ud);
int tu_prep_send_zc(tu_ring *r, int fd, const void *buf, uint32_t len, int msg_flags, uint64_t ud);
int tu_prep_sendmsg(tu_ring *r, int fd, const void *msghdr, int msg_flags, uint64_t ud);
int tu_prep_shutdown(tu_ring *r, int fd, int how, uint64_t ud);
int tu_prep_close(tu_ring *r, int fd, uint64_t ud);
int tu_prep_poll(tu_ring *r, int fd, uint32_t events, int multishot, uint64_t ud);
int tu_prep_timeout(tu_ring *r, const void *kernel_timespec, unsigned count, unsigned flags, uint64_t ud);
int tu_prep_cancel(tu_ring *r, uint64_t target, uint64_t ud);
int tu_prep_cancel_fd(tu_ring *r, int fd, uint64_t ud);

/* ---- memory shared with the kernel --------------------------------------------------- */
/* Page-aligned anonymous mapping; tu_slab_free takes the pointer tu_slab_alloc returned
 * (the length lives in a guard page in front of it), so it can be a cffi gc destructor. */
char *tu_slab_alloc(size_t len);
void tu_slab_free(char *p);

/* ---- provided buffer rings --------------------------------------------------------- */
/* Registers a ring of `entries` (power of two) buffers of `buf_size` bytes carved from
 * `slab` (entries * buf_size bytes, owned by the caller), all given to the kernel.
 * flags: 1 = incremental consumption (IOU_PBUF_RING_INC). */
int tu_bufring_new(tu_ring *r, uint16_t bgid, unsigned entries, unsigned buf_size,
                   char *slab, unsigned flags, tu_bufring **out);
/* Give buffers back to the kernel: n entries, one release store of the tail. */
void tu_bufring_recycle(tu_bufring *br, const uint16_t *bids, unsigned n);
int tu_bufring_free(tu_ring *r, tu_bufring *br);

/* ---- zero-copy receive --------------------------------------------------------------- */
struct tu_zcrx_info {
    uint32_t zcrx_id;
    uint32_t rq_entries;
    uint64_t area_token;
    uint32_t off_head;
    uint32_t off_tail;
    uint32_t off_rqes;
};
/* Registers an interface queue with `area` (area_len bytes, page aligned, caller owned)
 * and a refill ring the C side allocates. flags: ifq flags (2 = ZCRX_REG_NODEV). */
int tu_zcrx_register(tu_ring *r, uint32_t if_idx, uint32_t if_rxq, uint32_t rq_entries,
                     uint32_t flags, char *area, uint64_t area_len, tu_zcrx **out,
                     struct tu_zcrx_info *info);
struct tu_zcrx_rqe { uint64_t off; uint32_t len; uint32_t __pad; };
/* The refill-entry writer tu_zcrx_refill uses: validates all n entries (area id, bounds,
 * non-zero length) and writes none if one is bad (-EINVAL); else writes them at tail. */
int tu_zcrx_fill_rqes(struct tu_zcrx_rqe *rqes, uint32_t mask, uint32_t tail, uint64_t area_token,
                      uint64_t area_len, const uint64_t *offs, const uint32_t *lens, unsigned n);
/* Queue refill entries for n completions (off as the CQE gave it, len = cqe res), one
 * release store of the tail. Returns how many fitted (the rest must be retried). */
int tu_zcrx_refill(tu_zcrx *z, const uint64_t *offs, const uint32_t *lens, unsigned n);
unsigned tu_zcrx_rq_space(tu_zcrx *z);
int tu_zcrx_flush_rq(tu_ring *r, tu_zcrx *z);
/* sizeof/offsetof of the kernel structs as compiled here, in a fixed order (tests compare
 * them with the kernel UAPI). Returns how many values there are. */
int tu_abi_layout(uint32_t *out, unsigned n);

/* ---- probing ------------------------------------------------------------------------- */
/* io_uring_setup with `flags` on a tiny ring, closed at once: 0 or -errno. */
int tu_try_setup(unsigned flags);
/* out[op] = 1 for each supported opcode; returns last_op + 1 or -errno. */
int tu_probe_opcodes(tu_ring *r, uint8_t *out, unsigned n);
