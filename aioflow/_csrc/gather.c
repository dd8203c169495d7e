/* read_frame's and read_arrow's numeric columns out of a batch's rows (flow records, meter
 * blocks) in one pass: each row is read once while it is in cache, and every field it holds is
 * written to its column, where numpy would pass over all the rows once per field (a cache miss
 * per row and field, most of the bulk path's time with the meters' ~150 fields). */
#include <string.h>

#include "aioflow.h"

/* Rows are taken a block at a time, field by field: the block's rows stay in L1/L2 while each
 * field's values are read down it with the type known (no per-value branch) and written to its
 * column in sequence; one row at a time, every field would write to its own line of memory. */
enum { BLOCK_ROWS = 32 };

#define COPY(type)                                                                  \
    for (size_t i = begin; i < end; i++, p += stride, o += f->step) {              \
        type v;                                                                     \
        memcpy(&v, p, sizeof v);                                                    \
        *o = (int64_t)v;                                                            \
    }                                                                               \
    break

void af_gather_columns(const void *rows, size_t n, size_t stride, const af_gather_field *fields,
                       size_t field_count, int64_t *const *columns) {
    for (size_t begin = 0; begin < n; begin += BLOCK_ROWS) {
        size_t end = n - begin < BLOCK_ROWS ? n : begin + BLOCK_ROWS;
        for (size_t k = 0; k < field_count; k++) {
            const af_gather_field *f = &fields[k];
            const uint8_t *p = (const uint8_t *)rows + begin * stride + f->at;
            int64_t *o = columns[f->column] + begin * f->step + f->elem;
            switch (f->kind) {
            case AF_GATHER_U8: COPY(uint8_t);
            case AF_GATHER_I8: COPY(int8_t);
            case AF_GATHER_U16: COPY(uint16_t);
            case AF_GATHER_I16: COPY(int16_t);
            case AF_GATHER_U32: COPY(uint32_t);
            case AF_GATHER_I32: COPY(int32_t);
            default: COPY(int64_t);   /* 64 bits: integers, a double's bits */
            }
        }
    }
}
