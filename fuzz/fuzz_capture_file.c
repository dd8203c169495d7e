/* libFuzzer harness: aioflow's capture-file reader (aioflow/_csrc/capfile.c) over whole files.
 *
 * Input: the bytes of a file. It is opened from memory and every packet is read and decoded
 * (decode.c), twice: once with the whole file as the window (an mmap), once through a window that
 * grows a few bytes at a time, as a decompressor's buffer or a file still being written feeds
 * the parser (AF_CAP_MORE, then more bytes). Both passes must give the same frames, and every
 * frame must lie inside the input: a mismatch aborts, so the fuzzer reports it.
 *
 * Build by hand (what `make fuzz` does for every fuzz/fuzz_*.c):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iaioflow/_csrc \
 *       fuzz/fuzz_capture_file.c aioflow/_csrc/?*.c -lpcap -lz -lzstd -lhs -lpthread -o build/fuzz_capture_file
 *   (only capfile.c and decode.c are needed: `... fuzz/fuzz_capture_file.c aioflow/_csrc/capfile.c
 *    aioflow/_csrc/decode.c -o build/fuzz_capture_file` builds it alone)
 * Run: build/fuzz_capture_file -max_total_time=60 CORPUS_DIR tests/data ../shared/pcaps
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "capfile.h"
#include "decode.h"

#define MAX_FRAMES 4096   /* frames compared per input (enough for any small seed) */

typedef struct {
    uint64_t at;          /* offset of the frame's data in the input */
    uint32_t caplen, len;
    uint64_t ts_ns;
    int32_t dlt;
} seen;

static seen whole[MAX_FRAMES];

static void check_frame(const af_frame *f, const uint8_t *base, size_t size) {
    if (f->data < base || (size_t)(f->data - base) > size || f->caplen > size - (size_t)(f->data - base)) abort();
    af_packet p;
    (void)af_decode(f->dlt, f->data, f->caplen, &p, 0);
        (void)af_decode(f->dlt, f->data, f->caplen, &p, AF_DECODE_TUNNELS | AF_DECODE_MAC);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    af_capfile c;
    af_frame f;
    int n = 0, k;
    if (af_capfile_open(&c, data, size) == AF_CAP_FRAME) {
        while ((k = af_capfile_next(&c, data, 0, size, &f)) == AF_CAP_FRAME) {
            check_frame(&f, data, size);
            if (n < MAX_FRAMES) whole[n] = (seen){(uint64_t)(f.data - data), f.caplen, f.len, f.ts_ns, f.dlt};
            n++;
        }
        if (k == AF_CAP_MORE && c.pos > size) abort();
    }
    af_capfile_close(&c);

    /* the same bytes through a growing window starting at the parser's position */
    size_t step = size ? 1 + data[size - 1] % 61 : 1, end = step < size ? step : size;
    int opened;
    while ((opened = af_capfile_open(&c, data, end)) == AF_CAP_MORE && end < size) {
        af_capfile_close(&c);
        end = end + step < size ? end + step : size;
    }
    int m = 0;
    if (opened == AF_CAP_FRAME) {
        for (;;) {
            uint64_t start = c.pos;   /* a decompressor keeps only the bytes from here */
            if (start > end) abort();
            k = af_capfile_next(&c, data + start, start, end - start, &f);
            if (k == AF_CAP_FRAME) {
                check_frame(&f, data, size);
                if (m < n && m < MAX_FRAMES) {
                    const seen *w = &whole[m];
                    if (w->at != (uint64_t)(f.data - data) || w->caplen != f.caplen || w->len != f.len ||
                        w->ts_ns != f.ts_ns || w->dlt != f.dlt)
                        abort();
                }
                m++;
                continue;
            }
            if (k != AF_CAP_MORE || end == size) break;
            end = end + step < size ? end + step : size;
        }
    }
    af_capfile_close(&c);
    /* the whole-file pass reads past a block the growing pass has not seen only when opening
     * took a different path (a header cut short): otherwise both read the same frames */
    if (opened == AF_CAP_FRAME && m != n) abort();
    return 0;
}
