/* zlib (Debian zlib1g-dev): inflate for NPZ members and gzip-compressed IDX files. */
#include <zlib.h>
