/* Topiary's hand-written C helpers: a huge-page-friendly allocator and streaming serialization. */
#include "topiary_io.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define TOPIARY_BIG (1u << 20)
#define TOPIARY_HEADER 64u
#define TOPIARY_MAGIC_MALLOC 0x6d616c6cu
#define TOPIARY_MAGIC_MMAP 0x6d6d6170u

/* Every block starts with a header that says how it was allocated and how big the mapping is;
 * the caller gets the address just past it (64-byte aligned for both kinds). */
struct header {
    uint32_t magic;
    uint32_t pad;
    size_t mapped;
};

static void *allocate(size_t size, int zeroed) {
    if (size > SIZE_MAX - TOPIARY_HEADER) return NULL;
    size_t total = size + TOPIARY_HEADER;
    char *base;
    struct header h = {0};
    if (total >= TOPIARY_BIG) {
        base = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (base == MAP_FAILED) return NULL;
#ifdef MADV_HUGEPAGE
        madvise(base, total, MADV_HUGEPAGE);
#endif
        h.magic = TOPIARY_MAGIC_MMAP;
        h.mapped = total;
    } else {
        if (posix_memalign((void **)&base, TOPIARY_HEADER, total) != 0) return NULL;
        if (zeroed) memset(base, 0, total);
        h.magic = TOPIARY_MAGIC_MALLOC;
    }
    memcpy(base, &h, sizeof h);
    return base + TOPIARY_HEADER;
}

void *topiary_alloc(size_t size) { return allocate(size, 0); }

void *topiary_calloc(size_t size) { return allocate(size, 1); }

void topiary_free(void *pointer) {
    if (pointer == NULL) return;
    char *base = (char *)pointer - TOPIARY_HEADER;
    struct header h;
    memcpy(&h, base, sizeof h);
    if (h.magic == TOPIARY_MAGIC_MMAP) {
        munmap(base, h.mapped);
    } else if (h.magic == TOPIARY_MAGIC_MALLOC) {
        free(base);
    } else {
        abort(); /* not ours: a double free or a foreign pointer */
    }
}

void topiary_shrink(void *pointer, size_t size) {
    if (pointer == NULL) return;
    char *base = (char *)pointer - TOPIARY_HEADER;
    struct header h;
    memcpy(&h, base, sizeof h);
    if (h.magic != TOPIARY_MAGIC_MMAP) return;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (size > SIZE_MAX - TOPIARY_HEADER - page) return;
    size_t keep = (size + TOPIARY_HEADER + page - 1) / page * page;
    if (keep >= h.mapped || munmap(base + keep, h.mapped - keep) != 0) return;
    h.mapped = keep;
    memcpy(base, &h, sizeof h);
}

static void *protobuf_alloc(void *data, size_t size) {
    (void)data;
    return topiary_alloc(size);
}

static void protobuf_free(void *data, void *pointer) {
    (void)data;
    topiary_free(pointer);
}

static ProtobufCAllocator allocator = {protobuf_alloc, protobuf_free, NULL};

ProtobufCAllocator *topiary_protobuf_allocator(void) { return &allocator; }

/* A ProtobufCBuffer that batches small appends and writes large ones directly. */
struct file_buffer {
    ProtobufCBuffer base;
    int fd;
    int error;
    size_t used;
    uint8_t bytes[1 << 16];
};

static int write_all(int fd, const uint8_t *data, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static void flush(struct file_buffer *b) {
    if (b->error == 0 && b->used > 0) b->error = write_all(b->fd, b->bytes, b->used);
    b->used = 0;
}

static void append(ProtobufCBuffer *buffer, size_t len, const uint8_t *data) {
    struct file_buffer *b = (struct file_buffer *)buffer;
    if (b->error != 0) return;
    if (len >= sizeof b->bytes / 2) {
        flush(b);
        if (b->error == 0) b->error = write_all(b->fd, data, len);
        return;
    }
    if (b->used + len > sizeof b->bytes) flush(b);
    memcpy(b->bytes + b->used, data, len);
    b->used += len;
}

int topiary_pack_to_fd(const ProtobufCMessage *message, int fd) {
    struct file_buffer *b = malloc(sizeof *b);
    if (b == NULL) return ENOMEM;
    b->base.append = append;
    b->fd = fd;
    b->error = 0;
    b->used = 0;
    protobuf_c_message_pack_to_buffer(message, &b->base);
    flush(b);
    int error = b->error;
    free(b);
    return error;
}
