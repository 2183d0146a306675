/* Payload buffers reused from one message to the next (internal to the transport, hence sl__).
 *
 * A large payload handed to libzmq without copying is freed by libzmq's I/O thread once sent. A
 * fresh allocation per message costs more than the allocation: above glibc's mmap threshold (and
 * whenever glibc trims its heap) each buffer comes back as untouched pages, and filling it faults
 * every page in again (16 MiB is 4096 faults). The pool keeps up to `max_free` sent buffers and
 * hands them out again, so a link's steady traffic touches the same warm pages.
 *
 * Buffers outlive the pool's owner: libzmq may free a message after sl_transport_close returns
 * (a shared context is terminated later). Each buffer holds a reference to its pool, and the
 * pool goes when its owner has released it and the last buffer has come back. Thread-safe. */
#ifndef SL_TRANSPORT_POOL_H
#define SL_TRANSPORT_POOL_H

#include <stddef.h>

typedef struct sl__pool sl__pool;

/* A pool that keeps at most max_free idle buffers. NULL when out of memory. */
sl__pool *sl__pool_create(int max_free);

/* The owner's reference: the pool goes once every buffer has come back too. NULL is fine. */
void sl__pool_release(sl__pool *p);

/* A buffer of at least `bytes` (64-byte aligned): an idle one of at most twice that size, or a new
 * one. NULL when out of memory. */
void *sl__pool_get(sl__pool *p, size_t bytes);

/* How many idle buffers the pool keeps now. */
int sl__pool_idle(sl__pool *p);

/* Gives a buffer from sl__pool_get back to its pool; the signature of a libzmq free function
 * (`hint` is unused: the buffer knows its pool). */
void sl__pool_put(void *data, void *hint);

#endif
