#ifndef CREADLOOP_H
#define CREADLOOP_H
#include <stdint.h>

/* The C reference for ReadBench: a memb read section around a load of a
 * published value, `iterations` times; returns the sum of the values read.
 * The calling thread must be registered with memb. */
uint64_t creadloop_memb(uint64_t *const *slot, uint64_t iterations);
#endif
