/* Native baseline for scripts/bench-codec.ts: times lc3_encode / lc3_decode over the very PCM and
 * LC3 frames the wasm run uses, on command, so the caller can interleave native and wasm
 * measurements one by one (load from other processes then hits both alike).
 *
 * Usage: bench-codec FRAME_US SRATE NBYTES PCM_FILE FRAMES_FILE
 *   PCM_FILE     mono PCM16 LE, whole frames
 *   FRAMES_FILE  NBYTES-byte LC3 frames back to back (what the wasm encoder produced)
 * Then reads commands on stdin, one per line, and answers each with one line on stdout:
 *   "decode ITERS"  →  microseconds per frame over ITERS passes of FRAMES_FILE
 *   "encode ITERS"  →  microseconds per frame over ITERS passes of PCM_FILE
 *   "check"         →  FNV-1a hash of the PCM decoded from FRAMES_FILE by a fresh decoder
 * Exits at end of input. Our code, linked against liblc3 built from source. */
#include <lc3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) { perror(path); exit(2); }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  void *buf = malloc(n > 0 ? (size_t)n : 1);
  if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) { perror(path); exit(2); }
  fclose(f);
  *len = (size_t)n;
  return buf;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: %s FRAME_US SRATE NBYTES PCM_FILE FRAMES_FILE\n", argv[0]);
    return 2;
  }
  int dt = atoi(argv[1]), sr = atoi(argv[2]), nbytes = atoi(argv[3]);
  int ns = lc3_frame_samples(dt, sr);
  if (ns <= 0 || nbytes < LC3_MIN_FRAME_BYTES || nbytes > LC3_MAX_FRAME_BYTES) {
    fprintf(stderr, "bad parameters\n");
    return 2;
  }
  size_t pcm_len, frames_len;
  int16_t *pcm = slurp(argv[4], &pcm_len);
  uint8_t *frames = slurp(argv[5], &frames_len);
  int npcm = (int)(pcm_len / 2 / (size_t)ns), nframes = (int)(frames_len / (size_t)nbytes);
  if (npcm < 1 || nframes < 1) { fprintf(stderr, "need at least one frame of PCM and of LC3\n"); return 2; }

  uint8_t *encoded = malloc((size_t)npcm * nbytes);
  void *emem = malloc(lc3_encoder_size(dt, sr)), *dmem = malloc(lc3_decoder_size(dt, sr));
  lc3_encoder_t enc = lc3_setup_encoder(dt, sr, 0, emem);
  lc3_decoder_t dec = lc3_setup_decoder(dt, sr, 0, dmem);
  int16_t out[LC3_MAX_FRAME_SAMPLES];
  volatile int sink = 0;
  char line[64];
  int iters;

  setvbuf(stdout, NULL, _IOLBF, 0);
  while (fgets(line, sizeof line, stdin)) {
    if (sscanf(line, "decode %d", &iters) == 1 && iters > 0) {
      double t0 = now_us();
      for (int it = 0; it < iters; it++)
        for (int i = 0; i < nframes; i++) {
          sink += lc3_decode(dec, frames + (size_t)i * nbytes, nbytes, LC3_PCM_FORMAT_S16, out, 1);
          sink += out[0];
        }
      printf("%.4f\n", (now_us() - t0) / ((double)iters * nframes));
    } else if (sscanf(line, "encode %d", &iters) == 1 && iters > 0) {
      double t0 = now_us();
      for (int it = 0; it < iters; it++)
        for (int i = 0; i < npcm; i++)
          sink += lc3_encode(enc, LC3_PCM_FORMAT_S16, pcm + (size_t)i * ns, 1, nbytes, encoded + (size_t)i * nbytes);
      printf("%.4f\n", (now_us() - t0) / ((double)iters * npcm));
    } else if (strncmp(line, "check", 5) == 0) {
      lc3_decoder_t d = lc3_setup_decoder(dt, sr, 0, malloc(lc3_decoder_size(dt, sr)));
      uint32_t h = 2166136261u;
      for (int i = 0; i < nframes; i++) {
        lc3_decode(d, frames + (size_t)i * nbytes, nbytes, LC3_PCM_FORMAT_S16, out, 1);
        for (int s = 0; s < ns; s++) {
          uint16_t v = (uint16_t)out[s];
          h = (h ^ (v & 0xff)) * 16777619u;
          h = (h ^ (v >> 8)) * 16777619u;
        }
      }
      printf("%08x\n", h);
    } else {
      fprintf(stderr, "unknown command: %s", line);
      return 2;
    }
  }
  return sink == 0x7fffffff;
}
