#include "CURCU.h"

__thread unsigned long curcu_qsbr_read_depth;
__thread struct curcu_thread_counting curcu_thread_counting;
__thread void *curcu_node_cache;
__thread char curcu_counter_block[CURCU_COUNTER_BLOCK_BYTES] __attribute__((aligned(64)));
__thread int curcu_counter_block_registered;

#define CURCU_UPDATE_FUNCTIONS(flavor)                                                  \
    const struct curcu_update_functions curcu_##flavor##_update = {                    \
        .synchronize_rcu = urcu_##flavor##_synchronize_rcu,                            \
        .call_rcu = urcu_##flavor##_call_rcu,                                          \
        .barrier = urcu_##flavor##_barrier,                                            \
        .create_call_rcu_data = urcu_##flavor##_create_call_rcu_data,                  \
        .call_rcu_data_free = urcu_##flavor##_call_rcu_data_free,                      \
        .get_thread_call_rcu_data = urcu_##flavor##_get_thread_call_rcu_data,          \
        .set_thread_call_rcu_data = urcu_##flavor##_set_thread_call_rcu_data,          \
        .get_cpu_call_rcu_data = urcu_##flavor##_get_cpu_call_rcu_data,                \
        .get_default_call_rcu_data = urcu_##flavor##_get_default_call_rcu_data,        \
        .create_all_cpu_call_rcu_data = urcu_##flavor##_create_all_cpu_call_rcu_data,  \
        .free_all_cpu_call_rcu_data = urcu_##flavor##_free_all_cpu_call_rcu_data,      \
        .get_call_rcu_thread = urcu_##flavor##_get_call_rcu_thread,                    \
    };

CURCU_UPDATE_FUNCTIONS(memb)
CURCU_UPDATE_FUNCTIONS(qsbr)
CURCU_UPDATE_FUNCTIONS(mb)
CURCU_UPDATE_FUNCTIONS(bp)
