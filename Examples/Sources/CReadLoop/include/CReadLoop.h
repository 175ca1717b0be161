#ifndef CREADLOOP_H
#define CREADLOOP_H
#include <stdint.h>

/* The C references for ReadBench. The calling thread must be registered
 * with memb. */

/* A memb read section around a load of a published value, `iterations`
 * times; returns the sum of the values read. */
uint64_t creadloop_memb(uint64_t *const *slot, uint64_t iterations);

/* A singly linked list whose links are read with rcu_dereference. Each
 * node starts with two words that stand for a Swift object's header (its
 * metadata pointer and reference count), so that C and Swift nodes have
 * the same size and the walks touch the same number of cache lines. */
struct creadloop_node {
    uint64_t header[2];
    uint64_t value;
    struct creadloop_node *next;
};

/* Builds a list of `count` nodes holding 1…count; free it with
 * creadloop_list_free. */
struct creadloop_node *creadloop_list_make(uint64_t count);
void creadloop_list_free(struct creadloop_node *head);

/* Walks the list inside one memb read section, `iterations` times; returns
 * the sum of every value read. */
uint64_t creadloop_list_walk(struct creadloop_node *const *head, uint64_t iterations);
#endif
