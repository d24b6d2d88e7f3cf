/* Topiary's hand-written C helpers beside the generated protobuf-c code (not generated). */
#ifndef TOPIARY_IO_H
#define TOPIARY_IO_H

#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

/* Allocator for protobuf-c and tensor buffers. Blocks of 1 MiB or more come from mmap with
 * transparent huge pages requested, which makes first-touch of big weights several times cheaper
 * than malloc's 4 KiB pages; smaller blocks come from malloc. Free either kind with topiary_free. */
void *topiary_alloc(size_t size);
void *topiary_calloc(size_t size);
void topiary_free(void *pointer);
/* Gives back the whole pages past the first `size` bytes of a block (mmap'd blocks only; a
 * malloc'd block is left as it is). The block stays valid, and is freed as usual. */
void topiary_shrink(void *pointer, size_t size);

/* A ProtobufCAllocator that uses topiary_alloc and topiary_free. */
ProtobufCAllocator *topiary_protobuf_allocator(void);

/* Serializes `message` to the file descriptor `fd`, streaming: large byte fields are written
 * straight from their buffers with no intermediate copy. Returns 0, or an errno value. */
int topiary_pack_to_fd(const ProtobufCMessage *message, int fd);

#endif
