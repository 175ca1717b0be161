#define _LGPL_SOURCE
#include <stdlib.h>
#include <urcu/urcu-memb.h>
#include <urcu/urcu-qsbr.h>
#include <urcu/urcu-mb.h>
#include <urcu/urcu-bp.h>
#include "CBaseline.h"

#define CBASELINE_READ_LOOP(flavor)                                                  \
    uint64_t cbaseline_##flavor##_read(struct cbaseline_node **slot, uint64_t iterations) \
    {                                                                                \
        uint64_t sum = 0;                                                            \
        for (uint64_t i = 0; i < iterations; i++) {                                  \
            urcu_##flavor##_read_lock();                                             \
            struct cbaseline_node *node = rcu_dereference(*slot);                    \
            sum += node->value;                                                      \
            urcu_##flavor##_read_unlock();                                           \
        }                                                                            \
        return sum;                                                                  \
    }

CBASELINE_READ_LOOP(memb)
CBASELINE_READ_LOOP(qsbr)
CBASELINE_READ_LOOP(mb)
CBASELINE_READ_LOOP(bp)

struct freed_node {
    struct rcu_head head;
    uint64_t payload;
};

static void free_node(struct rcu_head *head)
{
    free(caa_container_of(head, struct freed_node, head));
}

void cbaseline_memb_call_rcu_free(uint64_t count)
{
    for (uint64_t i = 0; i < count; i++) {
        struct freed_node *node = malloc(sizeof(*node));
        node->payload = i;
        urcu_memb_call_rcu(&node->head, free_node);
    }
}

void cbaseline_atomic_get_put(uint64_t *count, uint64_t iterations)
{
    for (uint64_t i = 0; i < iterations; i++) {
        __atomic_fetch_add(count, 1, __ATOMIC_RELAXED);
        __atomic_fetch_sub(count, 1, __ATOMIC_ACQ_REL);
    }
}

static __thread volatile uint64_t thread_local_count;

void cbaseline_thread_local_get_put(uint64_t iterations)
{
    for (uint64_t i = 0; i < iterations; i++) {
        thread_local_count = thread_local_count + 1;
        thread_local_count = thread_local_count - 1;
    }
}

/* The models' per-thread counters: the ref's gets and puts at the word's
 * offset. */
static __thread long model_counters[512];
static __thread char *model_area;
static uint64_t model_slow_paths;

/* Never taken in the benchmark; out of line, as PercpuRef's is. */
__attribute__((noinline)) static void model_slow_path(void) { __atomic_fetch_add(&model_slow_paths, 1, __ATOMIC_RELAXED); }

/* area + offset, hidden so that the add is not folded into an indexed
 * address (PercpuRef's curcu_counter_address does the same). */
static inline long *model_counter(char *area, uintptr_t offset)
{
    char *address = area + offset;
    __asm__("" : "+r"(address));
    return (long *)address;
}

static inline void model_add(long *counter)
{
    __atomic_store_n(counter, __atomic_load_n(counter, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
}

/* PercpuRef's get or put: the area (reloaded: the counter's store may
 * alias it), the word, two tests, the counter. */
static inline void model_count_in_area(char *const *area_slot, const uintptr_t *word, int index)
{
    char *area = *(char *const volatile *)area_slot;
    uintptr_t w = __atomic_load_n(word, __ATOMIC_ACQUIRE);
    if (__builtin_expect((w & 15) == 0, 1)) {
        if (__builtin_expect(area != 0, 1)) {
            model_add(model_counter(area, w) + index);
            return;
        }
    }
    model_slow_path();
}

void cbaseline_counter_model_area_reloaded(const uintptr_t *word, uint64_t iterations)
{
    model_area = (char *)model_counters;
    char *const *area_slot = &model_area;
    for (uint64_t i = 0; i < iterations; i++) {
        model_count_in_area(area_slot, word, 0);
        model_count_in_area(area_slot, word, 1);
    }
}

/* The kernel's get or put: the word, one test, the counter at a fixed
 * place from the thread pointer (its %gs-relative this_cpu_add). */
static inline void model_count_thread_relative(const uintptr_t *word, int index)
{
    uintptr_t w = __atomic_load_n(word, __ATOMIC_ACQUIRE);
    if (__builtin_expect((w & 15) == 0, 1)) {
        model_add(model_counter((char *)model_counters, w) + index);
        return;
    }
    model_slow_path();
}

void cbaseline_counter_model_thread_relative(const uintptr_t *word, uint64_t iterations)
{
    for (uint64_t i = 0; i < iterations; i++) {
        model_count_thread_relative(word, 0);
        model_count_thread_relative(word, 1);
    }
}

void cbaseline_memb_sections_get_put(uint64_t iterations)
{
    for (uint64_t i = 0; i < iterations; i++) {
        urcu_memb_read_lock();
        thread_local_count = thread_local_count + 1;
        urcu_memb_read_unlock();
        urcu_memb_read_lock();
        thread_local_count = thread_local_count - 1;
        urcu_memb_read_unlock();
    }
}
