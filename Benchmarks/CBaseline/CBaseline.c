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
