/* Native baseline for scripts/bench-codec: times lc3_decode / lc3_encode over the same frames the
 * wasm run uses. Usage: bench-codec FRAME_US SRATE NBYTES ITERS < pcm16 (mono, whole frames).
 * Prints "decode_us encode_us" per frame. Our code, linked against liblc3 built from source. */
#include <lc3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

int main(int argc, char **argv) {
  if (argc != 5) { fprintf(stderr, "usage: %s FRAME_US SRATE NBYTES ITERS < pcm\n", argv[0]); return 2; }
  int dt = atoi(argv[1]), sr = atoi(argv[2]), nbytes = atoi(argv[3]), iters = atoi(argv[4]);
  int ns = lc3_frame_samples(dt, sr);
  size_t cap = 1 << 24, len;
  int16_t *pcm = malloc(cap);
  len = fread(pcm, 1, cap, stdin) / 2;
  int nframes = (int)(len / ns);
  if (nframes < 1) { fprintf(stderr, "need at least one frame of PCM on stdin\n"); return 2; }
  uint8_t *frames = malloc((size_t)nframes * nbytes);
  void *emem = malloc(lc3_encoder_size(dt, sr)), *dmem = malloc(lc3_decoder_size(dt, sr));
  lc3_encoder_t enc = lc3_setup_encoder(dt, sr, 0, emem);
  lc3_decoder_t dec = lc3_setup_decoder(dt, sr, 0, dmem);
  int16_t out[LC3_MAX_FRAME_SAMPLES];
  volatile int sink = 0;
  double t0 = now_us();
  for (int it = 0; it < iters; it++)
    for (int i = 0; i < nframes; i++)
      sink += lc3_encode(enc, LC3_PCM_FORMAT_S16, pcm + (size_t)i * ns, 1, nbytes, frames + (size_t)i * nbytes);
  double t1 = now_us();
  for (int it = 0; it < iters; it++)
    for (int i = 0; i < nframes; i++) {
      sink += lc3_decode(dec, frames + (size_t)i * nbytes, nbytes, LC3_PCM_FORMAT_S16, out, 1);
      sink += out[0];
    }
  double t2 = now_us();
  double n = (double)iters * nframes;
  printf("%.4f %.4f\n", (t2 - t1) / n, (t1 - t0) / n);
  return sink == 0x7fffffff;
}
