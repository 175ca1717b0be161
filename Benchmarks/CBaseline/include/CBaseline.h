/*
 * The C reference loops the benchmark compares Swift against: the same work
 * written directly over liburcu, compiled in the same process.
 */
#ifndef CBASELINE_H
#define CBASELINE_H

#include <stdint.h>

struct cbaseline_node {
    uint64_t value;
};

/* A read section + rcu_dereference + one field load, `iterations` times. */
uint64_t cbaseline_memb_read(struct cbaseline_node **slot, uint64_t iterations);
uint64_t cbaseline_qsbr_read(struct cbaseline_node **slot, uint64_t iterations);
uint64_t cbaseline_mb_read(struct cbaseline_node **slot, uint64_t iterations);
uint64_t cbaseline_bp_read(struct cbaseline_node **slot, uint64_t iterations);

/* `count` times: malloc a node and call_rcu() a callback that frees it. */
void cbaseline_memb_call_rcu_free(uint64_t count);

/* A shared atomic reference count: `iterations` get+put pairs. */
void cbaseline_atomic_get_put(uint64_t *count, uint64_t iterations);

/* The ideal: a counter only the calling thread touches, `iterations`
 * increment+decrement pairs. */
void cbaseline_thread_local_get_put(uint64_t iterations);

/* Two models of a get+put fast path, to show where PercpuRef's floor is.
 * Both load the ref's word (acquire), test its mode bits and add to the
 * counter at the word's offset with a relaxed load and store (gets and
 * puts on separate words). The first is PercpuRef's: it also loads the
 * thread's area from thread-local storage and tests it, for every get and
 * put. The second is the kernel's: the counter is at a fixed place from
 * the thread pointer (its %gs-relative per-CPU address), so there is no
 * area to load or test; user space cannot use it, since the switch must
 * find every thread that counted. */
void cbaseline_counter_model_area_reloaded(const uintptr_t *word, uint64_t iterations);
void cbaseline_counter_model_thread_relative(const uintptr_t *word, uint64_t iterations);

/* The same pairs with each increment and decrement inside its own memb read
 * section: the least a get+put on a memb-switched ref can cost. */
void cbaseline_memb_sections_get_put(uint64_t iterations);

#endif
