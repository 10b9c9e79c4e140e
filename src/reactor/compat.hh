#pragma once
// liburing as shipped by Debian 12 is 2.3; the kernel here (6.x) knows more. Constants newer than
// liburing 2.3's <liburing/io_uring.h> are defined here, with the value from the kernel UAPI
// header (include/uapi/linux/io_uring.h) and the kernel version that introduced them. Everything
// the reactor uses is probed or has a fallback, so an older kernel degrades instead of failing.
#include <liburing.h>

// liburing's own internal user_data for the timeout SQE it adds when the kernel lacks
// IORING_FEAT_EXT_ARG (pre-5.11); not exported by the 2.3 headers. We must ignore its CQEs.
#ifndef LIBURING_UDATA_TIMEOUT
#define LIBURING_UDATA_TIMEOUT ((__u64)-1)
#endif

// Kernel 5.19: the CQE flag shift for provided-buffer IDs (present in 2.3, kept for clarity).
#ifndef IORING_CQE_BUFFER_SHIFT
#define IORING_CQE_BUFFER_SHIFT 16
#endif

// Kernel 6.12: IORING_CQE_F_BUF_MORE (incrementally consumed buffer rings, IOU_PBUF_RING_INC).
// We do not register rings with IOU_PBUF_RING_INC, so the kernel never sets it; defined so the
// receive path can assert that a buffer is never partially consumed.
#ifndef IORING_CQE_F_BUF_MORE
#define IORING_CQE_F_BUF_MORE (1U << 4)
#endif
