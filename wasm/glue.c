/* Our own code, compiled with liblc3 by wasm/build.sh (same flags, no -ffast-math). */
#include <stdint.h>
#include <lc3.h>

/* The only libc the freestanding build needs beyond liblc3's wasm/ headers.
 * C99 semantics: a NaN operand is ignored (the other one is returned). */
float fmaxf(float a, float b) { return (a > b || b != b) ? a : b; }
float fminf(float a, float b) { return (a < b || b != b) ? a : b; }

/* Decodes `nframes` frames of `nbytes` each, back to back at `in`, into `pcm` (S16, mono,
 * `frame_samples` per frame, back to back): one call from JavaScript per ring record instead of
 * one per frame. Each frame goes through lc3_decode exactly as a single call would, so the
 * output is bit-identical. Returns how many frames packet-loss concealment replaced (corrupt
 * frames), or -1 when liblc3 refused its parameters (nothing after that frame is decoded).
 * Default visibility: --export-dynamic exports only such symbols (liblc3's LC3_EXPORT is the same). */
__attribute__((visibility("default")))
int lc3_decode_frames(lc3_decoder_t decoder, const uint8_t *in, int nbytes, int nframes,
                      int16_t *pcm, int frame_samples) {
  int plc = 0;
  for (int i = 0; i < nframes; i++) {
    int rc = lc3_decode(decoder, in + (intptr_t)i * nbytes, nbytes, LC3_PCM_FORMAT_S16,
                        pcm + (intptr_t)i * frame_samples, 1);
    if (rc < 0) return -1;
    plc += rc;
  }
  return plc;
}
