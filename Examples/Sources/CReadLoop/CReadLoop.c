/* What a C program on liburcu's inline read side compiles to. */
#define _LGPL_SOURCE
#include <stdlib.h>
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

struct creadloop_node *creadloop_list_make(uint64_t count)
{
    struct creadloop_node *head = NULL;
    for (uint64_t value = count; value >= 1; value--) {
        struct creadloop_node *node = malloc(sizeof(*node));
        node->value = value;
        node->next = head;
        head = node;
    }
    return head;
}

void creadloop_list_free(struct creadloop_node *head)
{
    while (head) {
        struct creadloop_node *next = head->next;
        free(head);
        head = next;
    }
}

uint64_t creadloop_list_walk(struct creadloop_node *const *head, uint64_t iterations)
{
    uint64_t sum = 0;
    for (uint64_t i = 0; i < iterations; i++) {
        urcu_memb_read_lock();
        for (struct creadloop_node *node = rcu_dereference(*head); node; node = rcu_dereference(node->next))
            sum += node->value;
        urcu_memb_read_unlock();
    }
    return sum;
}
