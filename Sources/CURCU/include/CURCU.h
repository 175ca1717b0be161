/*
 * The C side of swift-urcu: liburcu's four flavors in one translation unit,
 * with their static-inline fast paths visible to Swift.
 *
 * Both forms of liburcu's read side are visible: the functions the shared
 * libraries export (urcu_memb_read_lock…) and the static-inline bodies of
 * the urcu/static headers (_urcu_memb_read_lock…), which C programs get by
 * defining _LGPL_SOURCE. Which one Swift calls is the package trait
 * InlineFastPaths' choice (Sources/URCU/ReadSideEntryPoints.swift); an
 * inline body is compiled into a binary only where it is called, placing
 * LGPL-2.1 code there: see "License" in README.md. _LGPL_SOURCE itself is
 * never defined, so no liburcu name is remapped.
 *
 * This header holds declarations, thread-local storage and one-line inline
 * wrappers. Every decision (auto-registration, misuse checks, closures,
 * ownership) is made in Swift.
 */
#ifndef CURCU_H
#define CURCU_H

/*
 * Only the function-pointer fields of curcu_update_functions carry
 * nullability (so Swift imports them as non-optional); the rest of this
 * header follows liburcu's unannotated API.
 */
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wnullability-completeness"

#include <stdbool.h>
#include <pthread.h>
#include <urcu/urcu-memb.h>
#include <urcu/urcu-qsbr.h>
#include <urcu/urcu-mb.h>
#include <urcu/urcu-bp.h>
#include <urcu/static/urcu-memb.h>
#include <urcu/static/urcu-qsbr.h>
#include <urcu/static/urcu-mb.h>
#include <urcu/static/urcu-bp.h>

/*
 * urcu/call-rcu.h has an include guard, so only the first flavor included
 * (memb) got its call_rcu family declared through liburcu's name map. The
 * other flavors export the same functions under their own prefix.
 */
#define CURCU_DECLARE_CALL_RCU(flavor)                                                  \
    void urcu_##flavor##_call_rcu(struct rcu_head *head,                               \
                                  void (*func)(struct rcu_head *head));                \
    struct call_rcu_data *urcu_##flavor##_create_call_rcu_data(unsigned long flags,     \
                                                               int cpu_affinity);      \
    void urcu_##flavor##_call_rcu_data_free(struct call_rcu_data *crdp);               \
    struct call_rcu_data *urcu_##flavor##_get_cpu_call_rcu_data(int cpu);              \
    struct call_rcu_data *urcu_##flavor##_get_default_call_rcu_data(void);             \
    struct call_rcu_data *urcu_##flavor##_get_thread_call_rcu_data(void);              \
    pthread_t urcu_##flavor##_get_call_rcu_thread(struct call_rcu_data *crdp);         \
    void urcu_##flavor##_set_thread_call_rcu_data(struct call_rcu_data *crdp);         \
    int urcu_##flavor##_create_all_cpu_call_rcu_data(unsigned long flags);             \
    void urcu_##flavor##_free_all_cpu_call_rcu_data(void);                             \
    void urcu_##flavor##_call_rcu_before_fork(void);                                   \
    void urcu_##flavor##_call_rcu_after_fork_parent(void);                             \
    void urcu_##flavor##_call_rcu_after_fork_child(void);                              \
    void urcu_##flavor##_barrier(void);

CURCU_DECLARE_CALL_RCU(memb)
CURCU_DECLARE_CALL_RCU(qsbr)
CURCU_DECLARE_CALL_RCU(mb)
CURCU_DECLARE_CALL_RCU(bp)

/*
 * The update side of one flavor as a table of function pointers: liburcu's
 * struct rcu_flavor_struct plus the call_rcu worker family it omits. Swift
 * shares one implementation of the update side across the four tables.
 */
struct curcu_update_functions {
    void (* _Nonnull synchronize_rcu)(void);
    void (* _Nonnull call_rcu)(struct rcu_head *head, void (* _Nonnull func)(struct rcu_head *head));
    void (* _Nonnull barrier)(void);
    struct call_rcu_data *(* _Nonnull create_call_rcu_data)(unsigned long flags, int cpu_affinity);
    void (* _Nonnull call_rcu_data_free)(struct call_rcu_data *crdp);
    struct call_rcu_data *(* _Nonnull get_thread_call_rcu_data)(void);
    void (* _Nonnull set_thread_call_rcu_data)(struct call_rcu_data *crdp);
    struct call_rcu_data *(* _Nonnull get_cpu_call_rcu_data)(int cpu);
    struct call_rcu_data *(* _Nonnull get_default_call_rcu_data)(void);
    int (* _Nonnull create_all_cpu_call_rcu_data)(unsigned long flags);
    void (* _Nonnull free_all_cpu_call_rcu_data)(void);
    pthread_t (* _Nonnull get_call_rcu_thread)(struct call_rcu_data *crdp);
};

extern const struct curcu_update_functions curcu_memb_update;
extern const struct curcu_update_functions curcu_qsbr_update;
extern const struct curcu_update_functions curcu_mb_update;
extern const struct curcu_update_functions curcu_bp_update;

/* Whether the calling thread is in the flavor's reader registry. */
static inline bool curcu_memb_is_registered(void) { return URCU_TLS(urcu_memb_reader).registered; }
static inline bool curcu_mb_is_registered(void) { return URCU_TLS(urcu_mb_reader).registered; }
static inline bool curcu_qsbr_is_registered(void) { return URCU_TLS(urcu_qsbr_reader).registered; }

/* glibc declares these only under _GNU_SOURCE; stall reports name threads with them. */
#include <sys/types.h>
extern int pthread_getname_np(pthread_t thread, char *name, size_t len);
extern int pthread_setname_np(pthread_t thread, const char *name);
extern pid_t gettid(void);
/*
 * ThreadSanitizer's annotations, defined by its runtime. Weak, and called
 * only when present: a build with the ThreadSanitizerAnnotations trait
 * but without --sanitize=thread pays a test and a branch, nothing more.
 */
void __tsan_acquire(void *addr) __attribute__((weak));
void __tsan_release(void *addr) __attribute__((weak));
static inline void curcu_tsan_acquire(void *_Nonnull addr) { if (__tsan_acquire) __tsan_acquire(addr); }
static inline void curcu_tsan_release(void *_Nonnull addr) { if (__tsan_release) __tsan_release(addr); }

/*
 * sched_setattr(2), which glibc 2.36 does not wrap (and Swift cannot call
 * the variadic syscall(2)); the first fields of the kernel's struct
 * sched_attr (SCHED_ATTR_SIZE_VER0).
 */
#include <sys/syscall.h>
struct curcu_sched_attr {
    uint32_t size;
    uint32_t policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime;
    uint64_t deadline;
    uint64_t period;
};
static inline int curcu_sched_setattr(struct curcu_sched_attr *_Nonnull attr)
{
    return (int)syscall(SYS_sched_setattr, 0, attr, 0);
}

/* fork(2), which Swift's Glibc module does not export. */
#include <unistd.h>
static inline pid_t curcu_fork(void) { return fork(); }

/*
 * For the stall monitor: where a thread's reader counter lives, and
 * liburcu's own test of whether a reader with that counter holds up the
 * grace period in progress (URCU_READER_ACTIVE_OLD).
 */
static inline unsigned long *curcu_memb_reader_counter(void) { return &URCU_TLS(urcu_memb_reader).ctr; }
static inline unsigned long *curcu_mb_reader_counter(void) { return &URCU_TLS(urcu_mb_reader).ctr; }
static inline unsigned long *curcu_qsbr_reader_counter(void) { return &URCU_TLS(urcu_qsbr_reader).ctr; }
static inline bool curcu_memb_reader_blocks(unsigned long *ctr) { return urcu_common_reader_state(&urcu_memb_gp, ctr) == URCU_READER_ACTIVE_OLD; }
static inline bool curcu_mb_reader_blocks(unsigned long *ctr) { return urcu_common_reader_state(&urcu_mb_gp, ctr) == URCU_READER_ACTIVE_OLD; }
static inline bool curcu_qsbr_reader_blocks(unsigned long *ctr) { return urcu_qsbr_reader_state(ctr) == URCU_READER_ACTIVE_OLD; }

/*
 * In a forked child: unlinks the reader record of a thread that did not
 * survive the fork from its flavor's registry (liburcu has no call for it;
 * see ReaderRegistry.forgetOtherThreadsInChild). memb and mb share the
 * record's type.
 */
static inline void curcu_common_forget_reader(unsigned long *ctr)
{
    struct urcu_reader *reader = caa_container_of(ctr, struct urcu_reader, ctr);
    cds_list_del(&reader->node);
    reader->registered = 0;
}
static inline void curcu_qsbr_forget_reader(unsigned long *ctr)
{
    struct urcu_qsbr_reader *reader = caa_container_of(ctr, struct urcu_qsbr_reader, ctr);
    cds_list_del(&reader->node);
    reader->registered = 0;
}

/*
 * QSBR's read_lock is empty and its read_ongoing means "online", so liburcu
 * cannot say whether a QSBR thread is inside a read section. Swift has no
 * thread-local storage of its own: this is that storage, the nesting depth
 * of the calling thread's QSBR read sections.
 */
extern __thread unsigned long curcu_qsbr_read_depth;
static inline unsigned long curcu_qsbr_read_depth_get(void) { return curcu_qsbr_read_depth; }
static inline void curcu_qsbr_read_depth_set(unsigned long depth) { curcu_qsbr_read_depth = depth; }

/*
 * The calling thread's area of PercpuRef counters (every ref has its
 * counters at the same offset in every thread's area), zero until the
 * thread first needs one; assigned and recycled by Swift (CounterAreas).
 *
 * qsbr_online_area is the same area, or zero, and nonzero only while the
 * thread is an online QSBR reader: PercpuRef sets it after checking that
 * the thread is online, and the QSBR flavor zeroes it at every transition
 * to offline or unregistered that Swift makes (QuiescentStateRCU). One load
 * then gives a QSBR get or put both its area and the online check its
 * read-side checks want. One struct, so one thread-local base computation
 * serves both.
 */
struct curcu_thread_counting {
    uintptr_t area;
    uintptr_t qsbr_online_area;
};
extern __thread struct curcu_thread_counting curcu_thread_counting;
static inline uintptr_t curcu_thread_counter_area_get(void) { return curcu_thread_counting.area; }
static inline void curcu_thread_counter_area_set(uintptr_t area) { curcu_thread_counting.area = area; }
static inline uintptr_t curcu_qsbr_online_counter_area_get(void) { return curcu_thread_counting.qsbr_online_area; }
static inline void curcu_qsbr_online_counter_area_set(uintptr_t area) { curcu_thread_counting.qsbr_online_area = area; }

/*
 * The calling thread's block of PercpuRef counters for the first offsets,
 * in static thread-local storage: at a fixed distance from the thread
 * pointer, so that a get reaches it with no per-thread address to load.
 * Registered and folded by Swift (CounterBlocks); counter_block_registered
 * says whether this thread's is registered.
 */
#define CURCU_COUNTER_BLOCK_BYTES 4096
extern __thread char curcu_counter_block[CURCU_COUNTER_BLOCK_BYTES];
extern __thread int curcu_counter_block_registered;
static inline uintptr_t curcu_counter_block_get(void) { return (uintptr_t)curcu_counter_block; }
static inline int curcu_counter_block_registered_get(void) { return curcu_counter_block_registered; }
static inline void curcu_counter_block_registered_set(int registered) { curcu_counter_block_registered = registered; }

/*
 * base + offset, as a pointer the optimizer cannot fold back into an
 * indexed address (base + index * scale): the empty asm hides where it
 * came from. PercpuRef's get and put increment their thread's counter
 * through it. Measured with `urcu-bench ref` on the project's Xeon VM
 * (2026-11-21): a QSBR get+put pair costs 1.2 ns with the increments at a
 * plain register address, 2.6 ns at an indexed one; the thread-local ideal
 * is 0.7 ns. Swift has no way to say this itself.
 */
static inline void *_Nonnull curcu_counter_address(uintptr_t base, unsigned long offset)
{
    char *address = (char *)(base + offset);
    __asm__("" : "+r"(address));
    return address;
}

/*
 * The calling thread's cache of recycled call_rcu nodes (a list linked
 * through each node's first word). Managed by Swift (CallbackNodePool).
 */
extern __thread void *curcu_node_cache;
static inline void *curcu_node_cache_get(void) { return curcu_node_cache; }
static inline void curcu_node_cache_set(void *head) { curcu_node_cache = head; }

/*
 * Relaxed atomic access to a word another party writes too: the
 * completion ring's head and tail, which user code writes through the
 * pointer it is given. Atomic so that the accesses are not a data race;
 * relaxed because the values are untrusted anyway.
 */
static inline uint32_t curcu_load_relaxed_u32(const uint32_t *_Nonnull word) { return __atomic_load_n(word, __ATOMIC_RELAXED); }
static inline void curcu_store_relaxed_u32(uint32_t *_Nonnull word, uint32_t value) { __atomic_store_n(word, value, __ATOMIC_RELAXED); }

#pragma clang diagnostic pop

#endif /* CURCU_H */
