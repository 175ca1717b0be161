/* What a C program on liburcu's inline read side compiles to. */
#define _LGPL_SOURCE
#include <urcu/urcu-memb.h>
#include "CReadLoop.h"

uint64_t creadloop_memb(uint64_t *const *slot, uint64_t iterations)
{
    uint64_t sum = 0;
    for (uint64_t i = 0; i < iterations; i++) {
        urcu_memb_read_lock();
        sum += *rcu_dereference(*slot);
        urcu_memb_read_unlock();
    }
    return sum;
}
